package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// eventually polls f through sqlcache until it returns want, for up to
// limit. It returns how long after the call f was last asked and still
// answered otherwise: how stale an answer sqlcache gave, which does not
// depend on how often f is polled (the promise is that no answer is served
// more than max_lag after a commit it misses).
func eventually(t *testing.T, limit time.Duration, f func() (string, error), want string) time.Duration {
	t.Helper()
	start := time.Now()
	var stale time.Duration
	var got string
	var err error
	for time.Since(start) < limit {
		asked := time.Since(start)
		if got, err = f(); err == nil && got == want {
			return stale
		}
		stale = asked
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("still %q (%v) after %v; want %q", got, err, limit, want)
	return 0
}

// TestStreamInvalidation: writes made directly on Postgres, not through
// sqlcache, show through sqlcache within a second: plain tables,
// partitions, views, triggers and cascades.
func TestStreamInvalidation(t *testing.T) {
	pg, sc := startCache(t, nil)
	for _, stmt := range []string{
		`CREATE TABLE plain (id int PRIMARY KEY, v text)`,
		`INSERT INTO plain VALUES (1, 'a')`,
		`CREATE TABLE parted (k int PRIMARY KEY, v text) PARTITION BY LIST (k)`,
		`CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1)`,
		`INSERT INTO parted VALUES (1, 'a')`,
		`CREATE VIEW plain_view AS SELECT v FROM plain WHERE id = 1`,
		`CREATE TABLE audited (id int PRIMARY KEY)`,
		`CREATE TABLE audit (n int PRIMARY KEY)`,
		`INSERT INTO audit VALUES (0)`,
		`CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE audit SET n = n + 1; RETURN NEW; END $$`,
		`CREATE TRIGGER bump AFTER INSERT ON audited FOR EACH ROW EXECUTE FUNCTION bump()`,
		`CREATE TABLE parent (id int PRIMARY KEY)`,
		`CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent ON DELETE CASCADE)`,
		`INSERT INTO parent VALUES (1)`,
		`INSERT INTO child VALUES (10, 1)`,
	} {
		pg.Exec(t, stmt)
	}
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	read := func(q string) func() (string, error) {
		return func() (string, error) {
			var s string
			err := conn.QueryRow(t.Context(), q).Scan(&s)
			return s, err
		}
	}
	for _, tc := range []struct {
		name, read, write, want string
	}{
		{"insert", `SELECT count(*)::text FROM plain`, `INSERT INTO plain VALUES (2, 'b')`, "2"},
		{"update", `SELECT v FROM plain WHERE id = 1`, `UPDATE plain SET v = 'z' WHERE id = 1`, "z"},
		{"delete", `SELECT count(*)::text FROM plain`, `DELETE FROM plain WHERE id = 2`, "1"},
		{"view", `SELECT v FROM plain_view`, `UPDATE plain SET v = 'y' WHERE id = 1`, "y"},
		{"partition", `SELECT string_agg(v, ',') FROM parted`, `UPDATE parted_1 SET v = 'p'`, "p"},
		{"trigger", `SELECT n::text FROM audit`, `INSERT INTO audited VALUES (1)`, "1"},
		{"cascade", `SELECT count(*)::text FROM child`, `DELETE FROM parent WHERE id = 1`, "0"},
		{"truncate", `SELECT count(*)::text FROM plain`, `TRUNCATE plain CASCADE`, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := read(tc.read)()
			if err != nil {
				t.Fatal(err)
			}
			if again, _ := read(tc.read)(); again != before {
				t.Fatalf("%s changed by itself: %q then %q", tc.read, before, again)
			}
			pg.Exec(t, tc.write)
			d := eventually(t, 5*time.Second, read(tc.read), tc.want)
			if d > time.Second {
				t.Errorf("sqlcache answered from before the direct write %v after it; want within 1s (max_lag)", d)
			}
		})
	}
	if hits := metricValue(t, sc, "sqlcache_cache_hits_total"); hits == 0 {
		t.Error("no hits: the reads never came from the cache, so this proves nothing")
	}
	if n := metricValue(t, sc, `sqlcache_cache_invalidations_total{cause="stream"}`); n == 0 {
		t.Error("no invalidations from the change stream")
	}
}

// versionLog remembers when each version of each row was committed.
type versionLog struct {
	mu      sync.Mutex
	commits map[int][]time.Time // id → commit time of version i+1
}

func (l *versionLog) committed(id int, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.commits[id] = append(l.commits[id], at)
}

// staleness returns how long a newer version than v had been committed
// when a read that started at start returned v; 0 if none had.
func (l *versionLog) staleness(id, v int, start time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.commits[id]
	if v >= len(c) || c[v].After(start) {
		return 0
	}
	return start.Sub(c[v])
}

// staleRun runs writers and readers for d and returns each read's
// staleness. Writers write directly to Postgres (or through sqlcache);
// readers read through sqlcache.
func staleRun(t *testing.T, pg *Postgres, sc *Sqlcache, d time.Duration, writeURL string, faults func(context.Context)) []time.Duration {
	const rows = 4
	pg.Exec(t, `DROP TABLE IF EXISTS versions`)
	pg.Exec(t, `CREATE TABLE versions (id int PRIMARY KEY, v int NOT NULL)`)
	pg.Exec(t, `INSERT INTO versions SELECT g, 0 FROM generate_series(0, 3) g`)
	log := &versionLog{commits: make(map[int][]time.Time)}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lags []time.Duration
	for id := range rows {
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			w, err := pgx.Connect(context.Background(), writeURL)
			if err != nil {
				t.Error(err)
				return
			}
			defer w.Close(context.Background())
			for ctx.Err() == nil {
				if _, err := w.Exec(ctx, `UPDATE versions SET v = v + 1 WHERE id = $1`, id); err != nil {
					if ctx.Err() == nil && !isConnLoss(err) {
						t.Errorf("writer: %v", err)
					}
					if isConnLoss(err) {
						w.Close(context.Background())
						if w, err = reconnect(ctx, writeURL); err != nil {
							return
						}
					}
					continue
				}
				log.committed(id, time.Now())
				time.Sleep(5 * time.Millisecond)
			}
		}()
		go func() { // reader
			defer wg.Done()
			r, err := pgx.Connect(context.Background(), sc.URL("postgres", "", "postgres"))
			if err != nil {
				t.Error(err)
				return
			}
			defer func() { r.Close(context.Background()) }()
			for ctx.Err() == nil {
				start := time.Now()
				var v int
				if err := r.QueryRow(ctx, `SELECT v FROM versions WHERE id = $1`, id).Scan(&v); err != nil {
					if isConnLoss(err) {
						r.Close(context.Background())
						if r, err = reconnect(ctx, sc.URL("postgres", "", "postgres")); err != nil {
							return
						}
					}
					continue
				}
				mu.Lock()
				lags = append(lags, log.staleness(id, v, start))
				mu.Unlock()
			}
		}()
	}
	if faults != nil {
		faults(ctx)
	}
	wg.Wait()
	return lags
}

func isConnLoss(err error) bool {
	s := err.Error()
	return strings.Contains(s, "08006") || strings.Contains(s, "08001") || strings.Contains(s, "57P01") ||
		strings.Contains(s, "conn closed") || strings.Contains(s, "EOF") || strings.Contains(s, "connection refused") ||
		strings.Contains(s, "57P03") || strings.Contains(s, "unexpected")
}

func reconnect(ctx context.Context, url string) (*pgx.Conn, error) {
	for ctx.Err() == nil {
		c, err := pgx.Connect(ctx, url)
		if err == nil {
			return c, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, ctx.Err()
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func summarize(lags []time.Duration) string {
	var stale []time.Duration
	for _, l := range lags {
		if l > 0 {
			stale = append(stale, l)
		}
	}
	return fmt.Sprintf("%d reads, %d behind a committed write; lag among those p50 %v p99 %v max %v",
		len(lags), len(stale), percentile(stale, 0.5), percentile(stale, 0.99), percentile(stale, 1))
}

// TestStalenessBound: writers go straight to Postgres, readers through
// sqlcache; no read may be older than commit time + max_lag. Then the
// writers go through sqlcache, reading their own rows back: the writing
// session never reads its write stale.
func TestStalenessBound(t *testing.T) {
	const maxLag = time.Second
	pg, sc := startCache(t, nil)
	lags := staleRun(t, pg, sc, 20*time.Second, pg.URL("postgres", "", "postgres"), nil)
	t.Logf("direct writers: %s", summarize(lags))
	if m := percentile(lags, 1); m > maxLag {
		t.Errorf("a read was %v behind a committed write; the bound is max_lag (%v)", m, maxLag)
	}
	if metricValue(t, sc, "sqlcache_cache_hits_total") == 0 {
		t.Error("no cache hits: the run proves nothing")
	}
	t.Run("writer_through_sqlcache", func(t *testing.T) {
		own := ownWrites(t, pg, sc, 10*time.Second)
		if own != 0 {
			t.Errorf("the writing session read %d of its own writes stale", own)
		}
	})
}

// ownWrites has sessions write through sqlcache and read back at once,
// and returns how many reads returned an older version.
func ownWrites(t *testing.T, pg *Postgres, sc *Sqlcache, d time.Duration) int {
	pg.Exec(t, `DROP TABLE IF EXISTS own`)
	pg.Exec(t, `CREATE TABLE own (id int PRIMARY KEY, v int NOT NULL)`)
	pg.Exec(t, `CREATE TABLE own_audit (id int PRIMARY KEY, v int NOT NULL)`)
	pg.Exec(t, `INSERT INTO own SELECT g, 0 FROM generate_series(0, 3) g`)
	pg.Exec(t, `INSERT INTO own_audit SELECT g, 0 FROM generate_series(0, 3) g`)
	// A trigger copies each write to another table: the proxy cannot see
	// that write, only the change stream can.
	pg.Exec(t, `CREATE FUNCTION own_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE own_audit SET v = NEW.v WHERE id = NEW.id; RETURN NEW; END $$`)
	pg.Exec(t, `CREATE TRIGGER own_copy AFTER UPDATE ON own FOR EACH ROW EXECUTE FUNCTION own_copy()`)
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	stale, reads := 0, 0
	for id := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(context.Background(), sc.URL("postgres", "", "postgres", "synchronous_commit=on"))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(context.Background())
			for v := 1; ctx.Err() == nil; v++ {
				if _, err := c.Exec(ctx, `UPDATE own SET v = $2 WHERE id = $1`, id, v); err != nil {
					return
				}
				for _, q := range []string{`SELECT v FROM own WHERE id = $1`, `SELECT v FROM own_audit WHERE id = $1`} {
					var got int
					if err := c.QueryRow(ctx, q, id).Scan(&got); err != nil {
						return
					}
					mu.Lock()
					reads++
					if got != v {
						stale++
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d own reads, %d stale", reads, stale)
	return stale
}

// TestStreamFaults breaks the change stream while the staleness checker
// runs — the walsender terminated, the slot dropped, Postgres restarted —
// and checks that no read is ever served staler than max_lag, and that
// caching resumes afterwards.
func TestStreamFaults(t *testing.T) {
	pg, sc := startCache(t, nil)
	admin := pg.Conn(t)
	faults := func(ctx context.Context) {
		pause := func(d time.Duration) {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		pause(3 * time.Second)
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_replication`); err != nil {
			t.Errorf("terminate walsender: %v", err)
		}
		pause(3 * time.Second)
		// A temporary slot cannot be dropped while in use; end its
		// walsender and drop it before the stream reconnects.
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(active_pid), pg_drop_replication_slot(slot_name)
			FROM pg_replication_slots WHERE active_pid IS NOT NULL`); err != nil {
			t.Logf("drop slot: %v (the stream may have been reconnecting)", err)
		}
		pause(3 * time.Second)
		pg.Stop(t)
		pause(500 * time.Millisecond)
		pg.Start(t)
		admin = pg.Conn(t)
	}
	lags := staleRun(t, pg, sc, 20*time.Second, pg.URL("postgres", "", "postgres"), faults)
	t.Logf("with faults: %s", summarize(lags))
	if m := percentile(lags, 1); m > time.Second {
		t.Errorf("a read was %v behind a committed write during faults; the bound is 1s", m)
	}
	// Caching resumes: a repeated read is a hit again.
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := metricValue(t, sc, "sqlcache_cache_hits_total")
		var v int
		conn.QueryRow(t.Context(), `SELECT v FROM versions WHERE id = 0`).Scan(&v)
		conn.QueryRow(t.Context(), `SELECT v FROM versions WHERE id = 0`).Scan(&v)
		if metricValue(t, sc, "sqlcache_cache_hits_total") > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cache hits 10s after the faults:\n%s", cacheMetrics(t, sc))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := metricValue(t, sc, `sqlcache_stream_resets_total{database="postgres"}`); n < 2 {
		t.Errorf("stream resets = %v; want one per reconnect", n)
	}
}

// TestStreamWithoutReplication: a service role without REPLICATION gets a
// clear startup warning, or with startup_check: fail a clear error; no
// crash, and the database is relayed without the cache.
func TestStreamWithoutReplication(t *testing.T) {
	pg := StartPostgres(t)
	pg.Exec(t, `CREATE ROLE norepl LOGIN`)
	pg.Exec(t, `CREATE PUBLICATION sqlcache FOR ALL TABLES WITH (publish_via_partition_root = true)`)
	pg.Exec(t, `CREATE TABLE t (v int PRIMARY KEY)`)
	pg.Exec(t, `INSERT INTO t VALUES (1)`)
	sc := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr(), ServiceDSN: pg.URL("norepl", "", "postgres")})
	if out := sc.Output(); !strings.Contains(out, "REPLICATION") {
		t.Errorf("no warning naming REPLICATION in the log:\n%s", out)
	}
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	for range 3 {
		var v int
		if err := conn.QueryRow(t.Context(), `SELECT v FROM t`).Scan(&v); err != nil || v != 1 {
			t.Fatalf("read: %d %v", v, err)
		}
	}
	if hits := metricValue(t, sc, "sqlcache_cache_hits_total"); hits != 0 {
		t.Errorf("%v hits without a change stream; want none", hits)
	}
	cfg := SqlcacheConfig{Backend: pg.Addr(), ServiceDSN: pg.URL("norepl", "", "postgres"),
		Extra: map[string]any{"invalidation": map[string]any{"postgres": map[string]any{"startup_check": "fail"}}}}
	file := writeSqlcacheConfig(t, withDefaults(t, cfg))
	out, code := RunSqlcache(t, "serve", "--config", file)
	if code != 1 || !strings.Contains(out, "REPLICATION") {
		t.Errorf("startup_check fail: exit %d; want 1 with an error naming REPLICATION:\n%s", code, out)
	}
}

// TestNoSlotLeftAfterKill: sqlcache killed with SIGKILL leaves no
// replication slot behind.
func TestNoSlotLeftAfterKill(t *testing.T) {
	pg, sc := startCache(t, nil)
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	var one int
	conn.QueryRow(t.Context(), `SELECT 1`).Scan(&one)
	admin := pg.Conn(t)
	slots := func() int {
		var n int
		if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM pg_replication_slots`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for slots() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream never created its slot")
		}
		time.Sleep(50 * time.Millisecond)
	}
	sc.Signal(syscall.SIGKILL)
	sc.Wait(5 * time.Second)
	deadline = time.Now().Add(10 * time.Second)
	for slots() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d replication slots remain 10s after sqlcache was killed", slots())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
