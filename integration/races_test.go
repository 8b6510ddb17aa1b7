package integration

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestRacesPublicationToggle: a publication altered to publish less and
// altered back between two heartbeats. pgoutput decodes each change with
// the publication as it was when the change was written, so a DELETE
// committed while the publication published only inserts is never sent,
// and the heartbeat never sees the altered state: it must see that the
// publication was altered at all (its version), end the session and
// Reset, or the answer cached before the DELETE is served for ever.
func TestRacesPublicationToggle(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE pt (id int PRIMARY KEY, v int)`)
	pg.Exec(t, `GRANT ALL ON pt TO app`)
	admin := pg.Conn(t)
	ctx := t.Context()
	client := connect(t, sc.URL("app", "", "postgres"))
	const q = `SELECT count(*) FROM pt`
	read := func(c *pgx.Conn) int {
		var n int
		if err := c.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	stale := 0
	const rounds = 3
	for i := range rounds {
		if _, err := admin.Exec(ctx, `INSERT INTO pt VALUES (1, 1) ON CONFLICT DO NOTHING`); err != nil {
			t.Fatal(err)
		}
		waitApplied(t, sc)
		read(client)
		read(client) // cached now
		// The toggle: three autocommit statements in a few milliseconds.
		for _, sql := range []string{
			`ALTER PUBLICATION sqlcache SET (publish = 'insert')`,
			`DELETE FROM pt WHERE id = 1`,
			`ALTER PUBLICATION sqlcache SET (publish = 'insert, update, delete, truncate')`,
		} {
			if _, err := admin.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(1500 * time.Millisecond)
		waitCacheFresh(t, sc)
		waitApplied(t, sc)
		var direct int
		if err := admin.QueryRow(ctx, q).Scan(&direct); err != nil {
			t.Fatal(err)
		}
		if got := read(client); got != direct {
			stale++
			t.Errorf("round %d: %s through sqlcache = %d, directly = %d, 1.5s+ after the DELETE committed with the stream fresh", i, q, got, direct)
		}
	}
	t.Logf("stale rounds: %d of %d; resets %v", stale, rounds, metricValue(t, sc, `sqlcache_stream_resets_total{database="postgres"}`))
}

// counterLog records the values a monotonically increasing counter was
// committed with, and when the committing client had seen it committed.
type counterLog struct {
	mu     sync.Mutex
	viaCC  int64 // highest value whose write through sqlcache returned to its client
	direct []directWrite
}

type directWrite struct {
	v  int64
	at time.Time // the direct write's client saw it committed before this
}

func (l *counterLog) sawViaCache(v int64) {
	l.mu.Lock()
	l.viaCC = max(l.viaCC, v)
	l.mu.Unlock()
}

func (l *counterLog) sawDirect(v int64, at time.Time) {
	l.mu.Lock()
	l.direct = append(l.direct, directWrite{v, at})
	l.mu.Unlock()
}

// floor returns the least value a read through sqlcache that starts now
// may see: every write through sqlcache already returned, and every
// direct write returned more than lag ago.
func (l *counterLog) floor(lag time.Duration) (int64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, why := l.viaCC, "write through sqlcache"
	cut := time.Now().Add(-lag)
	for i := len(l.direct) - 1; i >= 0; i-- {
		if d := l.direct[i]; d.at.Before(cut) {
			if d.v > f {
				f, why = d.v, fmt.Sprintf("direct write %v ago", time.Since(d.at).Round(time.Millisecond))
			}
			break
		}
	}
	return f, why
}

// TestRacesCounter: writers increment one counter row, through
// sqlcache in several forms (row-level, table-level, in a block, in an
// implicit multi-statement transaction) and directly on PostgreSQL;
// readers read it through sqlcache in several forms (row entries,
// table entries, simple and extended, in read-only blocks). No read may
// return less than a value whose write returned to its client before the
// read began (through sqlcache), or more than max_lag (1s) plus a margin
// before it (directly). The walsender is killed now and then.
func TestRacesCounter(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE ctr (id int PRIMARY KEY, v bigint NOT NULL)`)
	pg.Exec(t, `INSERT INTO ctr SELECT g, 0 FROM generate_series(1, 3) g`)
	pg.Exec(t, `GRANT ALL ON ctr TO app`)
	waitApplied(t, sc)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	const dur = 5 * time.Second
	deadline := time.Now().Add(dur)
	var log counterLog
	var bad atomic.Int32
	var reads, writes atomic.Int64
	fail := func(format string, args ...any) {
		if bad.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}
	var wg sync.WaitGroup
	writer := func(id int, url string, direct bool) {
		defer wg.Done()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		for i := 0; time.Now().Before(deadline); i++ {
			var v int64
			var err error
			form := (i + id) % 5
			switch form {
			case 0:
				err = c.QueryRow(ctx, `UPDATE ctr SET v = v + 1 WHERE id = $1 RETURNING v`, 1).Scan(&v)
			case 1:
				err = c.QueryRow(ctx, `UPDATE ctr SET v = v + 1 WHERE id IN (1) RETURNING v`).Scan(&v)
			case 2:
				var tx pgx.Tx
				if tx, err = c.Begin(ctx); err == nil {
					if err = tx.QueryRow(ctx, `UPDATE ctr SET v = v + 1 WHERE id = 1 RETURNING v`).Scan(&v); err == nil {
						err = tx.Commit(ctx)
					} else {
						tx.Rollback(ctx)
					}
				}
			case 3:
				// An implicit transaction of two statements: committed
				// at the end of the string, after the UPDATE's
				// CommandComplete.
				rr := c.PgConn().Exec(ctx, `UPDATE ctr SET v = v + 1 WHERE id = 1; SELECT v FROM ctr WHERE id = 1`)
				var res []*pgconnResult
				res, err = readAllResults(rr)
				if err == nil {
					_, err = fmt.Sscan(res[1].first, &v)
				}
			case 4:
				err = c.QueryRow(ctx, `UPDATE ctr SET v = v + 1 WHERE id = 1 RETURNING v`, pgx.QueryExecModeSimpleProtocol).Scan(&v)
			}
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("writer %d form %d: %v", id, form, err)
				}
				return
			}
			writes.Add(1)
			if direct {
				log.sawDirect(v, time.Now())
			} else {
				log.sawViaCache(v)
			}
			time.Sleep(time.Duration(i%7) * time.Millisecond)
		}
	}
	reader := func(id int) {
		defer wg.Done()
		c, err := pgx.Connect(ctx, sc.URL("app", "", "postgres"))
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		type rq struct {
			sql  string
			args []any
		}
		qs := []rq{
			{`SELECT v FROM ctr WHERE id = $1`, []any{1}},
			{`SELECT v FROM ctr WHERE id = 1`, []any{pgx.QueryExecModeSimpleProtocol}},
			{`SELECT max(v) FROM ctr`, nil},
			{`SELECT v FROM ctr WHERE id = $1`, []any{pgx.QueryExecModeSimpleProtocol, 1}},
			{`SELECT sum(v) FROM ctr`, []any{pgx.QueryExecModeSimpleProtocol}},
			{`SELECT v FROM ctr WHERE id = 1 AND v >= 0`, nil},
		}
		for i := 0; time.Now().Before(deadline); i++ {
			q := qs[(i+id)%len(qs)]
			floor, why := log.floor(1100 * time.Millisecond)
			var v int64
			var err error
			if i%9 == 4 {
				var tx pgx.Tx
				if tx, err = c.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly}); err == nil {
					err = tx.QueryRow(ctx, q.sql, q.args...).Scan(&v)
					tx.Rollback(ctx)
				}
			} else {
				err = c.QueryRow(ctx, q.sql, q.args...).Scan(&v)
			}
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("reader %d: %s: %v", id, q.sql, err)
				}
				return
			}
			reads.Add(1)
			if v < floor {
				fail("reader %d: %s (%v) = %d; want >= %d (%s)", id, q.sql, q.args, v, floor, why)
			}
		}
	}
	for w := range 3 {
		wg.Add(1)
		go writer(w, sc.URL("app", "", "postgres"), false)
	}
	wg.Add(1)
	go writer(3, pg.URL("postgres", "", "postgres"), true)
	for r := range 5 {
		wg.Add(1)
		go reader(r)
	}
	// Kill the walsender now and then.
	wg.Add(1)
	go func() {
		defer wg.Done()
		admin := pg.Conn(t)
		for time.Now().Before(deadline) {
			time.Sleep(2 * time.Second)
			admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_replication`)
		}
	}()
	wg.Wait()
	t.Logf("%d reads, %d writes, %d bad; hits %v misses %v bypasses down %v lag %v fills dropped %v stampede %v resets %v",
		reads.Load(), writes.Load(), bad.Load(),
		metricValue(t, sc, "sqlcache_cache_hits_total"), metricValue(t, sc, "sqlcache_cache_misses_total"),
		metricValue(t, sc, `sqlcache_cache_bypasses_total{reason="stream_down"}`),
		metricValue(t, sc, `sqlcache_cache_bypasses_total{reason="stream_lag"}`),
		metricValue(t, sc, `sqlcache_cache_fills_dropped_total{reason="invalidated during fill"}`),
		metricValue(t, sc, "sqlcache_cache_stampede_waits_total"),
		metricValue(t, sc, `sqlcache_stream_resets_total{database="postgres"}`))
}

type pgconnResult struct{ first string }

// readAllResults reads a multi-statement Query's results; first is each
// result's first column of its first row.
func readAllResults(mrr *pgconn.MultiResultReader) ([]*pgconnResult, error) {
	all, err := mrr.ReadAll()
	if err != nil {
		return nil, err
	}
	out := make([]*pgconnResult, len(all))
	for i, r := range all {
		if r.Err != nil {
			return nil, r.Err
		}
		out[i] = &pgconnResult{}
		if len(r.Rows) > 0 && len(r.Rows[0]) > 0 {
			out[i].first = string(r.Rows[0][0])
		}
	}
	return out, nil
}

// TestRacesViewWriteOtherSession: an UPDATE through an
// automatically updatable view, sent through sqlcache, changes the base
// table; another session's read through sqlcache right after the writer
// saw its CommandComplete must not be older than the write (README, Read
// your writes).
func TestRacesViewWriteOtherSession(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE vt (id int PRIMARY KEY, v int NOT NULL)`)
	pg.Exec(t, `INSERT INTO vt VALUES (1, 0)`)
	pg.Exec(t, `CREATE VIEW vtv AS SELECT id, v FROM vt`)
	pg.Exec(t, `GRANT ALL ON vt, vtv TO app`)
	waitApplied(t, sc)
	ctx := t.Context()
	writer := connect(t, sc.URL("app", "", "postgres"))
	reader := connect(t, sc.URL("app", "", "postgres"))
	stale := 0
	const rounds = 50
	for i := 1; i <= rounds; i++ {
		for _, q := range []string{`SELECT v FROM vt WHERE id = 1`, `SELECT v FROM vtv WHERE id = 1`} {
			var v int
			for range 2 { // warm: the second is a hit
				if err := reader.QueryRow(ctx, q).Scan(&v); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := writer.Exec(ctx, `UPDATE vtv SET v = $1 WHERE id = 1`, i); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{`SELECT v FROM vt WHERE id = 1`, `SELECT v FROM vtv WHERE id = 1`} {
			var v int
			if err := reader.QueryRow(ctx, q).Scan(&v); err != nil {
				t.Fatal(err)
			}
			if v != i {
				stale++
				if stale <= 5 {
					t.Errorf("round %d: %s through sqlcache in another session = %d right after the writer's UPDATE of view vtv returned; PostgreSQL has %d", i, q, v, i)
				}
			}
		}
	}
	t.Logf("stale reads: %d of %d", stale, 2*rounds)
}

// TestRacesStampedeLockStall: a session that already holds ACCESS SHARE
// on a table (a read committed block whose earlier read was relayed)
// misses on a key whose leader fill, in another session, waits behind an
// ALTER TABLE queued behind that very block. Directly, the block's read
// goes through at once (it holds the lock); through sqlcache it must not
// wait for the other session's fill, which would hold it until the fill
// wait limit (10 s) ran out.
func TestRacesStampedeLockStall(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE st (id int PRIMARY KEY, v int NOT NULL)`)
	pg.Exec(t, `INSERT INTO st VALUES (1, 1)`)
	pg.Exec(t, `GRANT ALL ON st TO app`)
	waitApplied(t, sc)
	ctx := t.Context()
	w := connect(t, sc.URL("app", "", "postgres"))
	l := connect(t, sc.URL("app", "", "postgres"))
	admin := pg.Conn(t)
	tx, err := w.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT v FROM st WHERE id = 1 AND v > 0`, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
		t.Fatal(err)
	}
	ddlDone := make(chan error, 1)
	go func() {
		_, err := admin.Exec(context.Background(), `ALTER TABLE st ADD COLUMN extra int`)
		ddlDone <- err
	}()
	time.Sleep(300 * time.Millisecond)
	const q = `SELECT count(*) FROM st`
	leaderDone := make(chan error, 1)
	go func() {
		var n int
		leaderDone <- l.QueryRow(context.Background(), q, pgx.QueryExecModeSimpleProtocol).Scan(&n)
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	var n int
	if err := tx.QueryRow(ctx, q, pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-ddlDone; err != nil {
		t.Fatal(err)
	}
	if err := <-leaderDone; err != nil {
		t.Fatal(err)
	}
	if took > 5*time.Second { // half the fill wait limit
		t.Errorf("the block's read of %q took %v through sqlcache (waiting for another session's fill that waits for this block); directly it returns at once", q, took.Round(time.Millisecond))
	}
	t.Logf("block read took %v; stampede waits %v\n%s", took, metricValue(t, sc, "sqlcache_cache_stampede_waits_total"), cacheMetrics(t, sc))
}
