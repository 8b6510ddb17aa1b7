package cachepolicy_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sqlcache/sqlcache/cachepolicy"
)

type rel = cachepolicy.RelRef

// candidateTests are plain SELECTs, with the relations and functions they use.
var candidateTests = []struct {
	name  string
	sql   string
	rels  []rel
	funcs []string
}{
	{"constant", "SELECT 1", nil, nil},
	{"param", "SELECT a, b FROM t WHERE id = $1 AND b > $2::int", []rel{{Name: "t"}},
		[]string{"cast int4", "operator =", "operator >"}},
	{"join", "SELECT * FROM a JOIN b ON a.id = b.a_id LEFT JOIN s.c ON true CROSS JOIN a",
		[]rel{{Name: "a"}, {Name: "b"}, {Schema: "s", Name: "c"}}, []string{"operator ="}},
	{"subquery in WHERE", "SELECT * FROM a WHERE id IN (SELECT a_id FROM b) AND EXISTS (SELECT 1 FROM c)",
		[]rel{{Name: "a"}, {Name: "b"}, {Name: "c"}}, []string{"operator ="}},
	{"subquery in select list", "SELECT (SELECT count(*) FROM b WHERE b.a = a.id) FROM a",
		[]rel{{Name: "a"}, {Name: "b"}}, []string{"count", "operator ="}},
	{"subquery in FROM", "SELECT x FROM (SELECT id AS x FROM a) sub", []rel{{Name: "a"}}, nil},
	{"CTE", "WITH w AS (SELECT * FROM a) SELECT * FROM w JOIN b USING (id)",
		[]rel{{Name: "a"}, {Name: "b"}, {Name: "w", MaybeCTE: true}}, []string{"operator ="}},
	{"recursive CTE", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
		[]rel{{Name: "r", MaybeCTE: true}}, []string{"operator +", "operator <"}},
	{"CTE name and qualified table", "WITH a AS (SELECT 1) SELECT * FROM a, public.a",
		[]rel{{Name: "a", MaybeCTE: true}, {Schema: "public", Name: "a"}}, nil},
	{"nested CTE", "SELECT * FROM (WITH x AS (SELECT * FROM t) SELECT * FROM x) s",
		[]rel{{Name: "t"}, {Name: "x", MaybeCTE: true}}, nil},
	{"UNION", "SELECT id FROM a UNION SELECT id FROM b", []rel{{Name: "a"}, {Name: "b"}}, nil},
	{"INTERSECT EXCEPT", "SELECT id FROM a INTERSECT SELECT id FROM b EXCEPT ALL SELECT id FROM c",
		[]rel{{Name: "a"}, {Name: "b"}, {Name: "c"}}, nil},
	{"window", "SELECT id, row_number() OVER (PARTITION BY g ORDER BY id), sum(x) OVER w FROM a WINDOW w AS (ORDER BY id)",
		[]rel{{Name: "a"}}, []string{"row_number", "sum"}},
	{"GROUP BY HAVING", "SELECT g, count(*), max(x) FROM a GROUP BY g HAVING count(*) > 1",
		[]rel{{Name: "a"}}, []string{"count", "max", "operator >"}},
	{"aggregate FILTER ORDER BY", "SELECT count(*) FILTER (WHERE x > 0), string_agg(s, ',' ORDER BY s) FROM t",
		[]rel{{Name: "t"}}, []string{"count", "operator >", "string_agg"}},
	{"VALUES", "VALUES (1, 'a'), (2, 'b')", nil, nil},
	{"TABLE", "TABLE t", []rel{{Name: "t"}}, nil},
	{"schema-qualified", "SELECT * FROM public.users u", []rel{{Schema: "public", Name: "users"}}, nil},
	{"quoted MixedCase", `SELECT * FROM "MixedCase" JOIN "S"."T" ON true`,
		[]rel{{Name: "MixedCase"}, {Schema: "S", Name: "T"}}, nil},
	{"unquoted folds", "SELECT * FROM Users", []rel{{Name: "users"}}, nil},
	{"LATERAL", "SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.a = a.id LIMIT 1) l",
		[]rel{{Name: "a"}, {Name: "b"}}, []string{"operator ="}},
	{"generate_series in FROM", "SELECT * FROM generate_series(1, 10) AS g(n)", nil, []string{"generate_series"}},
	{"ROWS FROM", "SELECT * FROM ROWS FROM (unnest(ARRAY[1, 2]), generate_series(1, 2))", nil,
		[]string{"generate_series", "unnest"}},
	{"qualified function", "SELECT pg_catalog.lower(name), Upper(name) FROM t", []rel{{Name: "t"}},
		[]string{"lower", "upper"}},
	{"SQL-syntax functions", "SELECT EXTRACT(year FROM d), d AT TIME ZONE 'UTC' FROM t", []rel{{Name: "t"}},
		[]string{"extract", "timezone"}},
	{"ONLY", "SELECT * FROM ONLY parent", []rel{{Name: "parent"}}, nil},
	{"DISTINCT ON ORDER LIMIT", "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b DESC LIMIT 10 OFFSET 5",
		[]rel{{Name: "t"}}, nil},
	{"system columns", "SELECT ctid, xmin, * FROM t", []rel{{Name: "t"}}, nil},
	{"volatile left to Decide", "SELECT nextval('s'), random()", nil, []string{"nextval", "random"}},
	{"casts that read no catalog", "SELECT '1 day'::interval, 16384::oid, 'x'::text::varchar(3), '{}'::int[]", nil,
		[]string{"cast int4", "cast interval", "cast oid", "cast text", "cast varchar"}},
	{"fixed date literals", "SELECT 'epoch'::timestamptz, 'infinity'::date, '2024-01-01'::date", nil,
		[]string{"cast date", "cast timestamptz"}},
	{"word containing now", "SELECT * FROM t WHERE note = 'knowledge' AND tag = 'snowman'", []rel{{Name: "t"}},
		[]string{"operator ="}},
	{"JSON path", "SELECT jsonb_path_query(doc, '$.a') FROM t", []rel{{Name: "t"}}, []string{"jsonb_path_query"}},
	{"CASE COALESCE", "SELECT CASE WHEN a THEN 1 ELSE coalesce(b, 0) END FROM t", []rel{{Name: "t"}}, nil},
	{"trailing semicolon", "SELECT 1;", nil, nil},
	// Operators and casts run functions too (Implicit).
	{"operators", "SELECT a || b, c ~~ 'x%', d ILIKE 'y', e OPERATOR(public.===) f FROM t WHERE g IS DISTINCT FROM h",
		[]rel{{Name: "t"}}, []string{"operator =", "operator ===", "operator ||", "operator ~~", "operator ~~*"}},
	{"BETWEEN", "SELECT * FROM t WHERE a BETWEEN 1 AND 2 OR b NOT BETWEEN SYMMETRIC 3 AND 4", []rel{{Name: "t"}},
		[]string{"operator <", "operator <=", "operator >", "operator >="}},
	{"IN list, ANY, ALL", "SELECT * FROM t WHERE a IN (1, 2) OR b NOT IN (3) OR c = ANY ($1) OR d < ALL (SELECT x FROM u)",
		[]rel{{Name: "t"}, {Name: "u"}}, []string{"operator <", "operator <>", "operator ="}},
	{"NULLIF, simple CASE, USING, NATURAL", "SELECT nullif(a, 0), CASE b WHEN 1 THEN 2 END FROM t JOIN u USING (id) NATURAL JOIN v",
		[]rel{{Name: "t"}, {Name: "u"}, {Name: "v"}}, []string{"operator ="}},
	{"ORDER BY USING", "SELECT * FROM t ORDER BY a USING >", []rel{{Name: "t"}}, []string{"operator >"}},
	{"full-text search as ORMs spell it", "SELECT id FROM docs WHERE to_tsvector('english'::regconfig, body) @@ plainto_tsquery('english'::regconfig, $1)",
		[]rel{{Name: "docs"}}, []string{"cast regconfig", "operator @@", "plainto_tsquery", "to_tsvector"}},
	{"casts to user types", "SELECT CAST(a AS money_band), b::public.grade[], int4range(1, 2)::text FROM t",
		[]rel{{Name: "t"}}, []string{"cast grade", "cast money_band", "cast text", "int4range"}},
}

func TestAnalyzeCandidates(t *testing.T) {
	for _, tt := range candidateTests {
		t.Run(tt.name, func(t *testing.T) {
			a := cachepolicy.Analyze(tt.sql)
			if !a.Candidate {
				t.Fatalf("Analyze(%q): not a candidate: %q", tt.sql, a.Reason)
			}
			if a.Reason != "" {
				t.Errorf("Reason = %q; want empty", a.Reason)
			}
			if diff := cmp.Diff(tt.rels, a.Relations); diff != "" {
				t.Errorf("Relations (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.funcs, a.Functions); diff != "" {
				t.Errorf("Functions (-want +got):\n%s", diff)
			}
			if a.InvalidateAll || a.CatalogChange || len(a.Writes) > 0 || len(a.Session) > 0 {
				t.Errorf("a plain SELECT changes something: %+v", a)
			}
		})
	}
}

// rejectTests are statements that are not candidates, with a substring of
// the reason.
var rejectTests = []struct {
	sql, reason string
}{
	{"SELECT * FROM t FOR UPDATE", "FOR UPDATE"},
	{"SELECT * FROM t FOR SHARE OF t NOWAIT", "FOR SHARE"},
	{"SELECT * FROM t FOR NO KEY UPDATE", "FOR NO KEY UPDATE"},
	{"SELECT * FROM t FOR KEY SHARE SKIP LOCKED", "FOR KEY SHARE"},
	{"SELECT * FROM (SELECT * FROM t FOR UPDATE) s", "FOR UPDATE"},
	{"SELECT * INTO newt FROM t", "SELECT INTO"},
	{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "data-modifying CTE"},
	{"WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM i", "data-modifying CTE"},
	{"WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM u", "data-modifying CTE"},
	{"WITH m AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING *) SELECT * FROM m", "data-modifying CTE"},
	{"SELECT * FROM t TABLESAMPLE SYSTEM (10)", "TABLESAMPLE"},
	{"SELECT id, xmax FROM t WHERE id = 1", "reads row lock state (xmax)"},
	{"SELECT t.cmin FROM t", "reads row lock state (cmin)"},
	{"SELECT CURRENT_TIMESTAMP", "reads the clock (CURRENT_TIMESTAMP)"},
	{"SELECT * FROM t WHERE d = CURRENT_DATE", "reads the clock (CURRENT_DATE)"},
	{"SELECT CURRENT_TIME(0)", "reads the clock (CURRENT_TIME)"},
	{"SELECT LOCALTIME", "reads the clock (LOCALTIME)"},
	{"SELECT LOCALTIMESTAMP(3)", "reads the clock (LOCALTIMESTAMP)"},
	{"SELECT * FROM t WHERE owner = CURRENT_USER", "reads the session (CURRENT_USER)"},
	{"SELECT CURRENT_ROLE", "reads the session (CURRENT_ROLE)"},
	{"SELECT SESSION_USER", "reads the session (SESSION_USER)"},
	{"SELECT USER", "reads the session (USER)"},
	{"SELECT CURRENT_CATALOG", "reads the session (CURRENT_CATALOG)"},
	{"SELECT CURRENT_SCHEMA", "reads the session (CURRENT_SCHEMA)"},
	{"SELECT 'now'::timestamptz", "reads the clock ('now')"},
	{"SELECT CAST('today' AS date)", "reads the clock ('today')"},
	{"SELECT timestamp 'Tomorrow'", "reads the clock ('Tomorrow')"},
	{"SELECT * FROM t WHERE d > ' yesterday '", "reads the clock"},
	{"SELECT 'tomorrow 10:00'::timestamp", "reads the clock"},
	{"SELECT ('now'::text)::timestamptz", "reads the clock"},
	{"SELECT set_config('search_path', 'x', false)", "set_config"},
	{"SELECT 'orders'::regclass::oid", "reads the catalog (::regclass)"},
	{"SELECT CAST(16384 AS pg_catalog.regclass)", "reads the catalog (::regclass)"},
	{"SELECT * FROM t WHERE rel = ANY('{a,b}'::regclass[])", "reads the catalog (::regclass)"},
	{"SELECT regtype 'int4'", "reads the catalog (::regtype)"},
	{"SELECT 'app'::regrole, 'public'::regnamespace", "reads the catalog (::regrole)"},
	{"INSERT INTO t VALUES (1)", "not a SELECT (INSERT)"},
	{"UPDATE t SET a = 1", "not a SELECT (UPDATE)"},
	{"DELETE FROM t", "not a SELECT (DELETE)"},
	{"EXPLAIN SELECT 1", "not a SELECT (EXPLAIN)"},
	{"SHOW search_path", "not a SELECT (SHOW)"},
	{"CREATE TABLE x (a int)", "not a SELECT (CreateStmt)"},
	{"SELECT 1; SELECT 2", "several statements"},
	{"SET a.b = 1; SELECT 1", "several statements"},
	{"", "empty query"},
	{";", "empty query"},
	{" ; -- nothing", "empty query"},
	{"SELECT 1 FROM", "parse error"},
}

func TestAnalyzeRejects(t *testing.T) {
	for _, tt := range rejectTests {
		t.Run(tt.sql, func(t *testing.T) {
			a := cachepolicy.Analyze(tt.sql)
			if a.Candidate {
				t.Fatalf("Analyze(%q) is a candidate; want not (%q)", tt.sql, tt.reason)
			}
			if !strings.Contains(a.Reason, tt.reason) {
				t.Errorf("Reason = %q; want it to contain %q", a.Reason, tt.reason)
			}
			if a.Relations != nil || a.Functions != nil {
				t.Errorf("non-candidate has Relations %v, Functions %v", a.Relations, a.Functions)
			}
		})
	}
}

func TestAnalyzeEmptyAndParseError(t *testing.T) {
	for _, sql := range []string{"", ";", ";;", "  -- comment only"} {
		a := cachepolicy.Analyze(sql)
		want := &cachepolicy.Analysis{Reason: "empty query"}
		if diff := cmp.Diff(want, a); diff != "" {
			t.Errorf("Analyze(%q) (-want +got):\n%s", sql, diff)
		}
	}
	for _, sql := range []string{"SELECT 1 FROM", "DROP TABLE", "DELETE FROM t; DROP TABLE", "SELEC 1", "SELECT 'unterminated", "SELECT 1\x00; DROP TABLE t"} {
		a := cachepolicy.Analyze(sql)
		if a.ParseError == nil {
			t.Fatalf("Analyze(%q): no ParseError", sql)
		}
		// A string Postgres rejects runs no statement, so it changes
		// nothing; should Postgres accept it (a syntax the parser lacks,
		// a text the client encoding made unreadable), the session's
		// settings are unknown. A NUL Postgres rejects in any case.
		got := *a
		got.ParseError = nil
		want := cachepolicy.Analysis{Reason: "parse error"}
		if !strings.Contains(sql, "\x00") {
			want.Session = []cachepolicy.SessionEffect{{Kind: cachepolicy.Unknown, Value: "a statement sqlcache could not parse"}}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Analyze(%q) (-want +got):\n%s", sql, diff)
		}
	}
}

// writeTests give the write side of statements: relations written, and
// whether everything or the catalog is invalidated.
var writeTests = []struct {
	sql     string
	writes  []string
	all     bool // InvalidateAll
	catalog bool // CatalogChange
}{
	// DML
	{"INSERT INTO t (a) VALUES (1)", []string{"t"}, false, false},
	{"INSERT INTO s.t SELECT * FROM u", []string{"t"}, false, false},
	{"INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b", []string{"t"}, false, false},
	{"UPDATE t SET a = o.a FROM other o WHERE t.id = o.id", []string{"t"}, false, false},
	{"DELETE FROM t USING other WHERE t.id = other.id", []string{"t"}, false, false},
	{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.a)", []string{"t"}, false, false},
	{"WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", []string{"t"}, false, false},
	{"WITH x AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM x", []string{"a", "b"}, false, false},
	{"INSERT INTO a VALUES (1); UPDATE b SET x = 1; DELETE FROM a", []string{"a", "b"}, false, false},
	{"TRUNCATE a, b", []string{"a", "b"}, false, false},
	{"TRUNCATE a CASCADE", nil, true, true},
	{"COPY t FROM STDIN", []string{"t"}, false, false},
	{"COPY t (a, b) FROM '/tmp/x' WITH (FORMAT csv)", []string{"t"}, false, false},
	{"COPY t TO STDOUT", nil, false, false},
	{"COPY (SELECT * FROM t) TO STDOUT", nil, false, false},
	{"COPY (DELETE FROM t RETURNING *) TO STDOUT", []string{"t"}, false, false},
	{"EXPLAIN ANALYZE DELETE FROM t", []string{"t"}, false, false},
	{"EXPLAIN (ANALYZE true, BUFFERS) UPDATE t SET a = 1", []string{"t"}, false, false},
	{"EXPLAIN ANALYSE DELETE FROM t", []string{"t"}, false, false},
	{"EXPLAIN DELETE FROM t", nil, false, false},
	{"EXPLAIN (ANALYZE off) DELETE FROM t", nil, false, false},
	{"EXPLAIN ANALYZE SELECT * FROM t", nil, false, false},
	{"SELECT * INTO newt FROM t", []string{"newt"}, false, true},
	// DDL on relations
	{"CREATE TABLE t (a int)", []string{"t"}, false, true},
	{"CREATE TABLE IF NOT EXISTS s.t (a int) INHERITS (parent)", []string{"parent", "t"}, false, true},
	{"CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)", []string{"p", "p1"}, false, true},
	{"CREATE TABLE t2 AS SELECT * FROM t", []string{"t2"}, false, true},
	{"CREATE VIEW v AS SELECT * FROM t", []string{"v"}, false, true},
	{"CREATE OR REPLACE VIEW v AS SELECT 1", []string{"v"}, false, true},
	{"CREATE MATERIALIZED VIEW m AS SELECT * FROM t", []string{"m"}, false, true},
	{"CREATE FOREIGN TABLE f (a int) SERVER srv", []string{"f"}, false, true},
	{"CREATE SEQUENCE sq", []string{"sq"}, false, true},
	// Temporary relations: no other session sees them.
	{"CREATE TEMP TABLE t (a int)", nil, false, false},
	{"CREATE TABLE pg_temp.t (a int)", nil, false, false},
	{"CREATE TEMPORARY VIEW v AS SELECT * FROM t", nil, false, false},
	{"CREATE TEMP SEQUENCE sq", nil, false, false},
	{"CREATE TEMP TABLE t2 AS SELECT * FROM t", nil, false, false},
	{"SELECT * INTO TEMP newt FROM t", nil, false, false},
	{"EXPLAIN ANALYZE CREATE TEMP TABLE t2 AS SELECT 1", nil, false, false},
	{"CREATE TEMP TABLE t2 AS WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", []string{"t", "t2"}, false, true},
	{"CREATE TEMP TABLE c () INHERITS (parent)", []string{"c", "parent"}, false, true},
	{"CREATE TEMP TABLE a (x int); CREATE TABLE b (x int)", []string{"b"}, false, true},
	{"CREATE TABLE b (x int); CREATE TEMP TABLE a (x int)", []string{"b"}, false, true},
	{"DROP TABLE t", []string{"t"}, false, true},
	{"ALTER SEQUENCE sq RESTART", []string{"sq"}, false, true},
	{"REFRESH MATERIALIZED VIEW CONCURRENTLY m", []string{"m"}, false, true},
	{"ALTER TABLE a RENAME TO b", []string{"a", "b"}, false, true},
	{"ALTER VIEW v RENAME TO w", []string{"v", "w"}, false, true},
	{"ALTER INDEX i RENAME TO j", []string{"i", "j"}, false, true},
	{"ALTER TABLE a RENAME COLUMN x TO y", []string{"a"}, false, true},
	{"ALTER TABLE a SET SCHEMA s", []string{"a"}, false, true},
	{"ALTER TABLE a ADD COLUMN c int DEFAULT 0", []string{"a"}, false, true},
	{"ALTER TABLE a ALTER COLUMN c TYPE text", []string{"a"}, false, true},
	{"ALTER TABLE a ENABLE ROW LEVEL SECURITY", []string{"a"}, false, true},
	{"ALTER TABLE a DISABLE ROW LEVEL SECURITY", []string{"a"}, false, true},
	{"ALTER TABLE a OWNER TO bob", []string{"a"}, false, true},
	{"ALTER TABLE p ATTACH PARTITION p1 FOR VALUES IN (1)", []string{"p", "p1"}, false, true},
	{"ALTER TABLE p DETACH PARTITION p1", []string{"p", "p1"}, false, true},
	{"DROP TABLE a, s.b", []string{"a", "b"}, false, true},
	{"DROP VIEW IF EXISTS v", []string{"v"}, false, true},
	{"DROP MATERIALIZED VIEW m", []string{"m"}, false, true},
	{"DROP FOREIGN TABLE f", []string{"f"}, false, true},
	{"DROP SEQUENCE sq", []string{"sq"}, false, true},
	{"DROP TABLE a CASCADE", nil, true, true},
	{"GRANT SELECT ON t, s.u TO bob", []string{"t", "u"}, false, true},
	{"REVOKE ALL ON TABLE t FROM bob", []string{"t"}, false, true},
	{"GRANT USAGE ON SEQUENCE sq TO bob", []string{"sq"}, false, true},
	{"CREATE POLICY p ON t USING (true)", []string{"t"}, false, true},
	{"ALTER POLICY p ON t USING (false)", []string{"t"}, false, true},
	{"DROP POLICY p ON s.t", []string{"t"}, false, true},
	{"ALTER POLICY p ON t RENAME TO q", []string{"t"}, false, true},
	{"CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", []string{"t"}, false, true},
	{"CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u", []string{"t"}, false, true},
	{"DROP RULE r ON t", []string{"t"}, false, true},
	{"CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", []string{"t"}, false, true},
	{"DROP TRIGGER tr ON t", []string{"t"}, false, true},
	// DDL that leaves data alone
	{"CREATE INDEX i ON t (a)", nil, false, true},
	{"DROP INDEX i", nil, false, true},
	{"CREATE STATISTICS st ON a, b FROM t", nil, false, true},
	// Harmless
	{"SELECT * FROM t", nil, false, false},
	{"SELECT random(), nextval('s')", nil, false, false},
	{"REINDEX TABLE t", nil, false, false},
	{"VACUUM FULL t", nil, false, false},
	{"ANALYZE t", nil, false, false},
	{"CLUSTER t USING i", nil, false, false},
	{"CHECKPOINT", nil, false, false},
	{"COMMENT ON TABLE t IS 'x'", nil, false, false},
	{"LOCK TABLE t IN ACCESS EXCLUSIVE MODE", nil, false, false},
	{"PREPARE p AS DELETE FROM t", nil, false, false},
	{"PREPARE p AS WITH x AS (DELETE FROM t RETURNING 1) SELECT * FROM x", nil, false, false},
	{"DEALLOCATE ALL", nil, false, false},
	{"BEGIN; SAVEPOINT s; RELEASE s; ROLLBACK TO s; COMMIT; ROLLBACK; START TRANSACTION; PREPARE TRANSACTION 'x'", nil, false, false},
	{"LISTEN c; NOTIFY c, 'x'; UNLISTEN *", nil, false, false},
	{"SHOW search_path; SET a.b = 1; RESET a.b; DISCARD ALL", nil, false, false},
	{"DECLARE c CURSOR FOR SELECT * FROM t; FETCH 10 FROM c; MOVE c; CLOSE c", nil, false, false},
	{"SET CONSTRAINTS ALL DEFERRED", nil, false, false},
	{"LOAD 'auto_explain'", nil, false, false},
	{"SELECT 1 FROM", nil, false, false},
	{"", nil, false, false},
	// Everything
	{"COMMIT PREPARED 'x'", nil, true, true},
	{"ROLLBACK PREPARED 'x'", nil, true, true},
	{"EXECUTE p(1)", nil, true, true},
	{"EXPLAIN ANALYZE EXECUTE p", nil, true, true},
	{"DO $$BEGIN END$$", nil, true, true},
	{"CALL proc(1)", nil, true, true},
	{"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", nil, true, true},
	{"CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'", nil, true, true},
	{"ALTER FUNCTION f() STABLE", nil, true, true},
	{"DROP FUNCTION f()", nil, true, true},
	{"CREATE TYPE mood AS ENUM ('sad', 'ok')", nil, true, true},
	{"ALTER TYPE mood ADD VALUE 'happy'", nil, true, true},
	{"ALTER TYPE comp ADD ATTRIBUTE a int", nil, true, true},
	{"CREATE DOMAIN d AS int CHECK (VALUE > 0)", nil, true, true},
	{"CREATE SCHEMA s CREATE TABLE t (a int)", nil, true, true},
	{"DROP SCHEMA s", nil, true, true},
	{"ALTER SCHEMA s RENAME TO s2", nil, true, true},
	{"CREATE EXTENSION hstore", nil, true, true},
	{"CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq)", nil, true, true},
	{"CREATE CAST (text AS int) WITH INOUT", nil, true, true},
	{"ALTER ROLE bob SET search_path = x", nil, true, true},
	{"ALTER USER bob WITH SUPERUSER", nil, true, true},
	{"GRANT admin TO bob", nil, true, true},
	{"REVOKE admin FROM bob", nil, true, true},
	{"GRANT SELECT ON ALL TABLES IN SCHEMA public TO bob", nil, true, true},
	{"GRANT USAGE ON SCHEMA s TO bob", nil, true, true},
	{"GRANT EXECUTE ON FUNCTION f() TO bob", nil, true, true},
	{"GRANT CONNECT ON DATABASE d TO bob", nil, true, true},
	{"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob", nil, true, true},
	{"DROP OWNED BY bob", nil, true, true},
	{"REASSIGN OWNED BY bob TO alice", nil, true, true},
	{"IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO public", nil, true, true},
	{"ALTER DATABASE d SET work_mem = '1MB'", nil, true, true},
	{"SECURITY LABEL ON TABLE t IS 'x'", nil, true, true},
	{"CREATE PUBLICATION p FOR ALL TABLES", nil, true, true},
	{"ALTER FUNCTION f() SET SCHEMA s", nil, true, true},
	{"INSERT INTO a VALUES (1); DO $$BEGIN END$$", []string{"a"}, true, true},
}

func TestAnalyzeWrites(t *testing.T) {
	for _, tt := range writeTests {
		t.Run(tt.sql, func(t *testing.T) {
			a := cachepolicy.Analyze(tt.sql)
			if diff := cmp.Diff(tt.writes, a.Writes); diff != "" {
				t.Errorf("Writes (-want +got):\n%s", diff)
			}
			if a.InvalidateAll != tt.all {
				t.Errorf("InvalidateAll = %v; want %v", a.InvalidateAll, tt.all)
			}
			if a.CatalogChange != tt.catalog {
				t.Errorf("CatalogChange = %v; want %v", a.CatalogChange, tt.catalog)
			}
		})
	}
}

type effect = cachepolicy.SessionEffect

var sessionTests = []struct {
	sql  string
	want []effect
}{
	{`SET search_path TO "$user", public`, []effect{{Kind: cachepolicy.SetVar, Name: "search_path", Value: `"$user", public`}}},
	{`SET search_path = 'MySchema', "user", Public, 'a"b'`,
		[]effect{{Kind: cachepolicy.SetVar, Name: "search_path", Value: `"MySchema", "user", public, "a""b"`}}},
	{"SET TIME ZONE 'UTC'", []effect{{Kind: cachepolicy.SetVar, Name: "timezone", Value: "UTC"}}},
	{"SET TIME ZONE LOCAL", []effect{{Kind: cachepolicy.ResetVar, Name: "timezone"}}},
	{"SET LOCAL statement_timeout = 5", []effect{{Kind: cachepolicy.SetVar, Name: "statement_timeout", Value: "5", Local: true}}},
	{"SET SESSION statement_timeout TO '5s'", []effect{{Kind: cachepolicy.SetVar, Name: "statement_timeout", Value: "5s"}}},
	{"SET datestyle = iso, mdy", []effect{{Kind: cachepolicy.SetVar, Name: "datestyle", Value: "iso, mdy"}}},
	{"SET extra_float_digits = -3", []effect{{Kind: cachepolicy.SetVar, Name: "extra_float_digits", Value: "-3"}}},
	{"SET my.opt = 1.50", []effect{{Kind: cachepolicy.SetVar, Name: "my.opt", Value: "1.50"}}},
	{`SET "Application_Name" = 'App'`, []effect{{Kind: cachepolicy.SetVar, Name: "application_name", Value: "App"}}},
	{"SET SCHEMA 'x'", []effect{{Kind: cachepolicy.SetVar, Name: "search_path", Value: "x"}}},
	{"SET NAMES 'UTF8'", []effect{{Kind: cachepolicy.SetVar, Name: "client_encoding", Value: "UTF8"}}},
	{"SET statement_timeout TO DEFAULT", []effect{{Kind: cachepolicy.ResetVar, Name: "statement_timeout"}}},
	{"RESET statement_timeout", []effect{{Kind: cachepolicy.ResetVar, Name: "statement_timeout"}}},
	{"RESET TIME ZONE", []effect{{Kind: cachepolicy.ResetVar, Name: "timezone"}}},
	{"RESET ALL", []effect{{Kind: cachepolicy.ResetAll}}},
	{"SET ROLE bob", []effect{{Kind: cachepolicy.SetRole, Value: "bob"}}},
	{"SET ROLE 'Bob'", []effect{{Kind: cachepolicy.SetRole, Value: "Bob"}}},
	{"SET ROLE NONE", []effect{{Kind: cachepolicy.SetRole, Value: "none"}}},
	{"RESET ROLE", []effect{{Kind: cachepolicy.SetRole}}},
	{"SET ROLE TO DEFAULT", []effect{{Kind: cachepolicy.SetRole}}},
	{"SET LOCAL ROLE bob", []effect{{Kind: cachepolicy.SetRole, Value: "bob", Local: true}}},
	{"SET SESSION AUTHORIZATION bob", []effect{{Kind: cachepolicy.SetSessionAuthorization, Value: "bob"}}},
	{"SET SESSION AUTHORIZATION DEFAULT", []effect{{Kind: cachepolicy.SetSessionAuthorization}}},
	{"RESET SESSION AUTHORIZATION", []effect{{Kind: cachepolicy.SetSessionAuthorization}}},
	{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", []effect{
		{Kind: cachepolicy.SetVar, Name: "transaction_isolation", Value: "serializable", Local: true},
		{Kind: cachepolicy.SetVar, Name: "transaction_read_only", Value: "1", Local: true},
	}},
	{"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
		[]effect{{Kind: cachepolicy.SetVar, Name: "default_transaction_isolation", Value: "repeatable read"}}},
	{"SET TRANSACTION SNAPSHOT '000003A1-1'",
		[]effect{{Kind: cachepolicy.Unknown, Name: "transaction_snapshot", Value: "SET TRANSACTION SNAPSHOT", Local: true}}},
	{"SET work_mem FROM CURRENT", []effect{{Kind: cachepolicy.Unknown, Name: "work_mem", Value: "SET FROM CURRENT"}}},
	{"SET TIME ZONE INTERVAL '-08:00' HOUR TO MINUTE", []effect{{Kind: cachepolicy.Unknown, Name: "timezone", Value: "SET"}}},
	{"DISCARD ALL", []effect{{Kind: cachepolicy.DiscardAll}}},
	{"DISCARD TEMP", []effect{{Kind: cachepolicy.DiscardTemp}}},
	{"DISCARD TEMPORARY", []effect{{Kind: cachepolicy.DiscardTemp}}},
	{"DISCARD PLANS", []effect{{Kind: cachepolicy.DiscardOther, Value: "plans"}}},
	{"DISCARD SEQUENCES", []effect{{Kind: cachepolicy.DiscardOther, Value: "sequences"}}},
	{"CREATE TEMP TABLE t (a int)", []effect{{Kind: cachepolicy.CreateTemp, Name: "t"}}},
	{"CREATE TEMPORARY VIEW v AS SELECT 1", []effect{{Kind: cachepolicy.CreateTemp, Name: "v"}}},
	{"CREATE TEMP SEQUENCE sq", []effect{{Kind: cachepolicy.CreateTemp, Name: "sq"}}},
	{"CREATE TABLE pg_temp.x (a int)", []effect{{Kind: cachepolicy.CreateTemp, Name: "x"}}},
	{"CREATE TEMP TABLE t AS SELECT 1", []effect{{Kind: cachepolicy.CreateTemp, Name: "t"}}},
	{"SELECT 1 INTO TEMP t", []effect{{Kind: cachepolicy.CreateTemp, Name: "t"}}},
	{"EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1", []effect{{Kind: cachepolicy.CreateTemp, Name: "t"}}},
	{"CREATE TABLE t (a int)", nil},
	// One set_config() SELECTed once sets exactly that, as SET does.
	{"SELECT set_config('search_path', 'x', false)", []effect{{Kind: cachepolicy.SetVar, Name: "search_path", Value: "x"}}},
	{"SELECT pg_catalog.set_config('My.Opt', 'v', true)", []effect{{Kind: cachepolicy.SetVar, Name: "my.opt", Value: "v", Local: true}}},
	{"SELECT set_config('app.tenant', $1, false) AS t", []effect{{Kind: cachepolicy.SetVar, Name: "app.tenant", Param: 1}}},
	{"SELECT set_config('app.tenant', $2::text, false)", []effect{{Kind: cachepolicy.SetVar, Name: "app.tenant", Param: 2}}},
	// set_config('role', …) is SET ROLE; from a parameter it is not read in.
	{"SELECT set_config('role', 'bob', false)", []effect{{Kind: cachepolicy.SetRole, Value: "bob"}}},
	{"SELECT set_config('role', 'none', false)", []effect{{Kind: cachepolicy.SetRole, Value: "none"}}},
	{"SELECT set_config('session_authorization', 'bob', false)", []effect{{Kind: cachepolicy.SetSessionAuthorization, Value: "bob"}}},
	{"SELECT set_config('role', $1, false)", []effect{{Kind: cachepolicy.SetConfigCall, Name: "role", Param: 1}}},
	// Anything more may run it any number of times, or not at all.
	{"SELECT set_config('app.tenant', $1, false) WHERE false", []effect{{Kind: cachepolicy.SetConfigCall, Name: "app.tenant", Param: 1}}},
	{"SELECT set_config('a.b', 'x', false) FROM generate_series(1, 2)", []effect{{Kind: cachepolicy.SetConfigCall, Name: "a.b", Value: "x"}}},
	{"SELECT set_config('a.b', 'x', false), 1 UNION ALL SELECT 'y', 2", []effect{{Kind: cachepolicy.SetConfigCall, Name: "a.b", Value: "x"}}},
	{"SELECT set_config('a.b', $1::int, false)", []effect{{Kind: cachepolicy.SetConfigCall}}},
	{"SELECT other.set_config('a.b', 'x', false)", []effect{{Kind: cachepolicy.SetConfigCall, Name: "a.b", Value: "x"}}},
	{"SELECT set_config(name, 'x', true) FROM t", []effect{{Kind: cachepolicy.SetConfigCall}}},
	{"UPDATE t SET a = set_config('x.y', 'v', true)", []effect{{Kind: cachepolicy.SetConfigCall, Name: "x.y", Value: "v", Local: true}}},
	{"SET a.b = 1; SELECT 1", []effect{{Kind: cachepolicy.SetVar, Name: "a.b", Value: "1"}}},
	{"BEGIN; SET LOCAL a.b = 'x'; RESET a.c; COMMIT", []effect{
		{Kind: cachepolicy.SetVar, Name: "a.b", Value: "x", Local: true},
		{Kind: cachepolicy.ResetVar, Name: "a.c"},
	}},
	{"DO $$BEGIN PERFORM set_config('a.b', '1', false); END$$", []effect{{Kind: cachepolicy.Unknown, Value: "DO"}}},
	{"CALL proc()", []effect{{Kind: cachepolicy.Unknown, Value: "CALL"}}},
	{"LOAD 'auto_explain'", []effect{{Kind: cachepolicy.Unknown, Value: "LOAD"}}},
	{"SHOW search_path", nil},
	{"ALTER ROLE bob SET search_path = x", nil},
	{"CREATE FUNCTION f() RETURNS int SET search_path = x LANGUAGE sql AS 'SELECT 1'", nil},
}

// TestAnalyzeTooDeep: a text nested deeper than pg_query can serialize
// (it recurses in C, and overflowing that stack kills the process) is not
// parsed; a long flat list is.
func TestAnalyzeTooDeep(t *testing.T) {
	for _, tt := range []struct {
		name string
		sql  string
		deep bool
	}{
		{"operator chain", "SELECT 1" + strings.Repeat("+1", 60000), true},
		{"parentheses", "SELECT " + strings.Repeat("(", 30000) + "1" + strings.Repeat(")", 30000), true},
		{"casts", "SELECT 1" + strings.Repeat("::int", 30000), true},
		{"IN list", "SELECT v FROM t WHERE id IN (" + strings.Repeat("1, ", 30000) + "1)", false},
		{"AND chain", "SELECT v FROM t WHERE " + strings.Repeat("a = 1 AND ", 20000) + "true", false},
		{"short", "SELECT 1+1+1", false},
	} {
		a := cachepolicy.Analyze(tt.sql)
		if deep := a.ParseError != nil && a.InvalidateAll; deep != tt.deep {
			t.Errorf("%s: refused as too deep = %v (%v); want %v", tt.name, deep, a.ParseError, tt.deep)
		}
	}
}

func TestAnalyzeReloadConf(t *testing.T) {
	for _, sql := range []string{"SELECT pg_reload_conf()", "SELECT pg_catalog.pg_reload_conf()"} {
		if !cachepolicy.Analyze(sql).CatalogChange {
			t.Errorf("Analyze(%q).CatalogChange = false; want true: server defaults change", sql)
		}
	}
}

func TestAnalyzeTransaction(t *testing.T) {
	for _, tt := range []struct {
		sql  string
		want bool
	}{
		{"SET a.b = 1", false},
		{"BEGIN", true},
		{"BEGIN; SET search_path = b; ROLLBACK", true},
		{"SET a.b = 1; COMMIT", true},
		{"SAVEPOINT s", true},
		{"SELECT 1; SELECT 2", false},
	} {
		if got := cachepolicy.Analyze(tt.sql).Transaction; got != tt.want {
			t.Errorf("Analyze(%q).Transaction = %v; want %v", tt.sql, got, tt.want)
		}
	}
}

func TestAnalyzeSession(t *testing.T) {
	for _, tt := range sessionTests {
		t.Run(tt.sql, func(t *testing.T) {
			a := cachepolicy.Analyze(tt.sql)
			if a.ParseError != nil {
				t.Fatalf("Analyze(%q): %v", tt.sql, a.ParseError)
			}
			if diff := cmp.Diff(tt.want, a.Session); diff != "" {
				t.Errorf("Session (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadsClock(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"now", true}, {" NOW ", true}, {"Today", true}, {"tomorrow 10:00", true},
		{"{now,epoch}", true}, {"yesterday", true},
		{"", false}, {"epoch", false}, {"2024-01-01", false}, {"snowman", false}, {"nowhere", false},
	}
	for _, tt := range tests {
		if got := cachepolicy.ReadsClock(tt.s); got != tt.want {
			t.Errorf("ReadsClock(%q) = %v; want %v", tt.s, got, tt.want)
		}
	}
}

func TestSessionEffectKindString(t *testing.T) {
	if got, want := cachepolicy.SetConfigCall.String(), "SetConfigCall"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if got, want := cachepolicy.SessionEffectKind(99).String(), "SessionEffectKind(99)"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func BenchmarkAnalyze(b *testing.B) {
	const sql = `SELECT o.id, o.total, c.name, count(i.id) AS items
		FROM orders o
		JOIN customers c ON c.id = o.customer_id
		LEFT JOIN order_items i ON i.order_id = o.id
		WHERE o.customer_id = $1 AND o.status = ANY($2)
		GROUP BY o.id, c.name
		ORDER BY o.created_at DESC
		LIMIT 20`
	b.ReportAllocs()
	b.SetBytes(int64(len(sql)))
	for b.Loop() {
		if a := cachepolicy.Analyze(sql); !a.Candidate {
			b.Fatal(a.Reason)
		}
	}
}

func TestAnalyzeOpensBlock(t *testing.T) {
	tests := []struct {
		sql  string
		want bool
	}{
		{"BEGIN", true},
		{"begin transaction", true},
		{"BEGIN WORK READ ONLY", true},
		{"START TRANSACTION READ WRITE, NOT DEFERRABLE", true},
		{"BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY", true},
		{"begin isolation level read uncommitted", true},
		{"BEGIN ISOLATION LEVEL REPEATABLE READ", false},
		{"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE", false},
		{"BEGIN; SELECT 1", false},
		{"COMMIT", false},
		{"SAVEPOINT a", false},
		{"SET TRANSACTION ISOLATION LEVEL READ COMMITTED", false},
		{"SELECT 1", false},
	}
	for _, tt := range tests {
		if got := cachepolicy.Analyze(tt.sql).OpensBlock; got != tt.want {
			t.Errorf("Analyze(%q).OpensBlock = %v; want %v", tt.sql, got, tt.want)
		}
	}
}
