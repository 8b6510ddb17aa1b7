package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// racesMoreKeyLog records, per key of a counter table, the highest value
// whose write returned to its client, per proxy, and when.
type racesMoreKeyLog struct {
	mu   sync.Mutex
	done map[string][]racesMoreWrite // proxy name -> writes that returned, in order
}

type racesMoreWrite struct {
	key int
	v   int64
	at  time.Time
}

func (l *racesMoreKeyLog) saw(proxy string, key int, v int64) {
	l.mu.Lock()
	l.done[proxy] = append(l.done[proxy], racesMoreWrite{key, v, time.Now()})
	l.mu.Unlock()
}

// floor is the least value of key a read through proxy that starts now
// may return: every write of it through the same proxy that returned, and
// every write through another proxy that returned more than lag ago.
func (l *racesMoreKeyLog) floor(proxy string, key int, lag time.Duration) (int64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cut := time.Now().Add(-lag)
	var f int64
	why := "nothing"
	for p, ws := range l.done {
		for i := len(ws) - 1; i >= 0; i-- {
			w := ws[i]
			if w.key != key {
				continue
			}
			if p != proxy && w.at.After(cut) {
				continue
			}
			if w.v > f {
				f = w.v
				why = fmt.Sprintf("write through %s that returned %v ago", p, time.Since(w.at).Round(time.Millisecond))
			}
		}
	}
	return f, why
}

// TestRacesMoreTwoProxies: two sqlcache instances in front of one
// PostgreSQL, each with its own change stream. Writers increment many
// counter rows through A, through B and directly; readers read them
// through A and B, by row (row-level entries) and by table (table-level
// entries), simple and extended, many sessions at once. A read must never
// return less than a value whose write returned through the same proxy
// before the read began, nor one whose write returned through the other
// road more than max_lag (1s) plus a margin before.
func TestRacesMoreTwoProxies(t *testing.T) {
	pg, scA := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE rmc (id int PRIMARY KEY, v bigint NOT NULL)`)
	pg.Exec(t, `INSERT INTO rmc SELECT g, 0 FROM generate_series(1, 8) g`)
	pg.Exec(t, `GRANT ALL ON rmc TO app`)
	scB := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr(), ServiceDSN: pg.URL("postgres", "", "postgres")})
	waitCacheFresh(t, scB)
	waitApplied(t, scA)
	waitApplied(t, scB)
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	const keys = 8
	deadline := time.Now().Add(6 * time.Second)
	log := &racesMoreKeyLog{done: map[string][]racesMoreWrite{}}
	urls := map[string]string{
		"A":      scA.URL("app", "", "postgres"),
		"B":      scB.URL("app", "", "postgres"),
		"direct": pg.URL("postgres", "", "postgres"),
	}
	var bad atomic.Int32
	var reads, writes atomic.Int64
	var wg sync.WaitGroup
	writer := func(id int, proxy string) {
		defer wg.Done()
		c, err := pgx.Connect(ctx, urls[proxy])
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		rng := rand.New(rand.NewPCG(uint64(id), 7))
		for i := 0; time.Now().Before(deadline); i++ {
			k := 1 + rng.IntN(keys)
			var v int64
			switch i % 4 {
			case 0:
				err = c.QueryRow(ctx, `UPDATE rmc SET v = v + 1 WHERE id = $1 RETURNING v`, k).Scan(&v)
			case 1:
				err = c.QueryRow(ctx, fmt.Sprintf(`UPDATE rmc SET v = v + 1 WHERE id = %d RETURNING v`, k), pgx.QueryExecModeSimpleProtocol).Scan(&v)
			case 2:
				// Table-level write of one row.
				err = c.QueryRow(ctx, `UPDATE rmc SET v = v + 1 WHERE id + 0 = $1 RETURNING v`, k).Scan(&v)
			case 3:
				var tx pgx.Tx
				if tx, err = c.Begin(ctx); err == nil {
					if err = tx.QueryRow(ctx, `UPDATE rmc SET v = v + 1 WHERE id = $1 RETURNING v`, k).Scan(&v); err == nil {
						err = tx.Commit(ctx)
					} else {
						tx.Rollback(ctx)
					}
				}
			}
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("writer %d via %s: %v", id, proxy, err)
				}
				return
			}
			writes.Add(1)
			log.saw(proxy, k, v)
			time.Sleep(time.Duration(rng.IntN(4)) * time.Millisecond)
		}
	}
	reader := func(id int, proxy string) {
		defer wg.Done()
		c, err := pgx.Connect(ctx, urls[proxy])
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		rng := rand.New(rand.NewPCG(uint64(id), 11))
		qs := []struct {
			sql    string
			simple bool
		}{
			{`SELECT v FROM rmc WHERE id = $1`, false},
			{`SELECT v FROM rmc WHERE id = %d`, true},
			{`SELECT max(v) FROM rmc WHERE id = $1 OR id < 0`, false},
			{`SELECT v FROM rmc WHERE id = %d AND v >= 0`, true},
		}
		for i := 0; time.Now().Before(deadline); i++ {
			k := 1 + rng.IntN(keys)
			q := qs[rng.IntN(len(qs))]
			floor, why := log.floor(proxy, k, 1300*time.Millisecond)
			var v int64
			if q.simple {
				err = c.QueryRow(ctx, fmt.Sprintf(q.sql, k), pgx.QueryExecModeSimpleProtocol).Scan(&v)
			} else {
				err = c.QueryRow(ctx, q.sql, k).Scan(&v)
			}
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("reader %d via %s: %s: %v", id, proxy, q.sql, err)
				}
				return
			}
			reads.Add(1)
			if v < floor {
				if bad.Add(1) <= 10 {
					t.Errorf("reader %d via %s: %s with id %d = %d; want >= %d (%s)", id, proxy, q.sql, k, v, floor, why)
				}
			}
		}
	}
	n := 0
	for _, p := range []string{"A", "A", "B", "direct"} {
		wg.Add(1)
		go writer(n, p)
		n++
	}
	for _, p := range []string{"A", "A", "A", "B", "B", "B"} {
		wg.Add(1)
		go reader(n, p)
		n++
	}
	wg.Wait()
	for name, sc := range map[string]*Sqlcache{"A": scA, "B": scB} {
		t.Logf("%s: hits %v misses %v fills dropped %v stampede %v lag bypasses %v", name,
			metricValue(t, sc, "sqlcache_cache_hits_total"), metricValue(t, sc, "sqlcache_cache_misses_total"),
			metricValue(t, sc, `sqlcache_cache_fills_dropped_total{reason="invalidated during fill"}`),
			metricValue(t, sc, "sqlcache_cache_stampede_waits_total"),
			metricValue(t, sc, `sqlcache_cache_bypasses_total{reason="stream_lag"}`))
	}
	t.Logf("%d reads, %d writes, %d bad", reads.Load(), writes.Load(), bad.Load())
	if metricValue(t, scB, "sqlcache_cache_hits_total") == 0 || metricValue(t, scA, "sqlcache_cache_hits_total") == 0 {
		t.Errorf("a proxy answered nothing from the cache: the test proves nothing")
	}
}

// TestRacesMoreDeleteInsertStampede: fifty sessions read one key through
// sqlcache (one leader fill, the rest waiting for it) while a writer,
// through the same sqlcache, deletes the row and inserts it again with a
// higher version, over and over, and another writer updates it directly
// (the change stream only). A read that begins after the INSERT of
// version n returned must see version >= n, or no row only if the DELETE
// of version n has begun.
func TestRacesMoreDeleteInsertStampede(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE rmd (id int PRIMARY KEY, v bigint NOT NULL)`)
	pg.Exec(t, `INSERT INTO rmd VALUES (1, 0), (2, 0)`)
	pg.Exec(t, `GRANT ALL ON rmd TO app`)
	waitApplied(t, sc)
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	deadline := time.Now().Add(5 * time.Second)
	var inserted atomic.Int64   // highest version whose INSERT returned
	var delStarted atomic.Int64 // highest version whose DELETE began
	var bad atomic.Int32
	var reads, absent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := pgx.Connect(ctx, sc.URL("app", "", "postgres"))
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		for ver := int64(1); time.Now().Before(deadline); ver++ {
			delStarted.Store(ver - 1)
			var sqlDel, sqlIns string
			switch ver % 3 {
			case 0:
				sqlDel, sqlIns = `DELETE FROM rmd WHERE id = $1`, `INSERT INTO rmd (id, v) VALUES ($1, $2)`
			case 1:
				sqlDel, sqlIns = `DELETE FROM rmd WHERE id = $1 AND v >= 0`, `INSERT INTO rmd (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v`
			case 2:
				sqlDel, sqlIns = `DELETE FROM rmd WHERE id + 0 = $1`, `INSERT INTO rmd SELECT $1::int, $2::bigint`
			}
			if _, err := c.Exec(ctx, sqlDel, 1); err != nil {
				t.Error(err)
				return
			}
			if _, err := c.Exec(ctx, sqlIns, 1, ver); err != nil {
				t.Error(err)
				return
			}
			inserted.Store(ver)
			time.Sleep(time.Duration(ver%3) * time.Millisecond)
		}
	}()
	for id := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, sc.URL("app", "", "postgres"))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(context.Background())
			for i := 0; time.Now().Before(deadline); i++ {
				floor := inserted.Load()
				var v int64
				var err error
				if (i+id)%2 == 0 {
					err = c.QueryRow(ctx, `SELECT v FROM rmd WHERE id = $1`, 1).Scan(&v)
				} else {
					err = c.QueryRow(ctx, `SELECT v FROM rmd WHERE id = 1`, pgx.QueryExecModeSimpleProtocol).Scan(&v)
				}
				if errors.Is(err, pgx.ErrNoRows) {
					absent.Add(1)
					if d := delStarted.Load(); d < floor {
						if bad.Add(1) <= 10 {
							t.Errorf("session %d: no row 1, though version %d was inserted before the read began and its DELETE had not begun by its end (last DELETE begun: version %d)", id, floor, d)
						}
					}
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("session %d: %v", id, err)
					}
					return
				}
				reads.Add(1)
				if v < floor {
					if bad.Add(1) <= 10 {
						t.Errorf("session %d: row 1 has version %d; want >= %d (its INSERT returned before the read began)", id, v, floor)
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d reads with a row, %d without, %d bad, %d versions\n%s", reads.Load(), absent.Load(), bad.Load(), inserted.Load(), cacheMetrics(t, sc))
	if metricValue(t, sc, "sqlcache_cache_hits_total") == 0 {
		t.Errorf("nothing answered from the cache: the test proves nothing")
	}
}

// TestRacesMoreWaiterStaleDecision: a miss that waits for another
// session's fill of the same key keeps the decision it made before
// waiting (which tables the answer depends on). If the view it reads is
// redefined through sqlcache meanwhile, and the leader's fill is refused
// for it, the waiter runs the query itself, on the new definition, and
// must not store the answer under the old one's tables: a later write
// through sqlcache to the table the view now reads must reach it.
//
// The order is forced with locks: a direct session holds ACCESS SHARE on
// the view, the CREATE OR REPLACE VIEW through sqlcache waits behind it,
// the leader's read waits behind that, the waiter waits for the leader.
func TestRacesMoreWaiterStaleDecision(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE wsa (id int PRIMARY KEY, v int NOT NULL)`)
	pg.Exec(t, `CREATE TABLE wsb (id int PRIMARY KEY, v int NOT NULL)`)
	pg.Exec(t, `INSERT INTO wsa VALUES (1, 10)`)
	pg.Exec(t, `INSERT INTO wsb VALUES (1, 20)`)
	pg.Exec(t, `CREATE VIEW wsv AS SELECT v FROM wsa`)
	waitApplied(t, sc)
	ctx := t.Context()
	url := sc.URL("postgres", "", "postgres")
	const q = `SELECT v FROM wsv`
	read := func(c *pgx.Conn) (int, error) {
		var v int
		err := c.QueryRow(ctx, q, pgx.QueryExecModeSimpleProtocol).Scan(&v)
		return v, err
	}
	leader, waiter, ddl, checker := connect(t, url), connect(t, url), connect(t, url), connect(t, url)
	// Every session decides the statement once, on the old definition.
	for _, c := range []*pgx.Conn{leader, waiter, checker} {
		if v, err := read(c); err != nil || v != 10 {
			t.Fatalf("warm-up read: %d, %v; want 10", v, err)
		}
	}
	// Drop the answer (not the decisions): a write to wsa.
	if _, err := checker.Exec(ctx, `UPDATE wsa SET v = 11 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	blocker := pg.Conn(t)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT * FROM wsv`); err != nil {
		t.Fatal(err)
	}
	ddlDone := make(chan error, 1)
	go func() {
		// In a block: its COMMIT drops what it wrote once (an autocommit
		// DDL drops again at its ReadyForQuery, which may or may not
		// come before the waiter's fill begins).
		ctx := context.Background()
		tx, err := ddl.Begin(ctx)
		if err == nil {
			if _, err = tx.Exec(ctx, `CREATE OR REPLACE VIEW wsv AS SELECT v FROM wsb`); err == nil {
				err = tx.Commit(ctx)
			}
		}
		ddlDone <- err
	}()
	admin := pg.Conn(t)
	waitLocked := func(query string, n int) {
		waitUntil(t, 10*time.Second, fmt.Sprintf("%d sessions waiting for a lock running %q", n, query), func() bool {
			var got int
			if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND wait_event_type = 'Lock'`, query).Scan(&got); err != nil {
				t.Fatal(err)
			}
			return got >= n
		})
	}
	waitLocked(`CREATE OR REPLACE VIEW wsv AS SELECT v FROM wsb`, 1)
	type result struct {
		v   int
		err error
	}
	leaderDone, waiterDone := make(chan result, 1), make(chan result, 1)
	go func() { v, err := read(leader); leaderDone <- result{v, err} }()
	waitLocked(q, 1) // the leader's query, behind the DDL
	go func() { v, err := read(waiter); waiterDone <- result{v, err} }()
	time.Sleep(500 * time.Millisecond) // the waiter decides, misses and waits for the leader's fill
	if n := metricValue(t, sc, "sqlcache_cache_stampede_waits_total"); n != 0 {
		t.Logf("stampede waits before the commit: %v", n)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-ddlDone; err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan result{"leader": leaderDone, "waiter": waiterDone} {
		select {
		case r := <-ch:
			if r.err != nil || r.v != 20 {
				t.Errorf("%s read %d, %v; want 20 (it ran after the view was redefined)", name, r.v, r.err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s did not return", name)
		}
	}
	// The view reads wsb now: a write to wsb through sqlcache.
	if _, err := checker.Exec(ctx, `UPDATE wsb SET v = 21 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	var want int
	if err := admin.QueryRow(ctx, q).Scan(&want); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*pgx.Conn{checker, connect(t, url)} {
		if got, err := read(c); err != nil || got != want {
			t.Errorf("%s through sqlcache after UPDATE wsb SET v = 21 returned through sqlcache = %d, %v; PostgreSQL returns %d (an answer of the new definition was stored as depending on the old one's table wsa)", q, got, err, want)
		}
	}
	// Not the change stream's lag: once it has applied the UPDATE, and
	// max_lag more, the answer is still the old one.
	waitApplied(t, sc)
	time.Sleep(1500 * time.Millisecond)
	waitCacheFresh(t, sc)
	if got, err := read(connect(t, url)); err != nil || got != want {
		t.Errorf("%s through sqlcache 1.5s after the change stream applied the UPDATE of wsb = %d, %v; PostgreSQL returns %d", q, got, err, want)
	}
	t.Logf("fills dropped %v, stampede waits %v\n%s",
		metricValue(t, sc, `sqlcache_cache_fills_dropped_total{reason="invalidated during fill"}`),
		metricValue(t, sc, "sqlcache_cache_stampede_waits_total"), cacheMetrics(t, sc))
}

// TestRacesMoreWaiterStalePolicy: the same wait across an ALTER POLICY
// through sqlcache that makes a table's row security read another table
// (acl). An answer of the new policy stored under the old decision
// depends on docs alone, so a write to acl through sqlcache that takes the
// role's access away does not drop it: the role goes on reading rows
// PostgreSQL no longer shows it.
func TestRacesMoreWaiterStalePolicy(t *testing.T) {
	pg, sc := startCache(t, nil)
	for _, stmt := range []string{
		`CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL)`,
		`INSERT INTO docs VALUES (1, 'secret')`,
		`CREATE TABLE acl (who text PRIMARY KEY)`,
		`INSERT INTO acl VALUES ('app')`,
		`ALTER TABLE docs ENABLE ROW LEVEL SECURITY`,
		`CREATE POLICY p ON docs FOR SELECT USING (true)`,
		`GRANT SELECT ON docs, acl TO app`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	ctx := t.Context()
	appURL, adminURL := sc.URL("app", "", "postgres"), sc.URL("postgres", "", "postgres")
	const q = `SELECT count(*) FROM docs`
	const alter = `ALTER POLICY p ON docs USING (EXISTS (SELECT FROM acl WHERE acl.who = current_user))`
	read := func(c *pgx.Conn) (int, error) {
		var n int
		err := c.QueryRow(ctx, q, pgx.QueryExecModeSimpleProtocol).Scan(&n)
		return n, err
	}
	leader, waiter, checker := connect(t, appURL), connect(t, appURL), connect(t, appURL)
	ddl, writer := connect(t, adminURL), connect(t, adminURL)
	for _, c := range []*pgx.Conn{leader, waiter, checker} {
		if n, err := read(c); err != nil || n != 1 {
			t.Fatalf("warm-up read: %d, %v; want 1", n, err)
		}
	}
	if _, err := writer.Exec(ctx, `UPDATE docs SET body = 'secret2' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	blocker := pg.Conn(t)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT * FROM docs`); err != nil {
		t.Fatal(err)
	}
	ddlDone := make(chan error, 1)
	go func() {
		ctx := context.Background()
		tx, err := ddl.Begin(ctx)
		if err == nil {
			if _, err = tx.Exec(ctx, alter); err == nil {
				err = tx.Commit(ctx)
			}
		}
		ddlDone <- err
	}()
	admin := pg.Conn(t)
	waitLocked := func(query string) {
		waitUntil(t, 10*time.Second, fmt.Sprintf("a session waiting for a lock running %q", query), func() bool {
			var got int
			if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND wait_event_type = 'Lock'`, query).Scan(&got); err != nil {
				t.Fatal(err)
			}
			return got >= 1
		})
	}
	waitLocked(alter)
	leaderDone, waiterDone := make(chan error, 1), make(chan error, 1)
	go func() { _, err := read(leader); leaderDone <- err }()
	waitLocked(q)
	go func() { _, err := read(waiter); waiterDone <- err }()
	time.Sleep(500 * time.Millisecond)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-ddlDone; err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan error{leaderDone, waiterDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("a read did not return")
		}
	}
	// Take app's access away, through sqlcache.
	if _, err := writer.Exec(ctx, `DELETE FROM acl WHERE who = 'app'`); err != nil {
		t.Fatal(err)
	}
	direct, err := pgx.Connect(ctx, pg.URL("app", "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())
	want, err := read(direct)
	if err != nil || want != 0 {
		t.Fatalf("directly as app: %d, %v; want 0", want, err)
	}
	for _, c := range []*pgx.Conn{checker, connect(t, appURL)} {
		if got, err := read(c); err != nil || got != want {
			t.Errorf("%s as app through sqlcache after DELETE FROM acl WHERE who = 'app' returned through sqlcache = %d, %v; PostgreSQL shows app %d rows", q, got, err, want)
		}
	}
}

// TestRacesMoreLeaderDisconnects: the session whose miss leads a fill
// drops its connection mid-query; a session waiting for that fill must
// run the query itself at once, not wait out the fill wait limit (10 s),
// and get PostgreSQL's answer.
func TestRacesMoreLeaderDisconnects(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE ld (id int PRIMARY KEY, v int)`)
	pg.Exec(t, `INSERT INTO ld VALUES (1, 1)`)
	pg.Exec(t, `CREATE FUNCTION ld_slow(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN $1; END $$`)
	waitApplied(t, sc)
	const q = `SELECT v, ld_slow(id) FROM ld WHERE id = 1`
	url := sc.URL("postgres", "", "postgres")
	leader, waiter := connect(t, url), connect(t, url)
	go func() {
		var v, id int
		leader.QueryRow(context.Background(), q).Scan(&v, &id) // fails: its connection goes
	}()
	waitForActivity(t, sc, q)
	type result struct {
		v   int
		err error
		d   time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		var v, id int
		err := waiter.QueryRow(context.Background(), q).Scan(&v, &id)
		done <- result{v, err, time.Since(start)}
	}()
	time.Sleep(300 * time.Millisecond)
	if _, err := pg.Conn(t).Exec(t.Context(), `UPDATE ld SET v = 2 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	leader.PgConn().Conn().Close() // mid-query, without a Terminate
	r := <-done
	if r.err != nil || r.v != 2 {
		t.Errorf("waiter read %d, %v; want 2 (PostgreSQL's answer after the direct UPDATE, committed before the leader left)", r.v, r.err)
	}
	if r.d > 7*time.Second {
		t.Errorf("waiter took %v: it waited for the fill of a session that had gone", r.d.Round(time.Millisecond))
	}
	t.Logf("waiter took %v", r.d.Round(time.Millisecond))
}
