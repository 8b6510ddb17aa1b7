package integration

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestBlocksMoreFlushedImplicitWrite: an extended-protocol UPDATE followed
// by Flush runs in an implicit transaction that commits only at the
// Sync. Meanwhile another session reads (and caches) the row as it was,
// which is right; once the Sync's ReadyForQuery reaches the writer, the
// reader must see the new row, not the answer cached during the window.
func TestBlocksMoreFlushedImplicitWrite(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE bm_impl (id int PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO bm_impl VALUES (1, 'old'), (2, 'other')`)
	waitApplied(t, sc)
	ctx := t.Context()
	reader := connect(t, sc.URL("postgres", "", "postgres"))
	for _, q := range []string{`SELECT v FROM bm_impl WHERE id = 1`, `SELECT id, v FROM bm_impl ORDER BY id`} {
		for _, write := range []string{`UPDATE bm_impl SET v = v || '+' WHERE id = 1`, `UPDATE bm_impl SET v = v || '+'`} {
			before := rtCached(t, ctx, sc, reader, q)
			w, _ := dialRaw(t, sc.Addr, map[string]string{"user": "postgres", "database": "postgres"})
			w.send(&pgproto3.Parse{Query: write}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
			for {
				f, err := w.next()
				if err != nil {
					t.Fatal(err)
				}
				if f[0] == 'E' {
					t.Fatalf("%s: %v", write, f)
				}
				if f[0] == 'C' {
					break
				}
			}
			// Not committed yet: the old row, answered from the cache
			// again (filled again after the CommandComplete's drop).
			if got := rtCached(t, ctx, sc, reader, q); got != before {
				t.Fatalf("%s: before the Sync %q read %q; want %q", write, q, got, before)
			}
			w.roundTrip(1, &pgproto3.Sync{})
			want := rtRows(t, ctx, pg.Conn(t), q)
			if got := rtRows(t, ctx, reader, q); got != want {
				t.Errorf("after %s; Flush; … Sync committed, %q read %q through sqlcache; PostgreSQL has %q", write, q, got, want)
			}
		}
	}
}
