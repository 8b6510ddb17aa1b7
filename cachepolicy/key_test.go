package cachepolicy_test

import (
	"bytes"
	"testing"

	"github.com/sqlcache/sqlcache/cachepolicy"
)

func TestAppendKey(t *testing.T) {
	tests := []struct {
		parts [][]byte
		want  []byte
	}{
		{nil, nil},
		{[][]byte{nil}, []byte{0}},
		{[][]byte{[]byte("ab"), []byte("c")}, []byte("\x02ab\x01c")},
		{[][]byte{[]byte("a"), []byte("bc")}, []byte("\x01a\x02bc")},
		{[][]byte{bytes.Repeat([]byte("x"), 200)}, append([]byte{0xc8, 0x01}, bytes.Repeat([]byte("x"), 200)...)},
	}
	for _, tt := range tests {
		if got := cachepolicy.AppendKey(nil, tt.parts...); !bytes.Equal(got, tt.want) {
			t.Errorf("AppendKey(%q) = %q; want %q", tt.parts, got, tt.want)
		}
	}
	if got := cachepolicy.AppendKey([]byte("pre"), []byte("x")); string(got) != "pre\x01x" {
		t.Errorf("AppendKey kept no prefix: %q", got)
	}
}

func TestAppendKeyAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	a, b, c := []byte("db"), []byte("SELECT * FROM t WHERE id = $1"), []byte("42")
	if n := testing.AllocsPerRun(100, func() { buf = cachepolicy.AppendKey(buf[:0], a, b, c) }); n != 0 {
		t.Errorf("AppendKey allocates %v times per call; want 0", n)
	}
}

func BenchmarkAppendKey(b *testing.B) {
	buf := make([]byte, 0, 256)
	db, sql, param := []byte("db"), []byte("SELECT * FROM t WHERE id = $1"), []byte("42")
	b.ReportAllocs()
	for b.Loop() {
		buf = cachepolicy.AppendKey(buf[:0], db, sql, param)
	}
}
