package pgwire_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// loopReader returns b over and over, so that one Reader can be read for
// the whole benchmark: a Reader's io.EOF is sticky, and a new Reader per
// iteration would measure its buffer allocation instead of Next.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

func BenchmarkReaderNext(b *testing.B) {
	// One extended-protocol query as pgx sends it.
	batch := encode(b,
		&pgproto3.Parse{Query: "SELECT id, name FROM users WHERE id = $1", ParameterOIDs: []uint32{23}},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("42")}, ResultFormatCodes: []int16{1}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	r := pgwire.NewReader(&loopReader{b: batch}, 1<<20)
	b.ReportAllocs()
	b.SetBytes(int64(len(batch)))
	for b.Loop() {
		for range 5 {
			if _, err := r.Next(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
