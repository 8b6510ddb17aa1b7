package cachepolicy

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRespell(t *testing.T) {
	for _, tt := range []struct {
		name string
		a, b string
		ok   bool
	}{
		{"key", `SELECT abalance FROM pgbench_accounts WHERE aid = 1`, `SELECT abalance FROM pgbench_accounts WHERE aid = 12345`, true},
		{"same text", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 7`, true},
		{"several, longer and shorter", `SELECT v FROM t WHERE id = 7 AND v > 200 LIMIT 10`, `SELECT v FROM t WHERE id = 123 AND v > 0 LIMIT 5`, true},
		{"leading zeros", `SELECT v FROM t WHERE id=7`, `SELECT v FROM t WHERE id=0012`, true},
		{"largest int4", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 2147483647`, true},
		{"in parentheses", `INSERT INTO t VALUES (1,2)`, `INSERT INTO t VALUES (10,20)`, true},
		{"digits in a comment, unchanged", "SELECT /* 1 */ v FROM t WHERE id = 7 -- 2\n", "SELECT /* 1 */ v FROM t WHERE id = 8 -- 2\n", true},
		// Refused: not the same tokens, or not known to be without a scan.
		{"past int4 (scans as FCONST)", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 2147483648`, false},
		{"digits in a table name", `SELECT v FROM events_2024 WHERE id = 1`, `SELECT v FROM events_2025 WHERE id = 1`, false},
		{"hexadecimal", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 0x1F`, false},
		{"decimal point", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 7.5`, false},
		{"exponent", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 7e3`, false},
		{"underscore", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 1_000`, false},
		{"sign", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = -7`, false},
		{"string", `SELECT v FROM t WHERE id = '7'`, `SELECT v FROM t WHERE id = '8'`, false},
		{"parameter", `SELECT v FROM t WHERE id = $1`, `SELECT v FROM t WHERE id = $2`, false},
		{"digits in a comment, changed", `SELECT /* 1 */ v FROM t`, `SELECT /* 2 */ v FROM t`, false},
		{"other text", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM u WHERE id = 7`, false},
		{"trailing text", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 7;`, false},
		{"empty", `SELECT v FROM t WHERE id = 7`, ``, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ShapeOf(tt.a)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := m.Respell(tt.b)
			if ok != tt.ok {
				t.Fatalf("Respell(%q) for %q: ok = %t; want %t", tt.b, tt.a, ok, tt.ok)
			}
			if !ok {
				return
			}
			want, err := ShapeOf(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(Shape{})); diff != "" {
				t.Errorf("Respell(%q) differs from ShapeOf (-ShapeOf +Respell):\n%s", tt.b, diff)
			}
			ska, oka := Skeleton(tt.a)
			skb, okb := Skeleton(tt.b)
			if !oka || !okb || ska != skb {
				t.Errorf("skeletons of %q and %q: %x %t, %x %t; want equal", tt.a, tt.b, ska, oka, skb, okb)
			}
		})
	}
}

func TestSkeleton(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{`SELECT 1`, `SELECT 22`, true},
		{`SELECT v FROM t WHERE id = 1`, `SELECT v FROM t WHERE id = 2`, true},
		{`SELECT v FROM t1`, `SELECT v FROM t2`, false},
		{`SELECT $1`, `SELECT $2`, false},
		{`SELECT 1.5`, `SELECT 1.6`, false},
		{`SELECT 1 + 2`, `SELECT 12`, false},
	} {
		ska, _ := Skeleton(tt.a)
		skb, _ := Skeleton(tt.b)
		if (ska == skb) != tt.same {
			t.Errorf("Skeleton(%q) == Skeleton(%q): %t; want %t", tt.a, tt.b, ska == skb, tt.same)
		}
	}
	if _, ok := Skeleton(`SELECT v FROM t2 WHERE k = $1`); ok {
		t.Errorf("Skeleton found an integer in a text without one")
	}
}

// FuzzRespell checks that a respelled shape is exactly the text's scanned
// shape: for b as given, and for a with its integers rewritten from n.
func FuzzRespell(f *testing.F) {
	f.Add(`SELECT v FROM t WHERE id = 7 AND v > 2`, `SELECT v FROM t WHERE id = 0012345 AND v > 99`, uint32(12))
	f.Add("SELECT /* 1 */ v FROM t WHERE id = 8 -- 2\nAND k = 4", ``, uint32(2147483647))
	f.Add(`SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 0x1F`, uint32(0))
	f.Add(`SELECT 1..2, 1.e5, 3e, x1, 1x, $1, '1', U&'1' UESCAPE '!', E'\1', B'1'`, ``, uint32(99))
	f.Add(`INSERT INTO t (id) VALUES (1),(2)`, `INSERT INTO t (id) VALUES (10),(2)`, uint32(3000000000))
	f.Fuzz(func(t *testing.T, a, b string, n uint32) {
		m, err := ShapeOf(a)
		if err != nil {
			return
		}
		for _, sql := range []string{b, rewriteInts(a, n)} {
			got, ok := m.Respell(sql)
			if !ok {
				continue
			}
			want, err := ShapeOf(sql)
			if err != nil {
				t.Fatalf("Respell(%q) for %q succeeded; ShapeOf fails: %v", sql, a, err)
			}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(Shape{})); diff != "" {
				t.Errorf("Respell(%q) for %q differs from ShapeOf (-ShapeOf +Respell):\n%s", sql, a, diff)
			}
		}
	})
}

// rewriteInts rewrites each integer Skeleton sets aside in sql from n:
// n+i for the i-th, with leading zeros when n is even.
func rewriteInts(sql string, n uint32) string {
	var out []byte
	k := uint64(n)
	for i := 0; i < len(sql); {
		j := i
		for j < len(sql) && isDigit(sql[j]) {
			j++
		}
		if j == i {
			out = append(out, sql[i])
			i++
			continue
		}
		if (i > 0 && touchesNumber(sql[i-1])) || (j < len(sql) && touchesNumber(sql[j])) {
			out = append(out, sql[i:j]...)
		} else {
			if n%2 == 0 {
				out = append(out, "00"...)
			}
			out = strconv.AppendUint(out, k, 10)
			k++
		}
		i = j
	}
	return string(out)
}

func BenchmarkRespell(b *testing.B) {
	m, err := ShapeOf(`SELECT abalance FROM pgbench_accounts WHERE aid = 1`)
	if err != nil {
		b.Fatal(err)
	}
	const sql = `SELECT abalance FROM pgbench_accounts WHERE aid = 12345`
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Skeleton(sql); !ok {
			b.Fatal("no integer")
		}
		if _, ok := m.Respell(sql); !ok {
			b.Fatal("not respelled")
		}
	}
}

// TestMentionsClockWord: the filter must find every word strings.ToLower
// and strings.Contains would.
func TestMentionsClockWord(t *testing.T) {
	for _, tt := range []struct {
		sql  string
		want bool
	}{
		{"SELECT 1", false},
		{"SELECT now()", true},
		{"SELECT NOW()", true},
		{"select 'ToDaY'::date", true},
		{"SELECT x FROM t WHERE d > 'tomorrow'", true},
		{"SELECT 'YESTERDAY'", true},
		{"SELECT snowy FROM t", true}, // over-approximation: any occurrence
		{"SELECT no, w, toda FROM t", false},
		{"SELECT 'nöw', 'ⓝow'", false},
		{"now", true},
		{"no", false},
		{"", false},
	} {
		want := false
		for _, w := range []string{"now", "today", "tomorrow", "yesterday"} {
			want = want || strings.Contains(strings.ToLower(tt.sql), w)
		}
		if want != tt.want {
			t.Fatalf("table wrong for %q: strings.ToLower finds %v", tt.sql, want)
		}
		if got := mentionsClockWord(tt.sql); got != tt.want {
			t.Errorf("mentionsClockWord(%q) = %v; want %v", tt.sql, got, tt.want)
		}
	}
}
