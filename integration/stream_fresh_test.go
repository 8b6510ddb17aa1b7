package integration

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sqlcache/sqlcache/invalidator"
)

// TestStreamFreshness checks the promise of FreshAsOf: once it is past a
// commit's time, that commit has been applied. The server runs with
// synchronous_commit = off, where a commit is visible before its WAL is
// written: a target read with pg_current_wal_lsn() (the write position)
// would miss it and fail this test.
func TestStreamFreshness(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t)
	p.Exec(t, `CREATE TABLE passive (id int PRIMARY KEY)`)
	for w := range 4 {
		p.Exec(t, fmt.Sprintf(`CREATE TABLE fresh_%d (id int PRIMARY KEY)`, w))
	}
	s, rec, _ := startStream(t, p, nil)
	waitStreamFresh(t, s, 10*time.Second)

	// Without WaitFresh, heartbeats alone move FreshAsOf past a commit
	// within a second, and the commit is applied by then.
	t.Run("passive", func(t *testing.T) {
		mark := rec.mark()
		p.Exec(t, `INSERT INTO passive VALUES (1)`)
		committed := time.Now()
		d := waitUntil(t, 5*time.Second, "FreshAsOf past the commit", func() bool { return s.FreshAsOf().After(committed) })
		if d > time.Second {
			t.Errorf("FreshAsOf passed the commit after %v; want within 1s", d)
		}
		if rec.count(mark, "passive", invalidator.Data) != 1 {
			t.Errorf("FreshAsOf passed the commit before it was applied")
		}
	})

	// Writers commit and at once wait for freshness: each time, their
	// commit must already have been applied. One writer commits
	// synchronously, the others asynchronously.
	t.Run("WaitFresh", func(t *testing.T) {
		const rounds = 40
		var mu sync.Mutex
		var waits []time.Duration
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := pgx.Connect(t.Context(), p.URL("postgres", "", "postgres"))
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close(context.Background())
				if w == 0 {
					conn.Exec(t.Context(), `SET synchronous_commit = on`)
				}
				table := fmt.Sprintf("fresh_%d", w)
				mark := rec.mark()
				for i := range rounds {
					if _, err := conn.Exec(t.Context(), fmt.Sprintf(`INSERT INTO %s VALUES (%d)`, table, i)); err != nil {
						t.Error(err)
						return
					}
					committed := time.Now()
					ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
					ok := s.WaitFresh(ctx, committed)
					cancel()
					d := time.Since(committed)
					if !ok {
						t.Errorf("%s round %d: not fresh after %v: %+v", table, i, d, s.Status())
						return
					}
					if got := rec.count(mark, table, invalidator.Data); got != i+1 {
						t.Errorf("%s round %d: fresh past the commit with %d of %d commits applied", table, i, got, i+1)
						return
					}
					mu.Lock()
					waits = append(waits, d)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		slices.Sort(waits)
		if len(waits) == 0 {
			return
		}
		t.Logf("WaitFresh after a commit: p50 %v, p90 %v, max %v", waits[len(waits)/2], waits[len(waits)*9/10], waits[len(waits)-1])
		if m := waits[len(waits)-1]; m > time.Second {
			t.Errorf("WaitFresh took up to %v; want within 1s", m)
		}
	})

	// A session idle in transaction after writing leaves WAL that nothing
	// flushes; the walsender decodes only flushed WAL. Heartbeats nudge the
	// server to flush, so freshness does not stall.
	t.Run("idle in transaction", func(t *testing.T) {
		conn := p.Conn(t)
		if _, err := conn.Exec(t.Context(), `BEGIN`); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(t.Context(), `INSERT INTO passive VALUES (100)`); err != nil {
			t.Fatal(err)
		}
		defer conn.Exec(context.Background(), `ROLLBACK`)
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if !s.WaitFresh(ctx, start) {
			t.Fatalf("not fresh while a transaction is open: %+v", s.Status())
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("fresh after %v with a transaction open; want within 1.5s", d)
		}
	})

	// WaitFresh gives up when its context ends.
	t.Run("WaitFresh canceled", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if s.WaitFresh(ctx, time.Now().Add(time.Hour)) {
			t.Error("WaitFresh for an hour from now returned true")
		}
	})
}
