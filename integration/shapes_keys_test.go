package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestShapesClockLiteralEscaped: a text whose shape was analyzed
// before is reused with its own constants read in, as long as it does
// not spell a clock word. A string constant can spell 'now' without those
// bytes: E'\x6eow' (an escape) or 'n' <newline> 'ow' (a continued
// literal), which PostgreSQL reads as 'now': such a text must not be
// cached, shape or not.
func TestShapesClockLiteralEscaped(t *testing.T) {
	_, sc := startCache(t, nil)
	ctx := t.Context()
	conn := connect(t, sc.URL("postgres", "", "postgres", "default_query_exec_mode=simple_protocol"))
	for _, tc := range []struct{ warm, clock string }{
		{`SELECT '2020-01-01 00:00:00+00'::timestamptz AS t`, `SELECT E'\x6eow'::timestamptz AS t`},
		{`SELECT '2020-01-01'::timestamptz AS u`, "SELECT 'n'\n'ow'::timestamptz AS u"},
	} {
		// The shape is learned from a text without a clock word.
		rtRows(t, ctx, conn, tc.warm)
		first := rtRows(t, ctx, conn, tc.clock)
		time.Sleep(1100 * time.Millisecond)
		hits := metricValue(t, sc, "sqlcache_cache_hits_total")
		second := rtRows(t, ctx, conn, tc.clock)
		hit := metricValue(t, sc, "sqlcache_cache_hits_total") > hits
		if first == second {
			t.Errorf("%q read twice 1.1s apart through sqlcache gave the same time %q (cache hit: %v); PostgreSQL reads the clock each time ('now')", tc.clock, strings.TrimSpace(second), hit)
		}
	}
	// Control: the same kind of text, of a shape not seen before, is
	// analyzed on its own and refused.
	const alone = `SELECT E'\x6eow'::timestamptz AS never_seen`
	rtRows(t, ctx, conn, alone)
	hits := metricValue(t, sc, "sqlcache_cache_hits_total")
	rtRows(t, ctx, conn, alone)
	if metricValue(t, sc, "sqlcache_cache_hits_total") > hits {
		t.Errorf("control %q was a hit too", alone)
	}
}

// TestShapesRowAliasColumns: a read of one table with `key = 5` in its
// WHERE clause is tied to row 5 (row-level invalidation), unless a column
// alias list in FROM (`FROM t AS x(other, id)`) renames t's columns: here
// `id` is t's second column, so the answer is about another row, and a
// write of the row it read (by its real key) must drop it.
func TestShapesRowAliasColumns(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE ra (id int PRIMARY KEY, other int, v text)`)
	pg.Exec(t, `INSERT INTO ra VALUES (1, 5, 'one'), (5, 1, 'five')`)
	waitApplied(t, sc)
	ctx := t.Context()
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	direct := pg.Conn(t)
	const read = `SELECT v FROM ra AS x(other, id) WHERE id = 5`
	if got := rtCached(t, ctx, sc, conn, read); got != "one\n" {
		t.Fatalf("%s: %q, want one", read, got)
	}
	// Through sqlcache: a row-level write of row 1, the row read.
	if _, err := conn.Exec(ctx, `UPDATE ra SET v = 'uno' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, sc) // the change stream has carried it too
	got, want := rtRows(t, ctx, conn, read), rtRows(t, ctx, direct, read)
	if got != want {
		out, _ := RunSqlcache(t, "explain", "--config", sc.ConfigFile, read)
		t.Errorf("after UPDATE ra SET v = 'uno' WHERE id = 1 (through sqlcache, change stream applied), %s read %q through sqlcache; PostgreSQL returns %q\nexplain:\n%s", read, got, want, out)
	}
}

// TestShapesSetTransactionAfterHit: in a block whose reads were answered
// from the cache PostgreSQL has run no query, yet it must refuse what it
// refuses once a query ran: SET TRANSACTION ISOLATION LEVEL REPEATABLE
// READ and SET TRANSACTION READ WRITE (after BEGIN READ ONLY) "must be
// called before any query" (25001), or a read-only transaction writes.
func TestShapesSetTransactionAfterHit(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE st (id int PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO st VALUES (1, 'a')`)
	waitApplied(t, sc)
	ctx := t.Context()
	const read = `SELECT v FROM st WHERE id = 1`
	run := func(conn *pgx.Conn, stmts ...string) (string, error) {
		var log []string
		for _, s := range stmts {
			_, err := conn.Exec(ctx, s)
			if err != nil {
				conn.Exec(ctx, `ROLLBACK`)
				return strings.Join(log, "; "), fmt.Errorf("%s: %w", s, err)
			}
			log = append(log, s)
		}
		return strings.Join(log, "; "), nil
	}
	for _, seq := range [][]string{
		{`BEGIN READ ONLY`, read, `SET TRANSACTION READ WRITE`, `UPDATE st SET v = v || '+' WHERE id = 1`, `COMMIT`},
		{`BEGIN`, read, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`, `COMMIT`},
	} {
		directConn := pg.Conn(t)
		_, derr := run(directConn, seq...)
		conn := connect(t, sc.URL("postgres", "", "postgres", "default_query_exec_mode=simple_protocol"))
		rtCached(t, ctx, sc, conn, read)
		hits := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total")
		ran, err := run(conn, seq...)
		inBlock := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total") > hits
		if (derr == nil) != (err == nil) {
			t.Errorf("sequence %q: directly PostgreSQL gives %v; through sqlcache (read in the block a hit: %v) it gives %v after running %q", strings.Join(seq, "; "), derr, inBlock, err, ran)
		}
	}
	t.Logf("st now: %s", rtRows(t, ctx, pg.Conn(t), `SELECT v FROM st`))
}

// TestShapesRowKeys caches each read, then writes each row of the table by
// its key through sqlcache (row-level writes), and compares the read with
// PostgreSQL after each write. Invalidation is by wire only (mode none).
func TestShapesRowKeys(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"invalidation": map[string]any{"postgres": map[string]any{"mode": "none"}}})
	pg.Exec(t, `CREATE TABLE rk (id int PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO rk SELECT i, 'r' || i FROM generate_series(1, 6) i`)
	ctx := t.Context()
	direct := pg.Conn(t)
	for _, mode := range []string{"simple_protocol", "cache_statement"} {
		conn := connect(t, sc.URL("postgres", "", "postgres", "default_query_exec_mode="+mode))
		for _, q := range []string{
			`SELECT v FROM rk WHERE id = 5 OR v = 'r2' ORDER BY id`,
			`SELECT v FROM rk WHERE NOT id = 5 ORDER BY id`,
			`SELECT v FROM rk WHERE id = 5 AND false`,
			`SELECT v FROM rk WHERE (id = 5) IS NOT TRUE ORDER BY id`,
			`SELECT v FROM rk WHERE id = 5::text::int`,
			`SELECT v FROM rk WHERE id + 0 = 5`,
			`SELECT v FROM rk WHERE 5 = id`,
			`SELECT v FROM rk WHERE id = 01`,
			`SELECT v FROM rk WHERE id = 1 AND id = 2`,
			`SELECT v FROM rk WHERE id = 5 UNION SELECT v FROM rk WHERE id = 2`,
			`SELECT a.v, b.v FROM rk a, rk b WHERE a.id = 5 AND b.id = 3`,
			`SELECT v FROM rk r WHERE r.id = 5 AND v IN (SELECT v FROM rk WHERE id = 3) `,
			`SELECT count(*) OVER () FROM rk WHERE id = 5`,
			`SELECT v FROM rk WHERE id = 5 AND id IN (5, 2)`,
			`SELECT v FROM rk WHERE id = 5 AND (id = 2 OR true)`,
			`SELECT v FROM rk WHERE id = '5'`,
			`SELECT v FROM rk WHERE id = 5.0`,
			`SELECT v FROM rk WHERE id = 2147483647 OR id = 4`,
			`SELECT v FROM rk WHERE id = 4 -- = 5`,
			`SELECT v FROM rk WHERE id = /* 5 */ 4`,
			`SELECT v FROM rk WHERE id IN (4, 5) ORDER BY 1`,
			`SELECT v FROM rk WHERE id = ANY ('{4,5}') ORDER BY 1`,
			`SELECT v FROM ONLY rk WHERE id = 4`,
			`SELECT v FROM public.rk WHERE rk.id = 4`,
		} {
			for k := 1; k <= 6; k++ {
				rtRows(t, ctx, conn, q)
				rtRows(t, ctx, conn, q)
				if _, err := conn.Exec(ctx, fmt.Sprintf(`UPDATE rk SET v = v || '+' WHERE id = %d`, k)); err != nil {
					t.Fatal(err)
				}
				got, want := rtRows(t, ctx, conn, q), rtRows(t, ctx, direct, q)
				if got != want {
					t.Errorf("[%s] %s after UPDATE … WHERE id = %d through sqlcache: %q, PostgreSQL %q", mode, q, k, got, want)
					break
				}
			}
		}
	}
	t.Logf("hits %v, row entries %v", metricValue(t, sc, "sqlcache_cache_hits_total"), metricValue(t, sc, "sqlcache_cache_row_entries"))
}

// TestShapesRespell: texts of one shape, or differing only in
// integers, each read through sqlcache (after the shape was learned and
// cached) must match PostgreSQL.
func TestShapesRespell(t *testing.T) {
	pg, sc := startCache(t, nil)
	for _, stmt := range []string{
		`CREATE TABLE t1 (id int PRIMARY KEY, a int, b text)`,
		`CREATE TABLE t2 (id int PRIMARY KEY, a int, b text)`,
		`CREATE SCHEMA s1`,
		`CREATE TABLE s1.t1 (id int PRIMARY KEY, a int, b text)`,
		`INSERT INTO t1 SELECT i, 10 - i, 't1-' || i FROM generate_series(1, 9) i`,
		`INSERT INTO t2 SELECT i, i * 3 % 7, 't2-' || i FROM generate_series(1, 9) i`,
		`INSERT INTO s1.t1 SELECT i, i, 's1-' || i FROM generate_series(1, 9) i`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	ctx := t.Context()
	conn := connect(t, sc.URL("postgres", "", "postgres", "default_query_exec_mode=simple_protocol"))
	direct := pg.Conn(t)
	groups := [][]string{
		{`SELECT id, a FROM t1 ORDER BY 1 LIMIT 3`, `SELECT id, a FROM t1 ORDER BY 2 LIMIT 3`, `SELECT id, a FROM t1 ORDER BY 2 LIMIT 5`, `SELECT id, a FROM t1 ORDER BY 2 LIMIT 5 OFFSET 2`},
		{`SELECT a, count(*) FROM t2 GROUP BY 1 ORDER BY 1`, `SELECT a, count(*) FROM t2 GROUP BY 1 ORDER BY 2, 1`},
		{`SELECT b FROM t1 WHERE id = 3`, `SELECT b FROM t2 WHERE id = 3`, `SELECT b FROM s1.t1 WHERE id = 3`, `SELECT b FROM "t1" WHERE id = 3`},
		{`SELECT b FROM t1 WHERE id IN (1,2) ORDER BY 1`, `SELECT b FROM t1 WHERE id IN (1,2,3) ORDER BY 1`, `SELECT b FROM t1 WHERE id IN (1, 2) ORDER BY 1`},
		{`SELECT 1-2 AS x`, `SELECT 1 -2 AS x`, `SELECT 1--2 AS x`, `SELECT 1- -2 AS x`, `SELECT 3-2 AS x`},
		{`SELECT 1e5 AS x`, `SELECT 2e5 AS x`, `SELECT 1.5 AS x`, `SELECT .5 AS x`, `SELECT 5. AS x`, `SELECT 1::int AS x`, `SELECT 2::int AS x`, `SELECT 0x1F AS x`, `SELECT 0x2F AS x`, `SELECT 1_000 AS x`, `SELECT 2_000 AS x`},
		{`SELECT '12' AS x, 5 AS y`, `SELECT '13' AS x, 5 AS y`, `SELECT '12' AS x, 6 AS y`, `SELECT E'1\x32' AS x, 5 AS y`, `SELECT U&'1\0032' AS x, 5 AS y`},
		{`SELECT 5 AS y /* 1 */`, `SELECT 5 AS y /* 2 */`, `SELECT 6 AS y /* /* 1 */ 2 */`, `SELECT 7 AS y -- 1`},
		{`SELECT 5 AS "1"`, `SELECT 5 AS "2"`, `SELECT 6 AS "2"`},
		{`SELECT 2147483647 AS x`, `SELECT 2147483648 AS x`, `SELECT 9223372036854775807 AS x`, `SELECT 9223372036854775808 AS x`, `SELECT 0002147483647 AS x`},
		{`SELECT b FROM t1 WHERE id = 4`, `SELECT b FROM t1 WHERE id = 04`, `SELECT b FROM t1 WHERE id = 0004`, `SELECT b FROM t1 WHERE id = 5`},
		{`SELECT $$5$$ AS x, 1 AS y`, `SELECT $$6$$ AS x, 1 AS y`, `SELECT $a$5$a$ AS x, 1 AS y`, `SELECT $a$5$a$ AS x, 2 AS y`},
		{`SELECT (ARRAY[10,20,30])[1] AS x`, `SELECT (ARRAY[10,20,30])[2] AS x`, `SELECT (ARRAY[10,20,30])[1:2] AS x`},
		{`SELECT substr('abcdef', 2, 3) AS x`, `SELECT substr('abcdef', 3, 2) AS x`},
		{`SELECT row(1,2) AS x`, `SELECT (row(1,2)).f1 AS x`},
		{`SELECT b FROM t1 WHERE a = 5 AND id = 5`, `SELECT b FROM t1 WHERE a = 6 AND id = 4`},
	}
	for _, g := range groups {
		for round := 0; round < 2; round++ {
			for _, q := range g {
				got := ""
				var gerr, derr error
				rows, err := conn.Query(ctx, q)
				if err == nil {
					got, gerr = reviewRows(rows)
				} else {
					gerr = err
				}
				want := ""
				drows, err := direct.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
				if err == nil {
					want, derr = reviewRows(drows)
				} else {
					derr = err
				}
				if got != want || (gerr == nil) != (derr == nil) {
					t.Errorf("round %d %s: sqlcache %q (%v), PostgreSQL %q (%v)", round, q, got, gerr, want, derr)
				}
			}
		}
	}
}

func reviewRows(rows pgx.Rows) (string, error) {
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return b.String(), err
		}
		fmt.Fprintln(&b, vals...)
	}
	for _, fd := range rows.FieldDescriptions() {
		fmt.Fprint(&b, fd.Name, ",", fd.DataTypeOID, ";")
	}
	return b.String(), rows.Err()
}

// TestShapesTextRule: a cache.rules entry that matches texts by
// regexp tells apart texts of one shape: a text it refuses is not cached
// even when another text of its shape is.
func TestShapesTextRule(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"cache": map[string]any{
		"rules": []any{map[string]any{"query": `id = 7\b`, "cache": "never"}},
	}})
	pg.Exec(t, `CREATE TABLE tr (id int PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO tr SELECT i, 'r' || i FROM generate_series(1, 9) i`)
	waitApplied(t, sc)
	ctx := t.Context()
	conn := connect(t, sc.URL("postgres", "", "postgres", "default_query_exec_mode=simple_protocol"))
	rtCached(t, ctx, sc, conn, `SELECT v FROM tr WHERE id = 5`)
	for _, q := range []string{`SELECT v FROM tr WHERE id = 7`, `SELECT v FROM tr WHERE id = 5`, `SELECT v FROM tr WHERE id = 7`} {
		rtRows(t, ctx, conn, q)
	}
	hits := metricValue(t, sc, "sqlcache_cache_hits_total")
	rtRows(t, ctx, conn, `SELECT v FROM tr WHERE id = 7`)
	if metricValue(t, sc, "sqlcache_cache_hits_total") > hits {
		t.Errorf("SELECT v FROM tr WHERE id = 7 was answered from the cache despite the rule {query: 'id = 7\\b', cache: never}")
	}
}

// TestShapesDomainOverRegclass: casts to the object identifier
// types look names up in the catalog and are not cached, a cast to a
// domain over one neither: it runs the same lookup under another name.
func TestShapesDomainOverRegclass(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE DOMAIN regdom AS regclass`)
	pg.Exec(t, `CREATE TABLE rx (id int PRIMARY KEY)`)
	waitApplied(t, sc)
	ctx := t.Context()
	conn := connect(t, sc.URL("postgres", "", "postgres", "default_query_exec_mode=simple_protocol"))
	direct := pg.Conn(t)
	const q = `SELECT 'rx'::regdom::oid AS o`
	before := rtRows(t, ctx, conn, q)
	hits := metricValue(t, sc, "sqlcache_cache_hits_total")
	rtRows(t, ctx, conn, q)
	if metricValue(t, sc, "sqlcache_cache_hits_total") > hits {
		t.Errorf("%s was answered from the cache", q)
	}
	for _, ddl := range []string{`DROP TABLE rx`, `CREATE TABLE rx (id int PRIMARY KEY)`} {
		if _, err := conn.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	got, want := rtRows(t, ctx, conn, q), rtRows(t, ctx, direct, q)
	if got != want {
		t.Errorf("after DROP TABLE rx; CREATE TABLE rx (through sqlcache) %s reads %q through sqlcache (before: %q); PostgreSQL returns %q", q, got, before, want)
	}
}
