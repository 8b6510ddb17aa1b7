package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// startCache starts Postgres and sqlcache with the cache on and the
// service login set, plus extra config.
func startCache(t *testing.T, extra map[string]any) (*Postgres, *Sqlcache) {
	t.Helper()
	pg := StartPostgres(t)
	sc := StartSqlcache(t, SqlcacheConfig{
		Backend:    pg.Addr(),
		ServiceDSN: pg.URL("postgres", "", "postgres"),
		Extra:      extra,
	})
	waitCacheFresh(t, sc)
	return pg, sc
}

// waitApplied waits until sqlcache's change stream has applied everything
// committed before the call (setup writes made directly on Postgres), so
// that they do not invalidate what the test caches next.
func waitApplied(t *testing.T, sc *Sqlcache) {
	t.Helper()
	t0 := time.Now()
	deadline := t0.Add(15 * time.Second)
	for time.Now().Before(deadline) {
		// Elapsed is taken before the scrape: the lag is as of the
		// scrape, so fresh as of (scrape − lag) ≥ t0 + elapsed − lag.
		elapsed := time.Since(t0).Seconds()
		lag := metricValue(t, sc, `sqlcache_stream_lag_seconds{database="postgres"}`)
		if lag <= elapsed {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the change stream did not catch up in 15s:\n%s", cacheMetrics(t, sc))
}

// waitCacheFresh waits until sqlcache follows database postgres's change
// stream closely enough to serve from the cache (when it streams at all).
// Whether it streams comes from the configuration: the stream's metrics
// appear only once Serve has started it, which can be after /readyz.
func waitCacheFresh(t *testing.T, sc *Sqlcache) {
	t.Helper()
	inv, _ := sc.Config.Extra["invalidation"].(map[string]any)
	pgInv, _ := inv["postgres"].(map[string]any)
	if pgInv["mode"] == "none" {
		return
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if metricValue(t, sc, `sqlcache_stream_connected{database="postgres"}`) == 1 &&
			metricValue(t, sc, `sqlcache_stream_lag_seconds{database="postgres"}`) < 0.5 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the change stream never became fresh:\n%s", sc.Output())
}

// TestCacheHitWhileLocked proves hits by behaviour: once a read is cached,
// it is answered while another session holds an ACCESS EXCLUSIVE lock on
// the table, which would block any read reaching Postgres; the same read
// inside a repeatable read transaction (never cached) blocks.
func TestCacheHitWhileLocked(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE scores (player text PRIMARY KEY, score int)`)
	pg.Exec(t, `INSERT INTO scores VALUES ('ada', 42), ('grace', 57)`)
	pg.Exec(t, `GRANT ALL ON scores TO app`)
	// The INSERT reaches sqlcache through the change stream too; it must
	// not drop what the first reads cache.
	waitApplied(t, sc)
	const q = `SELECT player, score FROM scores ORDER BY score DESC`

	modes := map[string]pgx.QueryExecMode{
		"extended_cached_statement": pgx.QueryExecModeCacheStatement,
		"extended_describe_exec":    pgx.QueryExecModeDescribeExec,
		"simple":                    pgx.QueryExecModeSimpleProtocol,
	}
	conns := map[string]*pgx.Conn{}
	for name, mode := range modes {
		conn := connect(t, sc.URL("app", "", "postgres", "default_query_exec_mode="+execModeName(mode)))
		conns[name] = conn
		if got := readScores(t, t.Context(), conn, q); got != "grace:57 ada:42" {
			t.Fatalf("%s: first read %q", name, got)
		}
	}

	locker := pg.Conn(t)
	tx, err := locker.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `LOCK TABLE scores IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	for name, conn := range conns {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			if got := readScores(t, ctx, conn, q); got != "grace:57 ada:42" {
				t.Errorf("cached read under lock: %q", got)
			}
		})
	}
	t.Run("in_repeatable_read_transaction_blocks", func(t *testing.T) {
		// Reads in read committed blocks may hit (TestTransactionReads);
		// a repeatable read block's statements share one snapshot.
		conn := connect(t, sc.URL("app", "", "postgres"))
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		txn, err := conn.BeginTx(t.Context(), pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
		if err != nil {
			t.Fatal(err)
		}
		_, err = txn.Exec(ctx, q)
		if err == nil {
			t.Fatal("a read inside a repeatable read transaction was answered while the table was locked: it must reach Postgres")
		}
	})
	if hits := metricValue(t, sc, "sqlcache_cache_hits_total"); hits < 3 {
		t.Errorf("cache hits = %v; want at least 3", hits)
	}
}

func execModeName(m pgx.QueryExecMode) string {
	switch m {
	case pgx.QueryExecModeCacheStatement:
		return "cache_statement"
	case pgx.QueryExecModeDescribeExec:
		return "describe_exec"
	case pgx.QueryExecModeSimpleProtocol:
		return "simple_protocol"
	}
	return "exec"
}

func readScores(t *testing.T, ctx context.Context, conn *pgx.Conn, q string) string {
	t.Helper()
	rows, err := conn.Query(ctx, q)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		var s int
		if err := rows.Scan(&p, &s); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s:%d", p, s))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query: %v", err)
	}
	return strings.Join(out, " ")
}

// TestCacheByteIdentical checks that a hit's bytes equal the miss's bytes
// and Postgres's own, over the type corpus, in the simple and the extended
// protocol, with text and binary results.
func TestCacheByteIdentical(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE corpus AS SELECT g AS id, md5(g::text) AS h, now() AS at, g::numeric / 7 AS q FROM generate_series(1, 200) g`)
	params := map[string]string{"user": "postgres", "database": "postgres"}
	direct, _ := dialRaw(t, pg.Addr(), params)
	proxied, _ := dialRaw(t, sc.Addr, params)
	queries := append([]string{`SELECT * FROM corpus ORDER BY id`, `SELECT count(*), sum(q) FROM corpus`}, typeCorpus...)

	hitsBefore := metricValue(t, sc, "sqlcache_cache_hits_total")
	check := func(t *testing.T, syncs int, msgs ...pgproto3.FrontendMessage) {
		t.Helper()
		want := direct.roundTrip(syncs, msgs...)
		miss := proxied.roundTrip(syncs, msgs...)
		hit := proxied.roundTrip(syncs, msgs...)
		if diff := diffFrames(want, miss); diff != "" {
			t.Errorf("first answer differs from Postgres (-direct +proxy):\n%s", diff)
		}
		if diff := diffFrames(want, hit); diff != "" {
			t.Errorf("second answer differs from Postgres (-direct +proxy):\n%s", diff)
		}
	}
	for _, q := range queries {
		t.Run("simple/"+q, func(t *testing.T) { check(t, 1, &pgproto3.Query{String: q}) })
		for _, format := range []int16{0, 1} {
			t.Run(fmt.Sprintf("extended/%d/%s", format, q), func(t *testing.T) {
				check(t, 1,
					&pgproto3.Parse{Query: q},
					&pgproto3.Bind{ResultFormatCodes: []int16{format}},
					&pgproto3.Describe{ObjectType: 'P'},
					&pgproto3.Execute{},
					&pgproto3.Sync{})
			})
		}
	}
	t.Run("extended/named_bind_execute", func(t *testing.T) {
		direct.roundTrip(1, &pgproto3.Parse{Name: "byid", Query: `SELECT h, at FROM corpus WHERE id = $1`}, &pgproto3.Sync{})
		proxied.roundTrip(1, &pgproto3.Parse{Name: "byid", Query: `SELECT h, at FROM corpus WHERE id = $1`}, &pgproto3.Sync{})
		for _, id := range []string{"1", "2", "1", "200", "201"} {
			check(t, 1, &pgproto3.Bind{PreparedStatement: "byid", Parameters: [][]byte{[]byte(id)}},
				&pgproto3.Execute{}, &pgproto3.Sync{})
		}
	})
	t.Run("extended/unnamed_reparsed_after_hit", func(t *testing.T) {
		// A hit answers Parse "" itself; a later Bind "" alone must still
		// find the statement on the backend.
		q := `SELECT h FROM corpus WHERE id = $1`
		bind := func(id string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Bind{Parameters: [][]byte{[]byte(id)}}, &pgproto3.Execute{}, &pgproto3.Sync{}}
		}
		check(t, 1, append([]pgproto3.FrontendMessage{&pgproto3.Parse{Query: q}}, bind("5")...)...)
		check(t, 1, bind("6")...)
		check(t, 1, bind("7")...)
	})
	t.Run("extended/describe_then_bind", func(t *testing.T) {
		// pgx's describe_exec mode: Parse "" + Describe S, then Bind "" +
		// Describe P + Execute. Both answers come from the cache the
		// second time; a Bind for a new value after a cached describe
		// needs the statement re-parsed on the backend.
		q := `SELECT id, h FROM corpus WHERE id < $1 ORDER BY id`
		for _, id := range []string{"3", "3", "4"} {
			check(t, 1, &pgproto3.Parse{Query: q}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
			check(t, 1, &pgproto3.Bind{Parameters: [][]byte{[]byte(id)}, ResultFormatCodes: []int16{1}},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
		}
	})
	if hits := metricValue(t, sc, "sqlcache_cache_hits_total") - hitsBefore; hits < float64(len(queries)) {
		t.Errorf("only %v hits; the second round trips were not answered from the cache", hits)
	}
}

// TestReadYourWrites: concurrent sessions each write through sqlcache and
// read the row back, 1,000 times in all, with every kind of write, in
// autocommit and in transactions, reading on the same connection and on
// another one. No read may return a value older than the write.
func TestReadYourWrites(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE counters (id int PRIMARY KEY, v int NOT NULL)`)
	pg.Exec(t, `GRANT ALL ON counters TO app`)
	const workers, rounds = 4, 250
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rywWorker(t.Context(), sc, w, rounds); err != nil {
				t.Errorf("worker %d: %v", w, err)
			}
		}()
	}
	wg.Wait()
	if hits := metricValue(t, sc, "sqlcache_cache_hits_total"); hits == 0 {
		t.Error("no cache hits at all: the test did not exercise the cache")
	}
}

func rywWorker(ctx context.Context, sc *Sqlcache, id, rounds int) error {
	// Commits flush their WAL at once (the test server's default is
	// synchronous_commit=off), so the change stream, which a writer's next
	// hit waits for, sees them without waiting for the WAL writer.
	a, err := pgx.Connect(ctx, sc.URL("app", "", "postgres", "synchronous_commit=on"))
	if err != nil {
		return err
	}
	defer a.Close(context.Background())
	b, err := pgx.Connect(ctx, sc.URL("app", "", "postgres", "default_query_exec_mode=simple_protocol", "synchronous_commit=on"))
	if err != nil {
		return err
	}
	defer b.Close(context.Background())
	read := func(c *pgx.Conn) (int, error) {
		var v int
		err := c.QueryRow(ctx, `SELECT v FROM counters WHERE id = $1`, id).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return -1, nil
		}
		return v, err
	}
	exec := func(c *pgx.Conn, sql string, args ...any) error {
		_, err := c.Exec(ctx, sql, args...)
		return err
	}
	want := -1
	for i := range rounds {
		// Warm the cache with the current value, from both sessions.
		for _, c := range []*pgx.Conn{a, b} {
			if v, err := read(c); err != nil || v != want {
				return fmt.Errorf("round %d warm read: %d %v; want %d", i, v, err, want)
			}
		}
		writer := []*pgx.Conn{a, b}[i%2]
		var err error
		switch i % 6 {
		case 0:
			err = exec(writer, `INSERT INTO counters VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v`, id, i)
		case 1:
			err = exec(writer, `UPDATE counters SET v = $2 WHERE id = $1`, id, i)
		case 2:
			err = exec(writer, `DELETE FROM counters WHERE id = $1`, id)
		case 3:
			err = exec(writer, `MERGE INTO counters c USING (SELECT $1::int AS id, $2::int AS v) s ON c.id = s.id
				WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)`, id, i)
		case 4:
			tx, terr := writer.Begin(ctx)
			if terr != nil {
				return terr
			}
			if terr = exec(tx.Conn(), `UPDATE counters SET v = $2 WHERE id = $1`, id, i); terr != nil {
				return terr
			}
			// Another session reads (and may fill) while the write is
			// uncommitted: it must see the old value, and its fill must
			// not outlive the commit.
			other := []*pgx.Conn{a, b}[(i+1)%2]
			if v, rerr := read(other); rerr != nil || v != want {
				return fmt.Errorf("round %d read during transaction: %d %v; want %d", i, v, rerr, want)
			}
			err = tx.Commit(ctx)
		case 5:
			tx, terr := writer.Begin(ctx)
			if terr != nil {
				return terr
			}
			if terr = exec(tx.Conn(), `DELETE FROM counters WHERE id = $1`, id); terr != nil {
				return terr
			}
			if terr = exec(tx.Conn(), `INSERT INTO counters VALUES ($1, $2)`, id, i); terr != nil {
				return terr
			}
			err = tx.Commit(ctx)
		}
		if err != nil {
			return fmt.Errorf("round %d write: %w", i, err)
		}
		want = i
		if i%6 == 2 {
			want = -1
		}
		for _, c := range []*pgx.Conn{writer, a, b} {
			if v, err := read(c); err != nil || v != want {
				return fmt.Errorf("round %d (write form %d) read after write: got %d %v; want %d", i, i%6, v, err, want)
			}
		}
	}
	return nil
}

// TestTruncateInvalidates covers TRUNCATE and COPY FROM, which the
// read-your-writes loop does not.
func TestTruncateAndCopyInvalidate(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE items (id int PRIMARY KEY)`)
	pg.Exec(t, `INSERT INTO items SELECT generate_series(1, 10)`)
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	count := func() int {
		var n int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM items`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for range 2 {
		if n := count(); n != 10 {
			t.Fatalf("count = %d; want 10", n)
		}
	}
	if _, err := conn.Exec(t.Context(), `TRUNCATE items`); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Errorf("count after TRUNCATE = %d; want 0", n)
	}
	count()
	if _, err := conn.CopyFrom(t.Context(), pgx.Identifier{"items"}, []string{"id"}, pgx.CopyFromRows([][]any{{1}, {2}, {3}})); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Errorf("count after COPY FROM = %d; want 3", n)
	}
}

// TestFillInvalidateRace forces a slow fill to overlap a write: the fill's
// answer predates the write and must not be stored.
func TestFillInvalidateRace(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE slow (id int PRIMARY KEY, v int)`)
	pg.Exec(t, `INSERT INTO slow VALUES (1, 1)`)
	// A user-declared IMMUTABLE function is trusted, so this query is
	// cacheable, and it takes a second.
	pg.Exec(t, `CREATE FUNCTION slow_id(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN $1; END $$`)
	const q = `SELECT v, slow_id(id) FROM slow WHERE id = 1`
	filler := connect(t, sc.URL("postgres", "", "postgres"))
	writer := connect(t, sc.URL("postgres", "", "postgres"))
	reader := connect(t, sc.URL("postgres", "", "postgres"))

	done := make(chan int, 1)
	go func() {
		var v, id int
		if err := filler.QueryRow(context.Background(), q).Scan(&v, &id); err != nil {
			t.Error(err)
		}
		done <- v
	}()
	waitForActivity(t, sc, q)
	if _, err := writer.Exec(t.Context(), `UPDATE slow SET v = 2 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if v := <-done; v != 1 {
		t.Fatalf("the slow read saw %d; want 1 (its snapshot predates the write)", v)
	}
	var v, id int
	if err := reader.QueryRow(t.Context(), q).Scan(&v, &id); err != nil {
		t.Fatal(err)
	}
	if v != 2 {
		t.Errorf("read after the write returned %d; want 2 (the stale fill was stored)", v)
	}
	if n := metricValue(t, sc, `sqlcache_cache_fills_dropped_total{reason="invalidated during fill"}`); n < 1 {
		t.Errorf("fills dropped as invalidated = %v; want 1\n%s", n, cacheMetrics(t, sc))
	}
	out, _ := RunSqlcache(t, "explain", "--config", sc.ConfigFile, q)
	if !strings.Contains(out, "cacheable: yes") {
		t.Errorf("the race query is not cacheable, so the test proves nothing:\n%s", out)
	}
}

// cacheMetrics returns the cache's metric lines, for failure messages.
func cacheMetrics(t *testing.T, sc *Sqlcache) string {
	var lines []string
	for _, l := range strings.Split(sc.Metrics(t), "\n") {
		if strings.HasPrefix(l, "sqlcache_cache_") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// TestObjectIdentifierColumn: a regclass column holds an OID and prints
// the name the catalog gives it now, so a rename behind sqlcache changes
// what a read of an unchanged row returns. Such a table is not cached.
func TestObjectIdentifierColumn(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE named (id int PRIMARY KEY)`)
	pg.Exec(t, `CREATE TABLE audit (id int PRIMARY KEY, rel regclass)`)
	pg.Exec(t, `INSERT INTO audit VALUES (1, 'named')`)
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	read := func() string {
		t.Helper()
		var rel string
		if err := conn.QueryRow(t.Context(), `SELECT rel FROM audit WHERE id = $1`, 1).Scan(&rel); err != nil {
			t.Fatal(err)
		}
		return rel
	}
	hits := metricValue(t, sc, "sqlcache_cache_hits_total")
	read()
	read()
	if got := metricValue(t, sc, "sqlcache_cache_hits_total"); got != hits {
		t.Errorf("a read of a regclass column was answered from the cache (%v hits)", got-hits)
	}
	pg.Exec(t, `ALTER TABLE named RENAME TO renamed`)
	if got := read(); got != "renamed" {
		t.Errorf("after the rename: %q; want renamed", got)
	}
	// Arrays of such types and domains over them print names too.
	pg.Exec(t, `CREATE DOMAIN owner_role AS regrole`)
	pg.Exec(t, `CREATE TABLE grants (id int PRIMARY KEY, "granted to" owner_role)`)
	pg.Exec(t, `CREATE TABLE signatures (id int PRIMARY KEY, args regtype[])`)
	// Text search configurations are not watched (README): a documents
	// table with the configuration of each stays cacheable.
	pg.Exec(t, `CREATE TABLE docs (id int PRIMARY KEY, lang regconfig, body text)`)
	for sql, want := range map[string]string{
		`SELECT rel FROM audit`:           "column public.audit.rel of type regclass",
		`SELECT id FROM grants`:           "column public.grants.granted to of type owner_role",
		`SELECT count(*) FROM signatures`: "column public.signatures.args of type regtype[]",
		`SELECT lang, body FROM docs`:     "cacheable: yes",
		`SELECT id FROM docs WHERE to_tsvector('english'::regconfig, body) @@ plainto_tsquery('english'::regconfig, 'cat')`: "cacheable: yes",
	} {
		out, code := RunSqlcache(t, "explain", "--config", sc.ConfigFile, sql)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain %q: exit %d:\n%s\nwant %q in it", sql, code, out, want)
		}
	}
}

// TestCacheDependencies: answers read through views and partitions depend
// on the tables underneath, and what reads the clock is not cached.
func TestCacheDependencies(t *testing.T) {
	pg, sc := startCache(t, nil)
	for _, stmt := range []string{
		`CREATE TABLE base (id int PRIMARY KEY, at timestamptz DEFAULT now())`,
		`INSERT INTO base (id) VALUES (1)`,
		`CREATE VIEW v AS SELECT id FROM base`,
		`CREATE VIEW vv AS SELECT id FROM v`,
		`CREATE VIEW recent AS SELECT id FROM base WHERE at > now() - interval '1 hour'`,
		`CREATE TABLE parts (k int PRIMARY KEY, v text) PARTITION BY RANGE (k)`,
		`CREATE TABLE parts_lo PARTITION OF parts FOR VALUES FROM (0) TO (100)`,
		`CREATE TABLE parts_hi PARTITION OF parts FOR VALUES FROM (100) TO (200)`,
		`INSERT INTO parts VALUES (1, 'lo'), (150, 'hi')`,
		`CREATE MATERIALIZED VIEW mv AS SELECT id FROM base`,
		`CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)`,
	} {
		pg.Exec(t, stmt)
	}
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := conn.QueryRow(t.Context(), q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	write := func(q string) {
		t.Helper()
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, tc := range []struct {
		read, write string
	}{
		{`SELECT count(*) FROM v`, `INSERT INTO base (id) VALUES (2)`},
		{`SELECT count(*) FROM vv`, `INSERT INTO base (id) VALUES (3)`},
		{`SELECT count(*) FROM parts`, `INSERT INTO parts_lo VALUES (2, 'lo')`},
		{`SELECT count(*) FROM parts_hi`, `INSERT INTO parts VALUES (151, 'hi')`},
		{`SELECT count(*) FROM parts_lo`, `DELETE FROM parts_hi`},
	} {
		before := count(tc.read)
		if again := count(tc.read); again != before {
			t.Fatalf("%s changed without a write: %d then %d", tc.read, before, again)
		}
		write(tc.write)
		after := count(tc.read)
		direct := 0
		if err := pg.Conn(t).QueryRow(t.Context(), tc.read).Scan(&direct); err != nil {
			t.Fatal(err)
		}
		if after != direct {
			t.Errorf("%s after %s: %d through sqlcache, %d directly", tc.read, tc.write, after, direct)
		}
	}
	for _, tc := range []struct{ sql, want string }{
		{`SELECT count(*) FROM vv`, "cacheable: yes"},
		{`SELECT count(*) FROM recent`, "now()"},
		{`SELECT count(*) FROM parts_hi`, "parts"},
		{`SELECT count(*) FROM base WHERE at < CURRENT_TIMESTAMP`, "cacheable: no"},
		{`SELECT count(*) FROM base WHERE at < 'now'`, "cacheable: no"},
		{`SELECT count(*) FROM pg_class`, "cacheable: no"},
		// Neither a REFRESH nor an unlogged write reaches the stream.
		{`SELECT count(*) FROM mv`, "REFRESH is not in the change stream"},
		{`SELECT count(*) FROM scratch`, "unlogged table scratch"},
	} {
		out, code := RunSqlcache(t, "explain", "--config", sc.ConfigFile, tc.sql)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("explain %q: exit %d:\n%s\nwant %q in it", tc.sql, code, out, tc.want)
		}
	}
	// 'now' as a parameter value reads the clock too: never a hit.
	hits := metricValue(t, sc, "sqlcache_cache_hits_total")
	for range 3 {
		count(`SELECT count(*) FROM base WHERE at < $1::timestamptz`, "now")
	}
	if got := metricValue(t, sc, "sqlcache_cache_hits_total"); got != hits {
		t.Errorf("a query with the parameter 'now' was answered from the cache (%v hits)", got-hits)
	}
}

// TestCatalogReadersNotCached: what reads the system catalogs is never
// answered from the cache, because no change to the catalogs reaches the
// change stream. A migration tool asks to_regclass whether its table
// exists, creates it, and asks again; a cached NULL would have it create
// the table twice.
// TestUserCodeInOperatorsCastsAggregates checks that an operator, a cast or an
// aggregate whose function is user-defined and STABLE, which may read
// tables the query does not name, keeps the query out of the cache as a
// call of that function by name would, while built-in operators and casts
// and a user-defined IMMUTABLE operator do not.
func TestUserCodeInOperatorsCastsAggregates(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"cache": map[string]any{
		"rules": []any{map[string]any{"query": "bounded by a rule", "ttl": "1h"}},
	}})
	for _, stmt := range []string{
		`CREATE TABLE op_cfg (id int PRIMARY KEY, threshold int)`,
		`INSERT INTO op_cfg VALUES (1, 10)`,
		`CREATE TABLE op_items (id int PRIMARY KEY, price int)`,
		`INSERT INTO op_items VALUES (1, 5), (2, 15)`,
		`CREATE FUNCTION above(a int, b int) RETURNS bool STABLE LANGUAGE sql
		   AS 'SELECT a > (SELECT threshold FROM op_cfg) + b'`,
		`CREATE OPERATOR >>> (FUNCTION = above, LEFTARG = int, RIGHTARG = int)`,
		`CREATE TYPE band AS ENUM ('low', 'high')`,
		`CREATE FUNCTION band_of(int) RETURNS band STABLE LANGUAGE sql
		   AS $$SELECT CASE WHEN $1 > (SELECT threshold FROM op_cfg) THEN 'high'::band ELSE 'low'::band END$$`,
		`CREATE CAST (int AS band) WITH FUNCTION band_of(int)`,
		`CREATE FUNCTION add_weighted(s int, v int) RETURNS int STABLE LANGUAGE sql
		   AS 'SELECT s + v * (SELECT threshold FROM op_cfg)'`,
		`CREATE AGGREGATE weighted_sum(int) (SFUNC = add_weighted, STYPE = int, INITCOND = '0')`,
		`CREATE FUNCTION twice_eq(a int, b int) RETURNS bool IMMUTABLE LANGUAGE sql AS 'SELECT a = 2 * b'`,
		`CREATE OPERATOR =** (FUNCTION = twice_eq, LEFTARG = int, RIGHTARG = int)`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	read := func(c *pgx.Conn, q string) string {
		t.Helper()
		var s string
		if err := c.QueryRow(t.Context(), q).Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return s
	}
	hits := func() float64 { return metricValue(t, sc, "sqlcache_cache_hits_total") }
	for _, q := range []string{
		`SELECT count(*)::text FROM op_items WHERE price >>> 0`,
		`SELECT string_agg(price::band::text, ',' ORDER BY id) FROM op_items`,
		`SELECT weighted_sum(price)::text FROM op_items`, // pg_proc calls every aggregate immutable
	} {
		before := read(conn, q)
		h := hits()
		if again := read(conn, q); again != before {
			t.Fatalf("%s changed on its own: %s then %s", q, before, again)
		}
		if got := hits() - h; got != 0 {
			t.Errorf("%s: %v cache hits; want none", q, got)
		}
		// A change of op_cfg, which the query does not name, changes
		// its answer.
		pg.Exec(t, `UPDATE op_cfg SET threshold = 25 - threshold`)
		want := read(pg.Conn(t), q)
		if want == before {
			t.Fatalf("the change did not change %s directly (%s): the test proves nothing", q, want)
		}
		if got := read(conn, q); got != want {
			t.Errorf("%s after the change: %s through sqlcache, %s directly", q, got, want)
		}
	}
	// Built-in operators and casts, and an IMMUTABLE user-defined
	// operator, leave the query cacheable; a rule with a TTL bounds what
	// a STABLE one may read, which then is cached too.
	waitApplied(t, sc)
	for _, q := range []string{
		`SELECT count(*)::text FROM op_items WHERE price > 0 AND id::text <> 'x' AND price BETWEEN 1 AND 100`,
		`SELECT count(*)::text FROM op_items WHERE price =** 3`,
		`SELECT count(*)::text FROM op_items WHERE price >>> 0 /* bounded by a rule */`,
	} {
		read(conn, q)
		h := hits()
		read(conn, q)
		if got := hits() - h; got != 1 {
			t.Errorf("%s the second time: %v cache hits; want 1", q, got)
		}
	}
}

func TestCatalogReadersNotCached(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE ROLE reader`)
	pg.Exec(t, `CREATE TABLE thing (id int PRIMARY KEY)`)
	pg.Exec(t, `CREATE TABLE named (id int PRIMARY KEY)`)
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	// on returns the one text value q reads on c, or NULL.
	on := func(c *pgx.Conn, q string) string {
		t.Helper()
		var s *string
		if err := c.QueryRow(t.Context(), q).Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if s == nil {
			return "NULL"
		}
		return *s
	}
	text := func(q string) string { t.Helper(); return on(conn, q) }
	direct := func(q string) string { t.Helper(); return on(pg.Conn(t), q) }
	for _, tc := range []struct {
		name, read string
		change     func()
	}{
		{"to_regclass after CREATE TABLE through sqlcache", `SELECT to_regclass('public.schema_migrations')::text`, func() {
			if _, err := conn.Exec(t.Context(), `CREATE TABLE schema_migrations (version bigint PRIMARY KEY)`); err != nil {
				t.Fatal(err)
			}
		}},
		{"privilege after GRANT on the database", `SELECT has_table_privilege('reader', 'thing', 'SELECT')::text`, func() {
			pg.Exec(t, `GRANT SELECT ON thing TO reader`)
		}},
		{"regclass cast after the table is made again", `SELECT 'thing'::regclass::oid::text`, func() {
			pg.Exec(t, `DROP TABLE thing`)
			pg.Exec(t, `CREATE TABLE thing (id int PRIMARY KEY)`)
		}},
		{"name of an OID after RENAME", `SELECT ` + direct(`SELECT 'named'::regclass::oid::text`) + `::oid::regclass::text`, func() {
			pg.Exec(t, `ALTER TABLE named RENAME TO renamed`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := text(tc.read)
			if again := text(tc.read); again != before {
				t.Fatalf("%s changed on its own: %s then %s", tc.read, before, again)
			}
			tc.change()
			want := direct(tc.read)
			if want == before {
				t.Fatalf("the change did not change %s directly (%s): the test proves nothing", tc.read, want)
			}
			if got := text(tc.read); got != want {
				t.Errorf("%s after the change: %s through sqlcache, %s directly", tc.read, got, want)
			}
		})
	}
	// Built-in STABLE functions of their arguments and settings stay cached.
	// The session wrote (CREATE TABLE): its hits wait for the stream.
	waitApplied(t, sc)
	hits := metricValue(t, sc, "sqlcache_cache_hits_total")
	for range 3 {
		text(`SELECT to_char('2024-05-01 12:00+00'::timestamptz, 'YYYY-MM-DD HH24')`)
	}
	if got := metricValue(t, sc, "sqlcache_cache_hits_total"); got-hits != 2 {
		t.Errorf("to_char of a timestamptz: %v hits of 3 reads; want 2", got-hits)
	}
}

// TestLargeBindInvalidates: a write whose Bind is too large for sqlcache to
// hold (over 256 KiB, relayed as it streams) still drops what it may
// change, though sqlcache cannot read which statement the Bind runs. With
// the change stream off, only the wire can invalidate.
func TestLargeBindInvalidates(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"invalidation": map[string]any{"postgres": map[string]any{"mode": "none"}}})
	pg.Exec(t, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	pg.Exec(t, `INSERT INTO docs VALUES (1, 'small')`)
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	ctx := t.Context()
	const read = `SELECT length(body) FROM docs WHERE id = $1`
	length := func() int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, read, 1).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	length()
	hits := metricValue(t, sc, "sqlcache_cache_hits_total")
	if n := length(); n != 5 {
		t.Fatalf("length = %d; want 5", n)
	}
	if metricValue(t, sc, "sqlcache_cache_hits_total") == hits {
		t.Fatal("the read was not cached; the test proves nothing")
	}
	big := strings.Repeat("x", 300<<10)
	if _, err := conn.Exec(ctx, `UPDATE docs SET body = $2 WHERE id = $1`, 1, big); err != nil {
		t.Fatal(err)
	}
	if n := length(); n != len(big) {
		t.Errorf("after an UPDATE with a %d-byte parameter the session read length %d; want %d", len(big), n, len(big))
	}
}
