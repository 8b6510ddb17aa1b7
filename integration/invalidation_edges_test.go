package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// rtRows runs a query and returns its rows as text, one row a line.
func rtRows(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		fmt.Fprintln(&b, vals...)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return b.String()
}

// rtCached reads sql through conn until a read is a cache hit, and fails
// the test if none is within a few seconds (a busy machine may leave the
// change stream lagging for a while, and reads are relayed meanwhile).
func rtCached(t *testing.T, ctx context.Context, sc *Sqlcache, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	rtRows(t, ctx, conn, sql, args...)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		hits := metricValue(t, sc, "sqlcache_cache_hits_total")
		got := rtRows(t, ctx, conn, sql, args...)
		if metricValue(t, sc, "sqlcache_cache_hits_total") > hits {
			return got
		}
	}
	t.Fatalf("%s was not answered from the cache; the case proves nothing", sql)
	return ""
}

// TestInvalidationGeneratedKey: an UPDATE that does not SET the primary
// key may still change it, through a STORED generated column: a
// generated key is not tracked by row, or the answer about the new key
// would stay stale for the writing session itself.
func TestInvalidationGeneratedKey(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE g (a int NOT NULL, id int GENERATED ALWAYS AS (a * 10) STORED PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO g (a, v) SELECT i, 'row' || i FROM generate_series(1, 50) i`)
	waitApplied(t, sc)
	out, _ := RunSqlcache(t, "explain", "--config", sc.ConfigFile, `UPDATE g SET a = a + 1000 WHERE id = $1`)
	t.Logf("explain:\n%s", out)
	ctx := t.Context()
	// The server's default synchronous_commit (off in these tests, as
	// many deployments run it) widens the window: the walsender decodes
	// only flushed WAL. With synchronous_commit=on a few reads in 20 are
	// still stale.
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	direct := pg.Conn(t)
	const read = `SELECT id, v FROM g WHERE id = $1`
	stale := 0
	const rounds = 8
	for i := 1; i <= rounds; i++ {
		oldKey := i * 10
		newKey := (i + 1000) * 10
		if got := rtCached(t, ctx, sc, conn, read, newKey); got != "" {
			t.Fatalf("row %d exists before the update: %q", newKey, got)
		}
		if _, err := conn.Exec(ctx, `UPDATE g SET a = a + 1000 WHERE id = $1`, oldKey); err != nil {
			t.Fatal(err)
		}
		got := rtRows(t, ctx, conn, read, newKey)
		want := rtRows(t, ctx, direct, read, newKey)
		if got != want {
			stale++
			if stale == 1 {
				t.Errorf("after its own UPDATE g SET a = a + 1000 WHERE id = %d (id is GENERATED a*10), the session read row %d through sqlcache as %q; PostgreSQL returns %q", oldKey, newKey, got, want)
			}
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d reads right after the writer's own UPDATE were stale", stale, rounds)
	}
}

// TestInvalidationDDLInTransaction: another session that looks the
// catalog up between DDL in a transaction block and its COMMIT reads it
// as it was before (here: table t without its new inheritance child).
// sqlcache forgets those facts again when the block ends, or answers
// about t would keep depending on t alone and writes to the child would
// never drop them.
func TestInvalidationDDLInTransaction(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO t VALUES (1, 'parent')`)
	waitApplied(t, sc)
	ctx := t.Context()
	a := connect(t, sc.URL("postgres", "", "postgres"))
	b := connect(t, sc.URL("postgres", "", "postgres"))
	direct := pg.Conn(t)
	const read = `SELECT id, v FROM t WHERE id = $1`
	for _, q := range []string{`BEGIN`, `CREATE TABLE c (PRIMARY KEY (id)) INHERITS (t)`} {
		if _, err := a.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// B reads the parent while the DDL is not yet committed.
	rtCached(t, ctx, sc, b, read, 5)
	for _, q := range []string{`INSERT INTO c VALUES (5, 'child')`, `COMMIT`} {
		if _, err := a.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if got := rtCached(t, ctx, sc, b, read, 5); got != "5 child\n" {
		t.Fatalf("after the COMMIT: %q", got)
	}
	rtCached(t, ctx, sc, b, read, 6)
	// A write of the child row through sqlcache.
	if _, err := a.Exec(ctx, `UPDATE c SET v = 'changed' WHERE id = 5`); err != nil {
		t.Fatal(err)
	}
	// Another directly on PostgreSQL, seen only by the change stream.
	pg.Exec(t, `INSERT INTO c VALUES (6, 'direct')`)
	waitApplied(t, sc)
	time.Sleep(3 * time.Second) // well past max_lag (1 s)
	for _, key := range []int{5, 6} {
		got := rtRows(t, ctx, b, read, key)
		want := rtRows(t, ctx, direct, read, key)
		if got != want {
			t.Errorf("%s with $1 = %d: sqlcache returned %q, PostgreSQL returns %q (after the writes to the child c that followed BEGIN; CREATE TABLE c (PRIMARY KEY (id)) INHERITS (t); COMMIT through sqlcache)", read, key, got, want)
		}
	}
}

// TestInvalidationMatrix: for each write sent through sqlcache
// by one session, another session's cached reads must change at once (no
// wait for the change stream), as README's "Read your writes" promises for
// the tables a write names. (A write through an updatable view, or one
// whose foreign-key actions cascade, reaches other sessions only through
// the change stream: README declares that for triggers, rules and
// foreign-key actions, so those cases are left out.)
func TestInvalidationMatrix(t *testing.T) {
	pg, sc := startCache(t, nil)
	for _, stmt := range []string{
		`CREATE TABLE k (id int PRIMARY KEY, v text)`,
		`INSERT INTO k SELECT i, 'v' || i FROM generate_series(1, 20) i`,
		`CREATE TABLE src (id int PRIMARY KEY, v text)`,
		`INSERT INTO src VALUES (1, 'src1'), (2, 'src2'), (30, 'src30')`,
		`CREATE TABLE pt (id int, region int, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region)`,
		`CREATE TABLE pt1 PARTITION OF pt FOR VALUES IN (1)`,
		`CREATE TABLE pt2 PARTITION OF pt FOR VALUES IN (2)`,
		`INSERT INTO pt VALUES (1, 1, 'a'), (2, 2, 'b')`,
		`CREATE TABLE par (id int PRIMARY KEY, v text)`,
		`CREATE TABLE kid (PRIMARY KEY (id)) INHERITS (par)`,
		`INSERT INTO kid VALUES (7, 'kid7')`,
		`CREATE TABLE fkp (id int PRIMARY KEY)`,
		`CREATE TABLE fkc (id int PRIMARY KEY REFERENCES fkp ON DELETE CASCADE, v text)`,
		`INSERT INTO fkp VALUES (1), (2)`,
		`INSERT INTO fkc VALUES (1, 'c1'), (2, 'c2')`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	ctx := t.Context()
	w := connect(t, sc.URL("postgres", "", "postgres"))
	r := connect(t, sc.URL("postgres", "", "postgres"))
	direct := pg.Conn(t)
	type read struct {
		sql  string
		args []any
	}
	for _, tc := range []struct {
		name   string
		reads  []read
		writes []string
	}{
		{"MERGE update+insert", []read{{`SELECT id, v FROM k WHERE id = $1`, []any{1}}, {`SELECT id, v FROM k WHERE id = $1`, []any{30}}},
			[]string{`MERGE INTO k USING src ON k.id = src.id WHEN MATCHED THEN UPDATE SET v = src.v WHEN NOT MATCHED THEN INSERT VALUES (src.id, src.v)`}},
		{"ON CONFLICT DO UPDATE", []read{{`SELECT id, v FROM k WHERE id = $1`, []any{3}}},
			[]string{`INSERT INTO k (id, v) VALUES (3, 'upserted') ON CONFLICT (id) DO UPDATE SET v = excluded.v`}},
		{"UPDATE FROM", []read{{`SELECT id, v FROM k WHERE id = $1`, []any{2}}},
			[]string{`UPDATE k SET v = src.v || '!' FROM src WHERE k.id = src.id AND src.id = 2`}},
		{"DELETE USING", []read{{`SELECT id, v FROM k WHERE id = $1`, []any{4}}},
			[]string{`DELETE FROM k USING src WHERE k.id = 4 AND src.id = 1`}},
		{"data-modifying CTE", []read{{`SELECT id, v FROM k WHERE id = $1`, []any{5}}, {`SELECT id, v FROM src WHERE id = $1`, []any{1}}},
			[]string{`WITH d AS (DELETE FROM k WHERE id = 5 RETURNING id) UPDATE src SET v = 'cte' WHERE id IN (SELECT 1 FROM d)`}},
		{"UPDATE changes key", []read{{`SELECT id, v FROM k WHERE id = $1`, []any{6}}, {`SELECT id, v FROM k WHERE id = $1`, []any{60}}},
			[]string{`UPDATE k SET id = 60 WHERE id = 6`}},
		{"partition row movement via root", []read{{`SELECT * FROM pt2`, nil}, {`SELECT * FROM pt1`, nil}, {`SELECT * FROM pt WHERE id = $1`, []any{1}}},
			[]string{`UPDATE pt SET region = 2 WHERE id = 1`}},
		{"write a partition, read the root", []read{{`SELECT * FROM pt ORDER BY id`, nil}},
			[]string{`INSERT INTO pt2 VALUES (3, 2, 'c')`}},
		{"write a child, read the parent", []read{{`SELECT * FROM par WHERE id = $1`, []any{7}}},
			[]string{`UPDATE kid SET v = 'kid7!' WHERE id = 7`}},
		{"write the parent, read the child", []read{{`SELECT * FROM kid WHERE id = $1`, []any{7}}},
			[]string{`UPDATE par SET v = 'via parent' WHERE id = 7`}},
		{"TRUNCATE a partition", []read{{`SELECT count(*) FROM pt`, nil}},
			[]string{`TRUNCATE pt1`}},
		{"TRUNCATE CASCADE", []read{{`SELECT id, v FROM fkc WHERE id = $1`, []any{2}}},
			[]string{`TRUNCATE fkp CASCADE`}},
		{"rolled back", []read{{`SELECT id, v FROM k WHERE id = $1`, []any{10}}},
			[]string{`BEGIN`, `UPDATE k SET v = 'rolled back' WHERE id = 10`, `ROLLBACK`, `UPDATE k SET v = 'after rollback' WHERE id = 10`}},
		{"EXPLAIN ANALYZE", []read{{`SELECT id, v FROM k WHERE id = $1`, []any{11}}},
			[]string{`EXPLAIN (ANALYZE, COSTS off) UPDATE k SET v = 'explained' WHERE id = 11`}},
		{"transaction", []read{{`SELECT id, v FROM k WHERE id = $1`, []any{9}}, {`SELECT count(*) FROM k`, nil}},
			[]string{`BEGIN`, `UPDATE k SET v = 'tx' WHERE id = 9`, `INSERT INTO k VALUES (99, 'tx')`, `COMMIT`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, rd := range tc.reads {
				rtCached(t, ctx, sc, r, rd.sql, rd.args...)
			}
			for _, q := range tc.writes {
				if _, err := w.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			for _, rd := range tc.reads {
				got := rtRows(t, ctx, r, rd.sql, rd.args...)
				want := rtRows(t, ctx, direct, rd.sql, rd.args...)
				if got != want {
					t.Errorf("after %q through sqlcache, another session read %s %v as %q; PostgreSQL returns %q", tc.writes, rd.sql, rd.args, got, want)
				}
			}
		})
	}
	t.Run("COPY FROM STDIN", func(t *testing.T) {
		const read = `SELECT id, v FROM k WHERE id = $1`
		rtCached(t, ctx, sc, r, read, 77)
		if _, err := w.CopyFrom(ctx, pgx.Identifier{"k"}, []string{"id", "v"}, pgx.CopyFromRows([][]any{{77, "copied"}})); err != nil {
			t.Fatal(err)
		}
		if got, want := rtRows(t, ctx, r, read, 77), rtRows(t, ctx, direct, read, 77); got != want {
			t.Errorf("after COPY k FROM STDIN through sqlcache, another session read %q; PostgreSQL returns %q", got, want)
		}
	})
}

// TestInvalidationUnloggedPartition: answers that read an unlogged or
// foreign table are not cached in logical mode, since their writes never
// reach the change stream; a read of a partitioned (or inheritance)
// parent reads its partitions (children) too, so a parent with an
// unlogged or foreign one is not cached either, or a write made directly
// on it would never invalidate the parent's answers.
func TestInvalidationUnloggedPartition(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"cache": map[string]any{"catalog_check": "1s"}})
	_, port, _ := strings.Cut(pg.Addr(), ":")
	for _, stmt := range []string{
		`CREATE TABLE m (id int, region int, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region)`,
		`CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1)`,
		`CREATE UNLOGGED TABLE m2 PARTITION OF m FOR VALUES IN (2)`,
		`INSERT INTO m VALUES (1, 1, 'logged'), (2, 2, 'unlogged')`,
		`CREATE TABLE h (id int PRIMARY KEY, v text)`,
		`CREATE UNLOGGED TABLE hc (PRIMARY KEY (id)) INHERITS (h)`,
		`INSERT INTO hc VALUES (5, 'unlogged child')`,
		`CREATE EXTENSION postgres_fdw`,
		`CREATE SERVER loop FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '` + port + `', dbname 'postgres')`,
		`CREATE USER MAPPING FOR postgres SERVER loop OPTIONS (user 'postgres')`,
		`CREATE TABLE remote (id int PRIMARY KEY, region int, v text)`,
		`INSERT INTO remote VALUES (3, 3, 'remote')`,
		`CREATE TABLE fm (id int, region int, v text) PARTITION BY LIST (region)`,
		`CREATE FOREIGN TABLE fm3 PARTITION OF fm FOR VALUES IN (3) SERVER loop OPTIONS (table_name 'remote')`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	ctx := t.Context()
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	direct := pg.Conn(t)
	for _, tc := range []struct{ read, write string }{
		{`SELECT id, region, v FROM m ORDER BY id`, `UPDATE m2 SET v = 'changed' WHERE id = 2`},
		{`SELECT id, v FROM h ORDER BY id`, `UPDATE hc SET v = 'changed' WHERE id = 5`},
		{`SELECT id, region, v FROM fm ORDER BY id`, `UPDATE remote SET v = 'changed' WHERE id = 3`},
	} {
		out, _ := RunSqlcache(t, "explain", "--config", sc.ConfigFile, tc.read)
		if !strings.Contains(out, "cacheable: no") {
			t.Errorf("explain %s:\n%s\nwant it not cached", tc.read, out)
		}
		rtRows(t, ctx, conn, tc.read)
		rtRows(t, ctx, conn, tc.read)
		pg.Exec(t, tc.write) // directly on PostgreSQL
		waitApplied(t, sc)
		time.Sleep(2200 * time.Millisecond) // past max_lag and two catalog checks
		got := rtRows(t, ctx, conn, tc.read)
		want := rtRows(t, ctx, direct, tc.read)
		if got != want {
			t.Errorf("%s after %q made directly: sqlcache returned %q, PostgreSQL returns %q", tc.read, tc.write, got, want)
		}
	}
}

// TestInvalidationNonStandardStrings: sqlcache classifies statements with
// pg_query, which scans string literals as PostgreSQL does with
// standard_conforming_strings on. With it off a backslash before a quote
// escapes it, and the same text splits into other statements: here
// PostgreSQL runs SELECT; UPDATE; SELECT where pg_query sees one SELECT of
// constants. Such a text must be neither cached nor taken to write
// nothing.
func TestInvalidationNonStandardStrings(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)`)
	pg.Exec(t, `INSERT INTO t VALUES (1, 0)`)
	waitApplied(t, sc)
	ctx := t.Context()
	reader := connect(t, sc.URL("postgres", "", "postgres"))
	legacy := connect(t, sc.URL("postgres", "", "postgres", "standard_conforming_strings=off", "escape_string_warning=off"))
	direct := pg.Conn(t)
	const read = `SELECT v FROM t WHERE id = 1`
	rtCached(t, ctx, sc, reader, read)
	const sql = `SELECT 'a\' AS x, ' ; UPDATE t SET v = v + 1 WHERE id = 1; SELECT ' AS y -- '`
	out, _ := RunSqlcache(t, "explain", "--config", sc.ConfigFile, sql)
	t.Logf("explain:\n%s", out)
	for i := 1; i <= 3; i++ {
		res, err := legacy.PgConn().Exec(ctx, sql).ReadAll()
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		var tags []string
		for _, r := range res {
			tags = append(tags, r.CommandTag.String())
		}
		t.Logf("run %d: command tags %q", i, tags)
	}
	want := rtRows(t, ctx, direct, read)
	if want != "3\n" {
		t.Errorf("the text with an UPDATE sent three times through sqlcache (each time answered with tag UPDATE 1) left v = %s in PostgreSQL, want 3: the repeats were answered from the cache and never ran", strings.TrimSpace(want))
	}
	if got := rtRows(t, ctx, reader, read); got != want {
		t.Errorf("%s through sqlcache right after: %q; PostgreSQL returns %q", read, got, want)
	}
}

// TestInvalidationViewCallsWriter: a read of a view whose definition
// calls a user-defined volatile function that writes is a write: the
// session's next read from the cache waits for the change stream, though
// the statement's own text calls nothing.
func TestInvalidationViewCallsWriter(t *testing.T) {
	pg, sc := startCache(t, nil)
	for _, stmt := range []string{
		`CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)`,
		`INSERT INTO counter VALUES (1, 0)`,
		`CREATE FUNCTION bump() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN UPDATE counter SET n = n + 1 WHERE id = 1; RETURN true; END $$`,
		`CREATE TABLE items (id int PRIMARY KEY)`,
		`INSERT INTO items VALUES (1)`,
		`CREATE VIEW counted AS SELECT id FROM items WHERE bump()`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	ctx := t.Context()
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	direct := pg.Conn(t)
	const read = `SELECT n FROM counter WHERE id = $1`
	for _, view := range []string{`SELECT id FROM counted WHERE id > 0`, `SELECT id FROM counted`} {
		rtCached(t, ctx, sc, conn, read, 1)
		waits := metricValue(t, sc, "sqlcache_cache_own_write_waits_total")
		rtRows(t, ctx, conn, view)
		got := rtRows(t, ctx, conn, read, 1)
		want := rtRows(t, ctx, direct, read, 1)
		waited := metricValue(t, sc, "sqlcache_cache_own_write_waits_total") > waits
		t.Logf("%s: next read waited for the stream: %v", view, waited)
		if got != want {
			t.Errorf("after %q (the view calls bump(), which updates counter) the same session read counter through sqlcache as %q; PostgreSQL returns %q", view, got, want)
		}
	}
}

// TestInvalidationDirectMatrix: writes made directly on PostgreSQL reach
// cached answers through the change stream, within its lag.
func TestInvalidationDirectMatrix(t *testing.T) {
	pg, sc := startCache(t, nil)
	for _, stmt := range []string{
		`CREATE TABLE k (id int PRIMARY KEY, v text)`,
		`INSERT INTO k SELECT i, 'v' || i FROM generate_series(1, 20) i`,
		`CREATE TABLE ri (id int NOT NULL, code int NOT NULL, v text, PRIMARY KEY (id))`,
		`CREATE UNIQUE INDEX ri_code ON ri (code)`,
		`ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_code`,
		`INSERT INTO ri VALUES (1, 100, 'a'), (2, 200, 'b')`,
		`CREATE TABLE pt (id int, region int, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region)`,
		`CREATE TABLE pt1 PARTITION OF pt FOR VALUES IN (1)`,
		`CREATE TABLE pt2 PARTITION OF pt FOR VALUES IN (2)`,
		`INSERT INTO pt VALUES (1, 1, 'a'), (2, 2, 'b')`,
		`CREATE TABLE par (id int PRIMARY KEY, v text)`,
		`CREATE TABLE kid (PRIMARY KEY (id)) INHERITS (par)`,
		`INSERT INTO kid VALUES (7, 'kid7')`,
		`CREATE TABLE big (id int PRIMARY KEY, v text)`,
		`INSERT INTO big VALUES (1, 'small')`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	ctx := t.Context()
	r := connect(t, sc.URL("postgres", "", "postgres"))
	direct := pg.Conn(t)
	type read struct {
		sql  string
		args []any
	}
	for _, tc := range []struct {
		name   string
		reads  []read
		writes []string
	}{
		{"key change", []read{{`SELECT id, v FROM k WHERE id = $1`, []any{6}}, {`SELECT id, v FROM k WHERE id = $1`, []any{60}}},
			[]string{`UPDATE k SET id = 60 WHERE id = 6`}},
		{"replica identity on another column", []read{{`SELECT id, v FROM ri WHERE id = $1`, []any{1}}},
			[]string{`UPDATE ri SET v = 'changed' WHERE code = 100`}},
		{"partition row movement", []read{{`SELECT * FROM pt2`, nil}, {`SELECT * FROM pt1`, nil}},
			[]string{`UPDATE pt SET region = 2 WHERE id = 1`}},
		{"child write, parent read", []read{{`SELECT * FROM par WHERE id = $1`, []any{7}}},
			[]string{`UPDATE kid SET v = 'kid7!' WHERE id = 7`}},
		{"TRUNCATE", []read{{`SELECT id, v FROM k WHERE id = $1`, []any{2}}},
			[]string{`TRUNCATE k`}},
		{"large row", []read{{`SELECT id, length(v) FROM big WHERE id = $1`, []any{1}}},
			[]string{`UPDATE big SET v = repeat('x', 20000) WHERE id = 1`}},
		{"rolled back then committed", []read{{`SELECT id, v FROM big WHERE id = $1`, []any{2}}},
			[]string{`BEGIN`, `INSERT INTO big VALUES (2, 'rolled back')`, `ROLLBACK`, `INSERT INTO big VALUES (2, 'committed')`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, rd := range tc.reads {
				rtCached(t, ctx, sc, r, rd.sql, rd.args...)
			}
			for _, q := range tc.writes {
				if _, err := direct.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			waitApplied(t, sc)
			for _, rd := range tc.reads {
				got := rtRows(t, ctx, r, rd.sql, rd.args...)
				want := rtRows(t, ctx, direct, rd.sql, rd.args...)
				if got != want {
					t.Errorf("after %q directly, %s %v through sqlcache: %q; PostgreSQL returns %q", tc.writes, rd.sql, rd.args, got, want)
				}
			}
		})
	}
}
