package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestCacheNeverLeaks: sessions that would get different answers from
// Postgres never share a cached one: different search_path, TimeZone,
// roles (GRANTs and row-level security), SET ROLE, and startup options.
func TestCacheNeverLeaks(t *testing.T) {
	pg, sc := startCache(t, nil)
	for _, stmt := range []string{
		`CREATE SCHEMA a`, `CREATE SCHEMA b`,
		`CREATE TABLE a.t (v text)`, `CREATE TABLE b.t (v text)`,
		`INSERT INTO a.t VALUES ('from a')`, `INSERT INTO b.t VALUES ('from b')`,
		`GRANT USAGE ON SCHEMA a, b TO PUBLIC`, `GRANT SELECT ON a.t, b.t TO PUBLIC`,
		`CREATE TABLE docs (owner text, body text)`,
		`INSERT INTO docs VALUES ('app', 'app doc'), ('md5user', 'md5 doc')`,
		`ALTER TABLE docs ENABLE ROW LEVEL SECURITY`,
		`CREATE POLICY own ON docs USING (owner = current_user)`,
		`GRANT SELECT ON docs TO app, md5user`,
		`GRANT md5user TO app`,
		`CREATE TABLE stamps (at timestamptz)`,
		`INSERT INTO stamps VALUES ('2024-01-01 12:00:00+00')`,
		`GRANT SELECT ON stamps TO PUBLIC`,
	} {
		pg.Exec(t, stmt)
	}
	one := func(t *testing.T, conn *pgx.Conn, q string) string {
		t.Helper()
		var s string
		if err := conn.QueryRow(t.Context(), q).Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return s
	}
	twice := func(t *testing.T, conn *pgx.Conn, q, want string) {
		t.Helper()
		for range 2 {
			if got := one(t, conn, q); got != want {
				t.Errorf("%s = %q; want %q", q, got, want)
			}
		}
	}
	// membership makes what setup makes, reads q (a count) as app, one
	// row, then runs remove directly on the database and reads no row:
	// the policy of q's table reads a membership that no statement names.
	membership := func(t *testing.T, setup []string, q, remove string) *pgx.Conn {
		t.Helper()
		for _, stmt := range setup {
			pg.Exec(t, stmt)
		}
		waitApplied(t, sc)
		app := connect(t, sc.URL("app", "", "postgres"))
		twice(t, app, q, "1")
		pg.Exec(t, remove)
		if got := one(t, app, q); got != "0" {
			t.Errorf("after %s: %s = %s; want 0", remove, q, got)
		}
		return app
	}

	t.Run("search_path", func(t *testing.T) {
		ca := connect(t, sc.URL("app", "", "postgres"))
		cb := connect(t, sc.URL("app", "", "postgres"))
		if _, err := ca.Exec(t.Context(), `SET search_path TO a`); err != nil {
			t.Fatal(err)
		}
		if _, err := cb.Exec(t.Context(), `SET search_path = b, public`); err != nil {
			t.Fatal(err)
		}
		twice(t, ca, `SELECT v FROM t`, "from a")
		twice(t, cb, `SELECT v FROM t`, "from b")
		// search_path in the startup packet, as PgBouncer's CVE-2025-12819.
		cs := connect(t, sc.URL("app", "", "postgres", "search_path=b"))
		twice(t, cs, `SELECT v FROM t`, "from b")
		co := connect(t, sc.URL("app", "", "postgres", "options=-csearch_path=a"))
		twice(t, co, `SELECT v FROM t`, "from a")
	})
	t.Run("timezone", func(t *testing.T) {
		utc := connect(t, sc.URL("app", "", "postgres", "timezone=UTC"))
		tokyo := connect(t, sc.URL("app", "", "postgres", "timezone=UTC"))
		if _, err := tokyo.Exec(t.Context(), `SET TimeZone = 'Asia/Tokyo'`); err != nil {
			t.Fatal(err)
		}
		const q = `SELECT at::text FROM stamps`
		twice(t, utc, q, "2024-01-01 12:00:00+00")
		twice(t, tokyo, q, "2024-01-01 21:00:00+09")
	})
	t.Run("row_level_security", func(t *testing.T) {
		app := connect(t, sc.URL("app", "", "postgres"))
		md5 := connect(t, sc.URL("md5user", "md5pass", "postgres"))
		const q = `SELECT string_agg(body, ',') FROM docs`
		twice(t, app, q, "app doc")
		twice(t, md5, q, "md5 doc")
		// SET ROLE changes whose rows a session sees.
		if _, err := app.Exec(t.Context(), `SET ROLE md5user`); err != nil {
			t.Fatal(err)
		}
		twice(t, app, q, "md5 doc")
		if _, err := app.Exec(t.Context(), `RESET ROLE`); err != nil {
			t.Fatal(err)
		}
		twice(t, app, q, "app doc")
	})
	t.Run("grants", func(t *testing.T) {
		pg.Exec(t, `CREATE TABLE secret (v text)`)
		pg.Exec(t, `INSERT INTO secret VALUES ('hidden')`)
		pg.Exec(t, `GRANT SELECT ON secret TO app`)
		app := connect(t, sc.URL("app", "", "postgres"))
		twice(t, app, `SELECT v FROM secret`, "hidden")
		other := connect(t, sc.URL("scramuser", "scrampass", "postgres"))
		var v string
		err := other.QueryRow(t.Context(), `SELECT v FROM secret`).Scan(&v)
		if pgCode(err) != "42501" {
			t.Errorf("a role without the GRANT got %q, %v; want permission denied (42501)", v, err)
		}
		// REVOKE through the proxy invalidates: app is refused now.
		admin := connect(t, sc.URL("postgres", "", "postgres"))
		if _, err := admin.Exec(t.Context(), `REVOKE SELECT ON secret FROM app`); err != nil {
			t.Fatal(err)
		}
		err = app.QueryRow(t.Context(), `SELECT v FROM secret`).Scan(&v)
		if pgCode(err) != "42501" {
			t.Errorf("after REVOKE: %q, %v; want permission denied (42501)", v, err)
		}
	})
	t.Run("set_config", func(t *testing.T) {
		// set_config changes the session behind any SET sqlcache can
		// see; from then on the session must not use the cache.
		c := connect(t, sc.URL("app", "", "postgres", "default_query_exec_mode=simple_protocol"))
		if _, err := c.Exec(t.Context(), `SET search_path TO a`); err != nil {
			t.Fatal(err)
		}
		twice(t, c, `SELECT v FROM t`, "from a")
		if _, err := c.Exec(t.Context(), `SELECT set_config('search_path', 'b', false)`); err != nil {
			t.Fatal(err)
		}
		twice(t, c, `SELECT v FROM t`, "from b")
	})
	t.Run("set_in_transaction", func(t *testing.T) {
		c := connect(t, sc.URL("app", "", "postgres"))
		if _, err := c.Exec(t.Context(), `SET search_path TO a`); err != nil {
			t.Fatal(err)
		}
		twice(t, c, `SELECT v FROM t`, "from a")
		tx, err := c.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(t.Context(), `SET search_path TO b`); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		twice(t, c, `SELECT v FROM t`, "from b")
	})
	t.Run("function_sets_settings", func(t *testing.T) {
		// A function the application calls to enter a tenant's schema
		// changes the session as set_config does, out of sqlcache's
		// sight: the session must stop using the cache, whether the
		// function sets it itself, through another function or in a
		// standard SQL body, and whether the statement calls it or a
		// trigger or column default of a table it writes does. A
		// function that only writes does not.
		for _, stmt := range []string{
			`CREATE TABLE counter (id int PRIMARY KEY, n int)`,
			`INSERT INTO counter VALUES (1, 0)`,
			`GRANT SELECT, UPDATE ON counter TO app`,
			`CREATE FUNCTION public.use_schema(s text) RETURNS void LANGUAGE plpgsql AS $$
			 BEGIN PERFORM set_config('search_path', s, false); END $$`,
			`CREATE FUNCTION public.enter(s text) RETURNS void LANGUAGE sql AS $$ SELECT public.use_schema(s) $$`,
			`CREATE FUNCTION public.enter_std(s text) RETURNS text LANGUAGE sql
			 BEGIN ATOMIC SELECT set_config('search_path', s, false); END`,
			`CREATE FUNCTION public.bump() RETURNS int LANGUAGE plpgsql AS $$
			 BEGIN UPDATE public.counter SET n = n + 1 WHERE id = 1; RETURN 1; END $$`,
			`CREATE FUNCTION public.enter_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
			 BEGIN PERFORM set_config('search_path', 'b', false); RETURN NEW; END $$`,
			`CREATE TABLE public.visits (id int)`,
			`CREATE TRIGGER enter AFTER INSERT ON public.visits FOR EACH ROW EXECUTE FUNCTION public.enter_on_insert()`,
			`CREATE TABLE public.stamped (id int, mark text DEFAULT public.enter_std('b'))`,
			`GRANT INSERT ON public.visits, public.stamped TO app`,
		} {
			pg.Exec(t, stmt)
		}
		waitApplied(t, sc)
		for _, tc := range []struct{ name, call, mode string }{
			{"plpgsql", `SELECT public.use_schema('b')`, "simple_protocol"},
			{"through another function", `SELECT public.enter('b')`, "cache_statement"},
			{"standard SQL body", `SELECT public.enter_std('b')`, "cache_statement"},
			{"trigger", `INSERT INTO public.visits VALUES (1)`, "cache_statement"},
			{"column default", `INSERT INTO public.stamped (id) VALUES (1)`, "simple_protocol"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := connect(t, sc.URL("app", "", "postgres", "default_query_exec_mode="+tc.mode))
				if _, err := c.Exec(t.Context(), `SET search_path TO a`); err != nil {
					t.Fatal(err)
				}
				twice(t, c, `SELECT v FROM t`, "from a")
				if _, err := c.Exec(t.Context(), tc.call); err != nil {
					t.Fatal(err)
				}
				twice(t, c, `SELECT v FROM t`, "from b")
			})
		}
		// explain says so beforehand; the log, when it happens.
		for sql, want := range map[string]string{
			`SELECT public.use_schema('b')`:                "session:   use_schema may change the session's settings",
			`INSERT INTO public.visits VALUES (1)`:         "session:   enter_on_insert may change",
			`SELECT public.bump()`:                         "",
			`UPDATE public.counter SET n = 0 WHERE id = 1`: "",
		} {
			out, code := RunSqlcache(t, "explain", "--config", sc.ConfigFile, sql)
			if code != 0 || want != "" && !strings.Contains(out, want) || want == "" && strings.Contains(out, "session:") {
				t.Errorf("explain %q: exit %d:\n%s\nwant %q in it", sql, code, out, want)
			}
		}
		if out := sc.Output(); !strings.Contains(out, `why="ran use_schema, which may change settings"`) {
			t.Errorf("no log line naming use_schema as why a session bypasses the cache:\n%s", out)
		}
		c := connect(t, sc.URL("app", "", "postgres"))
		if _, err := c.Exec(t.Context(), `SET search_path TO a`); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(t.Context(), `SELECT public.bump()`); err != nil {
			t.Fatal(err)
		}
		// bump wrote: the session's next hit waits for the stream (at most
		// max_lag, then it relays). Let the stream catch up first.
		waitApplied(t, sc)
		hits := metricValue(t, sc, "sqlcache_cache_hits_total")
		twice(t, c, `SELECT v FROM t`, "from a")
		if got := metricValue(t, sc, "sqlcache_cache_hits_total") - hits; got < 1 {
			t.Errorf("after a function that only writes, the session's reads were not cached")
		}
	})
	t.Run("policy_reads_application_name", func(t *testing.T) {
		// application_name is left out of keys, so that sessions of
		// differently named processes share answers; a policy reading it
		// keeps its table's answers out of the cache.
		for _, stmt := range []string{
			`CREATE TABLE by_app (app text, body text)`,
			`INSERT INTO by_app VALUES ('one', 'for one'), ('two', 'for two')`,
			`ALTER TABLE by_app ENABLE ROW LEVEL SECURITY`,
			`CREATE POLICY mine ON by_app USING (app = current_setting('application_name'))`,
			`GRANT SELECT ON by_app TO app`,
		} {
			pg.Exec(t, stmt)
		}
		waitApplied(t, sc)
		const q = `SELECT coalesce(string_agg(body, ','), '') FROM by_app`
		one := connect(t, sc.URL("app", "", "postgres", "application_name=one"))
		two := connect(t, sc.URL("app", "", "postgres", "application_name=two"))
		twice(t, one, q, "for one")
		twice(t, two, q, "for two")
	})
	t.Run("policy_uses_operator", func(t *testing.T) {
		// A user-defined operator in a policy runs its function, which
		// may read a table as a subquery would.
		app := membership(t, []string{
			`CREATE TABLE op_members (member text PRIMARY KEY)`,
			`INSERT INTO op_members VALUES ('app')`,
			`CREATE FUNCTION is_member(owner text, who text) RETURNS bool STABLE LANGUAGE sql
			   AS 'SELECT EXISTS (SELECT 1 FROM op_members WHERE member = who)'`,
			`CREATE OPERATOR <~> (FUNCTION = is_member, LEFTARG = text, RIGHTARG = text)`,
			`CREATE TABLE member_docs (owner text, body text)`,
			`INSERT INTO member_docs VALUES ('x', 'member doc')`,
			`ALTER TABLE member_docs ENABLE ROW LEVEL SECURITY`,
			`CREATE POLICY members_only ON member_docs USING (owner <~> (CURRENT_USER)::text)`,
			`GRANT SELECT ON member_docs, op_members TO app`,
		}, `SELECT count(*)::text FROM member_docs`, `DELETE FROM op_members WHERE member = 'app'`)
		// An IMMUTABLE one leaves the policy's answers cacheable.
		for _, stmt := range []string{
			`CREATE FUNCTION same_lower(a text, b text) RETURNS bool IMMUTABLE LANGUAGE sql AS 'SELECT lower(a) = lower(b)'`,
			`CREATE OPERATOR =~~= (FUNCTION = same_lower, LEFTARG = text, RIGHTARG = text)`,
			`CREATE TABLE lower_docs (owner text, body text)`,
			`INSERT INTO lower_docs VALUES ('APP', 'mine')`,
			`ALTER TABLE lower_docs ENABLE ROW LEVEL SECURITY`,
			`CREATE POLICY mine ON lower_docs USING (owner =~~= (CURRENT_USER)::text)`,
			`GRANT SELECT ON lower_docs TO app`,
		} {
			pg.Exec(t, stmt)
		}
		waitApplied(t, sc)
		hits := metricValue(t, sc, "sqlcache_cache_hits_total")
		twice(t, app, `SELECT string_agg(body, ',') FROM lower_docs`, "mine")
		if got := metricValue(t, sc, "sqlcache_cache_hits_total") - hits; got != 1 {
			t.Errorf("reads of a table whose policy uses an IMMUTABLE operator: %v hits; want 1", got)
		}
	})
	t.Run("policy_reads_other_table", func(t *testing.T) {
		// The policy is a dependency no statement names: removing app from
		// the team must hide the document at once, as it does on the
		// database. A policy on the row and the role alone (docs, above)
		// keeps its answers cached.
		app := membership(t, []string{
			`CREATE TABLE members (team int, member text, PRIMARY KEY (team, member))`,
			`INSERT INTO members VALUES (1, 'app')`,
			`CREATE TABLE teamdocs (id int PRIMARY KEY, team int, body text)`,
			`INSERT INTO teamdocs VALUES (1, 1, 'team doc')`,
			`ALTER TABLE teamdocs ENABLE ROW LEVEL SECURITY`,
			`CREATE POLICY member ON teamdocs USING (team IN (SELECT team FROM members WHERE member = current_user))`,
			`GRANT SELECT ON teamdocs, members TO app`,
		}, `SELECT count(*)::text FROM teamdocs`, `DELETE FROM members WHERE member = 'app'`)
		hits := metricValue(t, sc, "sqlcache_cache_hits_total")
		twice(t, app, `SELECT string_agg(body, ',') FROM docs`, "app doc")
		if got := metricValue(t, sc, "sqlcache_cache_hits_total") - hits; got < 1 {
			t.Errorf("reads of docs, whose policy compares the row with the role, were not cached")
		}
		// A policy on a setting keeps tenants apart by the session's SET,
		// which is in the key: cached, and not shared.
		pg.Exec(t, `CREATE TABLE tenantdocs (id int PRIMARY KEY, tenant text, body text)`)
		pg.Exec(t, `INSERT INTO tenantdocs VALUES (1, 'a', 'doc of a'), (2, 'b', 'doc of b')`)
		pg.Exec(t, `ALTER TABLE tenantdocs ENABLE ROW LEVEL SECURITY`)
		pg.Exec(t, `CREATE POLICY tenant ON tenantdocs USING (tenant = current_setting('app.tenant', true))`)
		pg.Exec(t, `GRANT SELECT ON tenantdocs TO app`)
		waitApplied(t, sc)
		ta := connect(t, sc.URL("app", "", "postgres"))
		tb := connect(t, sc.URL("app", "", "postgres"))
		for c, tenant := range map[*pgx.Conn]string{ta: "a", tb: "b"} {
			if _, err := c.Exec(t.Context(), `SET app.tenant = '`+tenant+`'`); err != nil {
				t.Fatal(err)
			}
		}
		const tq = `SELECT string_agg(body, ',') FROM tenantdocs`
		hits = metricValue(t, sc, "sqlcache_cache_hits_total")
		twice(t, ta, tq, "doc of a")
		twice(t, tb, tq, "doc of b")
		if got := metricValue(t, sc, "sqlcache_cache_hits_total") - hits; got != 2 {
			t.Errorf("reads under a policy on current_setting: %v cache hits; want 2", got)
		}
	})
	t.Run("temp_table_shadows", func(t *testing.T) {
		c := connect(t, sc.URL("app", "", "postgres"))
		other := connect(t, sc.URL("app", "", "postgres", "search_path=a"))
		if _, err := c.Exec(t.Context(), `SET search_path TO a`); err != nil {
			t.Fatal(err)
		}
		twice(t, c, `SELECT v FROM t`, "from a")
		twice(t, other, `SELECT v FROM t`, "from a")
		if _, err := c.Exec(t.Context(), `CREATE TEMP TABLE t (v text)`); err != nil {
			t.Fatal(err)
		}
		// Another session cannot see the temporary table: its a.t is
		// still what it reads, and still a cache hit (no planning again
		// for a catalog change that is not its own).
		hits := metricValue(t, sc, "sqlcache_cache_hits_total")
		twice(t, other, `SELECT v FROM t`, "from a")
		if got := metricValue(t, sc, "sqlcache_cache_hits_total") - hits; got != 2 {
			t.Errorf("another session's two reads after a CREATE TEMP TABLE: %v cache hits; want 2", got)
		}
		if _, err := c.Exec(t.Context(), `INSERT INTO t VALUES ('from temp')`); err != nil {
			t.Fatal(err)
		}
		twice(t, c, `SELECT v FROM t`, "from temp")
		twice(t, other, `SELECT v FROM t`, "from a")
	})
}

// TestCacheRulesAndAdmin covers cache.rules (never, per-table TTL), the
// admin /cache report, POST /cache/invalidate and sqlcache explain.
// TestSettingsReadBack checks the multi-tenant pattern: a pooled
// connection enters a tenant with set_config($1) (or a function that
// calls it, or SET inside a transaction), which sqlcache cannot follow
// from the statement alone, and reads a table whose row security policy
// reads that setting. sqlcache reads the session's settings back, so the
// connection keeps using the cache, each tenant under its own key, and an
// unnamed statement the client prepared before survives the read-back.
func TestSettingsReadBack(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"cache": map[string]any{"catalog_check": "200ms"}})
	for _, stmt := range []string{
		`CREATE TABLE tenant_docs (id int PRIMARY KEY, tenant text, body text)`,
		`INSERT INTO tenant_docs VALUES (1, 't1', 'doc of t1'), (2, 't2', 'doc of t2')`,
		`ALTER TABLE tenant_docs ENABLE ROW LEVEL SECURITY`,
		`CREATE POLICY by_tenant ON tenant_docs USING (tenant = current_setting('app.tenant', true))`,
		`GRANT SELECT ON tenant_docs TO app`,
		`CREATE FUNCTION enter_tenant(t text) RETURNS text LANGUAGE plpgsql AS $$
		 BEGIN PERFORM set_config('app.tenant', t, false); RETURN t; END $$`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	const q = `SELECT coalesce(string_agg(body, ','), '') FROM tenant_docs`
	hits := func() float64 { return metricValue(t, sc, "sqlcache_cache_hits_total") }
	read := func(c *pgx.Conn) string {
		t.Helper()
		var s string
		if err := c.QueryRow(t.Context(), q).Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return s
	}
	readBacks := func() float64 {
		return metricValue(t, sc, `sqlcache_session_settings_read_back_total{result="ok"}`)
	}
	// reads reads q three times on c, wanting want each time and a cache
	// hit the last time: the first read after a change of settings that
	// is read back is relayed (the read-back is still in flight), the
	// next one filled.
	reads := func(c *pgx.Conn, want string) {
		t.Helper()
		var h float64
		for i := range 3 {
			if i == 2 {
				h = hits()
			}
			if got := read(c); got != want {
				t.Fatalf("read %d: %q; want %q", i, got, want)
			}
		}
		if got := hits() - h; got != 1 {
			t.Errorf("the third read was not a cache hit (%v hits)", got)
		}
	}
	c := connect(t, sc.URL("app", "", "postgres"))
	// The client's own unnamed statement, parsed once and bound again
	// later, as drivers do; a function's effects on settings are read
	// back.
	if _, err := c.PgConn().Prepare(t.Context(), "", `SELECT enter_tenant($1)`, nil); err != nil {
		t.Fatal(err)
	}
	enter := func(tenant string) {
		t.Helper()
		res := c.PgConn().ExecPrepared(t.Context(), "", [][]byte{[]byte(tenant)}, nil, nil).Read()
		if res.Err != nil {
			t.Fatalf("enter_tenant(%q) on the unnamed statement: %v", tenant, res.Err)
		}
	}
	n := readBacks()
	enter("t1")
	reads(c, "doc of t1")
	enter("t2")
	// The read-back goes out before this Bind of the unnamed statement,
	// which its Query destroyed on the backend.
	enter("t1")
	reads(c, "doc of t1")
	if got := readBacks() - n; got != 3 {
		t.Errorf("%v read-backs after three calls of enter_tenant; want one after each", got)
	}
	// SELECT set_config('app.tenant', $1, false) is followed from its
	// Bind, as SET is: no read-back, and the next read is a hit when the
	// tenant's answer is cached.
	n = readBacks()
	setTenant := func(tenant string) {
		t.Helper()
		if _, err := c.Exec(t.Context(), `SELECT set_config('app.tenant', $1, false)`, tenant); err != nil {
			t.Fatal(err)
		}
	}
	setTenant("t2")
	reads(c, "doc of t2")
	setTenant("t1")
	h := hits()
	if got := read(c); got != "doc of t1" {
		t.Fatalf("back in t1: %q", got)
	}
	if hits()-h != 1 {
		t.Errorf("the first read after set_config($1) was not a cache hit")
	}
	if got := readBacks() - n; got != 0 {
		t.Errorf("set_config($1) was read back %v times; want it followed from its Bind", got)
	}
	// SET inside a transaction block is read back after it.
	n = readBacks()
	tx, err := c.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), `SET app.tenant = 't2'`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	reads(c, "doc of t2")
	if got := readBacks() - n; got != 1 {
		t.Errorf("%v read-backs after SET in a transaction; want 1", got)
	}
	// A session that SETs the same tenant shares the answers.
	other := connect(t, sc.URL("app", "", "postgres"))
	if _, err := other.Exec(t.Context(), `SET app.tenant = 't2'`); err != nil {
		t.Fatal(err)
	}
	h = hits()
	if got := read(other); got != "doc of t2" {
		t.Fatalf("another session in t2: %q", got)
	}
	if hits()-h != 1 {
		t.Errorf("another session in t2 did not get the cached answer of the first")
	}

	// A read-back asks for the custom settings that policies read. A
	// policy made later may read one it did not ask about, which two
	// sessions have set differently: they must read their settings back
	// again, whether the policy was made through sqlcache or directly
	// (noticed by the next access check).
	admin := connect(t, sc.URL("postgres", "", "postgres"))
	for _, tc := range []struct {
		setting string
		create  func(stmt string)
	}{
		{"app.region", func(stmt string) {
			if _, err := admin.Exec(t.Context(), stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}},
		{"app.team", func(stmt string) { pg.Exec(t, stmt) }},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			table := strings.ReplaceAll(tc.setting, ".", "_")
			sessions := map[string]*pgx.Conn{}
			for _, v := range []string{"x", "y"} {
				c := connect(t, sc.URL("app", "", "postgres"))
				if _, err := c.Exec(t.Context(), `SELECT set_config($1, $2, false)`, tc.setting, v); err != nil {
					t.Fatal(err)
				}
				read(c) // the read-back goes out ahead of it
				sessions[v] = c
			}
			checks := metricValue(t, sc, `sqlcache_catalog_access_checks_total{result="ok"}`)
			for _, stmt := range []string{
				`CREATE TABLE ` + table + ` (k text, body text)`,
				`INSERT INTO ` + table + ` VALUES ('x', 'row of x'), ('y', 'row of y')`,
				`ALTER TABLE ` + table + ` ENABLE ROW LEVEL SECURITY`,
				`CREATE POLICY by_setting ON ` + table + ` USING (k = current_setting('` + tc.setting + `', true))`,
				`GRANT SELECT ON ` + table + ` TO app`,
			} {
				tc.create(stmt)
			}
			waitApplied(t, sc)
			waitUntil(t, 10*time.Second, "two access checks", func() bool {
				return metricValue(t, sc, `sqlcache_catalog_access_checks_total{result="ok"}`) >= checks+2
			})
			rq := `SELECT coalesce(string_agg(body, ','), '') FROM ` + table
			for range 3 {
				for v, c := range sessions {
					var got string
					if err := c.QueryRow(t.Context(), rq).Scan(&got); err != nil {
						t.Fatal(err)
					}
					if want := "row of " + v; got != want {
						t.Fatalf("session with %s = %s: %q; want %q", tc.setting, v, got, want)
					}
				}
			}
		})
	}

	// A read-back that fails (here: app may not read pg_policy) is not
	// seen by the client, whose request is answered; the session keeps
	// off the cache, and is not served another tenant's rows.
	pg.Exec(t, `REVOKE SELECT ON pg_catalog.pg_policy FROM PUBLIC`) // last: the database is thrown away
	denied := connect(t, sc.URL("app", "", "postgres"))
	failed := metricValue(t, sc, `sqlcache_session_settings_read_back_total{result="failed"}`)
	for _, tenant := range []string{"t1", "t2"} {
		if _, err := denied.Exec(t.Context(), `SELECT enter_tenant($1)`, tenant); err != nil {
			t.Fatal(err)
		}
		h := hits()
		for range 2 {
			if got, want := read(denied), "doc of "+tenant; got != want {
				t.Fatalf("in %s after a failed read-back: %q; want %q", tenant, got, want)
			}
		}
		if hits() != h {
			t.Errorf("in %s after a failed read-back: served from the cache", tenant)
		}
	}
	if got := metricValue(t, sc, `sqlcache_session_settings_read_back_total{result="failed"}`) - failed; got != 2 {
		t.Errorf("%v failed read-backs; want 2", got)
	}
}

func TestCacheRulesAndAdmin(t *testing.T) {
	// Without the change stream, TTLs alone bound writes made behind
	// sqlcache's back, which is what this test watches.
	pg, sc := startCache(t, map[string]any{
		"cache": map[string]any{
			"rules": []any{
				map[string]any{"table": "public.audit_log", "cache": "never"},
				map[string]any{"table": "public.board", "ttl": "300ms"},
				map[string]any{"query": "(?i)^select .* from reports", "ttl": "60s"},
				// One key of a shape: the other texts of the shape are
				// cached, this one never.
				map[string]any{"query": "FROM keyed WHERE id = 7$", "cache": "never"},
			},
		},
		"invalidation": map[string]any{"postgres": map[string]any{"mode": "none"}},
	})
	pg.Exec(t, `CREATE TABLE audit_log (v int)`)
	pg.Exec(t, `CREATE TABLE board (v int)`)
	pg.Exec(t, `CREATE TABLE reports (v int)`)
	pg.Exec(t, `INSERT INTO audit_log VALUES (1)`)
	pg.Exec(t, `INSERT INTO board VALUES (1)`)
	pg.Exec(t, `INSERT INTO reports VALUES (1)`)
	pg.Exec(t, `CREATE TABLE keyed (id int PRIMARY KEY, v int)`)
	pg.Exec(t, `INSERT INTO keyed VALUES (7, 1), (8, 1), (9, 1)`)
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	get := func(q string) int {
		var v int
		if err := conn.QueryRow(t.Context(), q).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	get(`SELECT v FROM audit_log`)
	get(`SELECT v FROM board`)
	get(`SELECT v FROM reports`)
	// Texts of one shape, the one the rule names after another.
	get(`SELECT v FROM keyed WHERE id = 8`)
	get(`SELECT v FROM keyed WHERE id = 7`)
	get(`SELECT v FROM keyed WHERE id = 9`)
	// Writes behind sqlcache's back (no change stream yet): only TTLs
	// and rules bound what is served.
	pg.Exec(t, `UPDATE audit_log SET v = 2`)
	pg.Exec(t, `UPDATE board SET v = 2`)
	pg.Exec(t, `UPDATE reports SET v = 2`)
	pg.Exec(t, `UPDATE keyed SET v = 2`)
	for id, want := range map[int]int{7: 2, 8: 1, 9: 1} {
		if v := get(fmt.Sprintf(`SELECT v FROM keyed WHERE id = %d`, id)); v != want {
			t.Errorf("keyed id %d = %d; want %d (only id 7 is never cached)", id, v, want)
		}
	}
	if v := get(`SELECT v FROM audit_log`); v != 2 {
		t.Errorf("audit_log (cache: never) = %d; want 2", v)
	}
	if v := get(`SELECT v FROM reports`); v != 1 {
		t.Errorf("reports = %d; want the cached 1 (60s TTL): the rule did not cache it", v)
	}
	time.Sleep(400 * time.Millisecond)
	if v := get(`SELECT v FROM board`); v != 2 {
		t.Errorf("board (ttl 300ms) after 400ms = %d; want 2", v)
	}

	var rep struct {
		Entries int     `json:"entries"`
		Hits    uint64  `json:"hits"`
		Ratio   float64 `json:"hit_ratio"`
		Top     []struct {
			Query string `json:"query"`
			Hits  uint64 `json:"hits"`
		} `json:"top"`
	}
	body, err := sc.adminGet("/cache")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("/cache: %v\n%s", err, body)
	}
	if rep.Entries == 0 || rep.Hits == 0 || len(rep.Top) == 0 || !strings.Contains(body, "FROM reports") {
		t.Errorf("/cache report lacks the cached reports query:\n%s", body)
	}

	resp, err := http.Post("http://"+sc.AdminAddr+"/cache/invalidate?database=postgres&table=reports", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := get(`SELECT v FROM reports`); v != 2 {
		t.Errorf("reports after POST /cache/invalidate = %d; want 2", v)
	}

	// A statement that is not cached has no TTL to show.
	for _, tc := range []struct{ sql, want, absent string }{
		{`SELECT v FROM reports`, "cacheable: yes", ""},
		{`SELECT v FROM board`, "ttl:       300ms", ""},
		{`SELECT v FROM audit_log`, "rule", "ttl:"},
		{`SELECT now()`, "cacheable: no", "ttl:"},
		{`SELECT v FROM board FOR UPDATE`, "FOR UPDATE", "ttl:"},
		{`UPDATE board SET v = 3`, "writes:    board", "ttl:"},
	} {
		out, code := RunSqlcache(t, "explain", "--config", sc.ConfigFile, "--database", "postgres", tc.sql)
		if code != 0 || !strings.Contains(out, tc.want) || (tc.absent != "" && strings.Contains(out, tc.absent)) {
			t.Errorf("explain %q: exit %d, output:\n%s\nwant it to contain %q and not %q", tc.sql, code, out, tc.want, tc.absent)
		}
	}
}

// TestStampede: many sessions miss the same slow query at once; one runs
// it and the others get its answer.
func TestStampede(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE hot (v int)`)
	pg.Exec(t, `INSERT INTO hot VALUES (7)`)
	pg.Exec(t, `CREATE FUNCTION slow_id(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.5); RETURN $1; END $$`)
	waitApplied(t, sc)
	const n = 8
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		conns[i] = connect(t, sc.URL("postgres", "", "postgres"))
		// Plan the statement first (catalog lookups) so the misses line up.
		if _, err := conns[i].Exec(t.Context(), `SELECT 1 FROM hot WHERE false`); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var v int
			if err := c.QueryRow(context.Background(), `SELECT slow_id(v) FROM hot`).Scan(&v); err != nil || v != 7 {
				t.Errorf("got %d, %v; want 7", v, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	misses := metricValue(t, sc, "sqlcache_cache_misses_total")
	waits := metricValue(t, sc, "sqlcache_cache_stampede_waits_total")
	if misses > 2 || waits < n-2 {
		t.Errorf("misses = %v, stampede waits = %v; want about 1 and %d\n%s", misses, waits, n-1, cacheMetrics(t, sc))
	}
}

// TestAccessChangedBehindSqlcache: privileges, role and server settings,
// view and function definitions, columns, partitions, and the tables and
// functions names resolve to, changed directly on the database, where
// sqlcache cannot see the DDL (it is not in the change stream), drop the
// answers cached under the old ones within cache.catalog_check; DDL that
// changes none of these does not.
func TestAccessChangedBehindSqlcache(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"cache": map[string]any{"catalog_check": "200ms"}})
	for _, stmt := range []string{
		`CREATE SCHEMA a`, `CREATE SCHEMA b`,
		`CREATE TABLE a.t (v text)`, `CREATE TABLE b.t (v text)`,
		`INSERT INTO a.t VALUES ('from a')`, `INSERT INTO b.t VALUES ('from b')`,
		`GRANT USAGE ON SCHEMA a, b TO app, pwuser`, `GRANT SELECT ON a.t, b.t TO app, pwuser`,
		`CREATE TABLE secret (id int PRIMARY KEY, v text)`,
		`INSERT INTO secret VALUES (1, 'hidden')`,
		`GRANT SELECT ON secret TO app`,
		`CREATE TABLE pub (v text)`, `INSERT INTO pub VALUES ('open')`,
		`GRANT SELECT ON pub TO PUBLIC`,
		`ALTER ROLE app SET search_path = a, public`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	hits := func() float64 { return metricValue(t, sc, "sqlcache_cache_hits_total") }
	read := func(t *testing.T, conn *pgx.Conn, q string) (string, error) {
		t.Helper()
		var v string
		err := conn.QueryRow(t.Context(), q).Scan(&v)
		return v, err
	}
	// answer polls q on conn for eventually: its value, or the SQLSTATE
	// it fails with.
	answer := func(t *testing.T, conn *pgx.Conn, q string) func() (string, error) {
		return func() (string, error) {
			v, err := read(t, conn, q)
			if err != nil {
				return pgCode(err), nil
			}
			return v, nil
		}
	}
	// fresh polls q on a new connection each time: a statement a session
	// has prepared keeps the table and function its names resolved to
	// when it was prepared, in PostgreSQL as through sqlcache.
	fresh := func(t *testing.T, q string) func() (string, error) {
		return func() (string, error) {
			c := connect(t, sc.URL("app", "", "postgres"))
			defer c.Close(t.Context())
			return answer(t, c, q)()
		}
	}
	// Many checks (catalog_check is 200ms) fit in the limit.
	const limit = 10 * time.Second
	// cached reads q twice and checks that the second read is a hit. The
	// stream is let catch up first: one further behind than max_lag (a
	// loaded CI machine) has reads relayed.
	cached := func(t *testing.T, conn *pgx.Conn, q, want string) {
		t.Helper()
		for i := range 2 {
			waitApplied(t, sc)
			h := hits()
			v, err := read(t, conn, q)
			if err != nil || v != want {
				t.Fatalf("%s = %q, %v; want %q", q, v, err, want)
			}
			if i == 1 && hits()-h != 1 {
				t.Fatalf("%s the second time was not a cache hit:\n%s", q, cacheMetrics(t, sc))
			}
		}
	}
	// pubCached checks that app's answer of pub, cached before, is still
	// a hit: what happened since (what) dropped other answers only.
	pubCached := func(t *testing.T, app *pgx.Conn, what string) {
		t.Helper()
		h := hits()
		if v, err := read(t, app, `SELECT v FROM pub`); err != nil || v != "open" {
			t.Fatalf("pub = %q, %v", v, err)
		}
		if hits()-h != 1 {
			t.Errorf("%s dropped pub's cached answer too", what)
		}
	}
	// A first read opens the database's service connection: from then on
	// the access checks run.
	if _, err := read(t, connect(t, sc.URL("app", "", "postgres")), `SELECT v FROM pub`); err != nil {
		t.Fatal(err)
	}
	// checked waits until two access checks have run: the second began
	// after whatever DDL came before the call, and has seen it.
	checked := func(t *testing.T) {
		t.Helper()
		const series = `sqlcache_catalog_access_checks_total{result="ok"}`
		n := metricValue(t, sc, series)
		waitUntil(t, limit, "two access checks", func() bool { return metricValue(t, sc, series) >= n+2 })
	}

	// table makes table name (v text) with a row of each value, readable
	// by app, and waits until the stream and two checks have seen it.
	table := func(t *testing.T, name string, values ...string) {
		t.Helper()
		pg.Exec(t, `CREATE TABLE `+name+` (v text)`)
		for _, v := range values {
			pg.Exec(t, `INSERT INTO `+name+` VALUES ('`+v+`')`)
		}
		pg.Exec(t, `GRANT SELECT ON `+name+` TO app`)
		waitApplied(t, sc)
		checked(t)
	}

	t.Run("unrelated_ddl", func(t *testing.T) {
		app := connect(t, sc.URL("app", "", "postgres"))
		cached(t, app, `SELECT v FROM pub`, "open")
		pg.Exec(t, `CREATE TABLE unrelated (x int)`)
		pg.Exec(t, `ANALYZE pub`)
		pg.Exec(t, `TRUNCATE unrelated`)
		// Temporary tables come and go with their sessions; a lookup
		// that finds one (pub is looked up again after each check) does
		// not watch it.
		scratch := connect(t, sc.URL("app", "", "postgres"))
		if _, err := scratch.Exec(t.Context(), `CREATE TEMP TABLE pub (v text)`); err != nil {
			t.Fatal(err)
		}
		checked(t)
		if v, err := read(t, app, `SELECT v FROM pub`); err != nil || v != "open" {
			t.Fatalf("pub = %q, %v", v, err)
		}
		scratch.Close(t.Context())
		// The backend drops the table after the client has gone; until
		// then it may shadow pub, whose reads are not cached meanwhile.
		waitUntil(t, limit, "the temporary pub dropped", func() bool {
			var n int
			err := pg.Conn(t).QueryRow(t.Context(), `SELECT count(*) FROM pg_class WHERE relname = 'pub' AND relpersistence = 't'`).Scan(&n)
			return err == nil && n == 0
		})
		waitApplied(t, sc)
		checked(t)
		pubCached(t, app, "creating, analyzing and truncating other tables, or temporary ones,")
	})
	t.Run("revoke", func(t *testing.T) {
		checked(t)
		app := connect(t, sc.URL("app", "", "postgres"))
		const q = `SELECT v FROM secret WHERE id = 1`
		cached(t, app, q, "hidden")
		pg.Exec(t, `REVOKE SELECT ON secret FROM app`)
		eventually(t, limit, answer(t, app, q), "42501") // permission denied
		if n := metricValue(t, sc, `sqlcache_cache_invalidations_total{cause="catalog"}`); n < 1 {
			t.Errorf("sqlcache_cache_invalidations_total{cause=\"catalog\"} = %v; want at least 1", n)
		}
	})
	t.Run("new_table_revoked", func(t *testing.T) {
		// No check runs between the table's first read and the REVOKE
		// here (usually): the read itself must have taken note.
		pg.Exec(t, `CREATE TABLE fresh (id int PRIMARY KEY, v text)`)
		pg.Exec(t, `INSERT INTO fresh VALUES (1, 'new')`)
		pg.Exec(t, `GRANT SELECT ON fresh TO app`)
		waitApplied(t, sc)
		app := connect(t, sc.URL("app", "", "postgres"))
		const q = `SELECT v FROM public.fresh WHERE id = 1`
		cached(t, app, q, "new")
		pg.Exec(t, `REVOKE SELECT ON fresh FROM app`)
		eventually(t, limit, answer(t, app, q), "42501")
	})
	t.Run("role_search_path", func(t *testing.T) {
		// ALTER ROLE … SET applies to sessions that start later; nothing
		// of it reaches sqlcache (search_path is not reported).
		app := connect(t, sc.URL("app", "", "postgres"))
		cached(t, app, `SELECT v FROM t`, "from a")
		pg.Exec(t, `ALTER ROLE app SET search_path = b, public`)
		eventually(t, limit, func() (string, error) {
			c := connect(t, sc.URL("app", "", "postgres"))
			defer c.Close(t.Context())
			return read(t, c, `SELECT v FROM t`)
		}, "from b")
	})
	t.Run("view_redefined", func(t *testing.T) {
		pg.Exec(t, `CREATE VIEW shown AS SELECT v FROM pub`)
		pg.Exec(t, `GRANT SELECT ON shown TO app`)
		checked(t)
		app := connect(t, sc.URL("app", "", "postgres"))
		cached(t, app, `SELECT v FROM public.shown`, "open")
		pg.Exec(t, `CREATE OR REPLACE VIEW shown AS SELECT upper(v) AS v FROM pub`)
		eventually(t, limit, answer(t, app, `SELECT v FROM public.shown`), "OPEN")
	})
	t.Run("view_security_invoker", func(t *testing.T) {
		// From then on the view reads its table with the reader's
		// privileges, not its owner's: app has none on the table.
		pg.Exec(t, `CREATE TABLE behind (v text)`)
		pg.Exec(t, `INSERT INTO behind VALUES ('seen')`)
		pg.Exec(t, `CREATE VIEW front AS SELECT v FROM behind`)
		pg.Exec(t, `GRANT SELECT ON front TO app`)
		waitApplied(t, sc)
		checked(t)
		app := connect(t, sc.URL("app", "", "postgres"))
		cached(t, app, `SELECT v FROM public.front`, "seen")
		pg.Exec(t, `ALTER VIEW front SET (security_invoker = true)`)
		eventually(t, limit, answer(t, app, `SELECT v FROM public.front`), "42501")
	})
	t.Run("column_added", func(t *testing.T) {
		// ADD COLUMN with a default rewrites no rows: nothing reaches the
		// change stream.
		table(t, "wide", "open")
		app := connect(t, sc.URL("app", "", "postgres"))
		const q = `SELECT * FROM public.wide`
		columns := func() (int, error) {
			rows, err := app.Query(t.Context(), q)
			if err != nil {
				return 0, err
			}
			rows.Close()
			return len(rows.FieldDescriptions()), rows.Err()
		}
		for range 2 {
			if n, err := columns(); n != 1 || err != nil {
				t.Fatalf("%s: %d columns, %v; want 1", q, n, err)
			}
		}
		h := hits()
		columns()
		if hits()-h != 1 {
			t.Fatalf("%s was not cached", q)
		}
		pg.Exec(t, `ALTER TABLE wide ADD COLUMN extra int DEFAULT 7`)
		eventually(t, limit, func() (string, error) {
			n, err := columns()
			return fmt.Sprint(n), err
		}, "2")
	})
	t.Run("rewritten", func(t *testing.T) {
		// ALTER COLUMN … TYPE with USING rewrites every row, the type
		// and so the column's description unchanged; the stream carries
		// no row of it. The table's new storage is the sign.
		table(t, "public.rewritten", "x")
		app := connect(t, sc.URL("app", "", "postgres"))
		const q = `SELECT string_agg(v, ',') FROM public.rewritten`
		cached(t, app, q, "x")
		cached(t, app, `SELECT v FROM pub`, "open")
		pg.Exec(t, `ALTER TABLE public.rewritten ALTER COLUMN v TYPE text USING v || v`)
		eventually(t, limit, answer(t, app, q), "xx")
		pubCached(t, app, "rewriting another table")
	})
	t.Run("set_unlogged", func(t *testing.T) {
		// An unlogged table's writes are not in the change stream: its
		// reads stop being cached when the plans are refreshed at the
		// next check.
		table(t, "journal", "logged")
		app := connect(t, sc.URL("app", "", "postgres"))
		const q = `SELECT v FROM public.journal`
		cached(t, app, q, "logged")
		pg.Exec(t, `ALTER TABLE journal SET UNLOGGED`)
		checked(t)
		pg.Exec(t, `UPDATE journal SET v = 'unlogged'`)
		eventually(t, limit, answer(t, app, q), "unlogged")
	})
	t.Run("enum_value_renamed", func(t *testing.T) {
		pg.Exec(t, `CREATE TYPE mood AS ENUM ('sad', 'happy')`)
		pg.Exec(t, `CREATE TABLE moods (id int PRIMARY KEY, m mood)`)
		pg.Exec(t, `INSERT INTO moods VALUES (1, 'sad')`)
		pg.Exec(t, `GRANT SELECT ON moods TO app`)
		waitApplied(t, sc)
		checked(t)
		app := connect(t, sc.URL("app", "", "postgres"))
		const q = `SELECT m::text FROM public.moods WHERE id = 1`
		cached(t, app, q, "sad")
		pg.Exec(t, `ALTER TYPE mood RENAME VALUE 'sad' TO 'blue'`)
		eventually(t, limit, answer(t, app, q), "blue")
	})
	t.Run("function_redefined", func(t *testing.T) {
		pg.Exec(t, `CREATE FUNCTION public.rate() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 7'`)
		checked(t)
		app := connect(t, sc.URL("app", "", "postgres"))
		const q = `SELECT v || public.rate() FROM public.pub`
		cached(t, app, q, "open7")
		pg.Exec(t, `CREATE OR REPLACE FUNCTION public.rate() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 8'`)
		eventually(t, limit, answer(t, app, q), "open8")
	})
	t.Run("partition_attached", func(t *testing.T) {
		// A table attached as a partition, or as an inheritance child,
		// brings its rows into the parent's answers without a row change.
		for _, stmt := range []string{
			`CREATE TABLE parts (k int PRIMARY KEY) PARTITION BY RANGE (k)`,
			`CREATE TABLE parts_lo PARTITION OF parts FOR VALUES FROM (0) TO (100)`,
			`CREATE TABLE parts_hi (k int PRIMARY KEY)`,
			`INSERT INTO parts VALUES (1)`, `INSERT INTO parts_hi VALUES (100), (101)`,
			`CREATE TABLE kin (k int)`, `CREATE TABLE kin_child (k int)`,
			`ALTER TABLE kin REPLICA IDENTITY FULL`, `ALTER TABLE kin_child REPLICA IDENTITY FULL`,
			`INSERT INTO kin_child VALUES (1), (2)`,
			`GRANT SELECT ON parts, kin TO app`,
		} {
			pg.Exec(t, stmt)
		}
		waitApplied(t, sc)
		checked(t)
		app := connect(t, sc.URL("app", "", "postgres"))
		cached(t, app, `SELECT count(*)::text FROM public.parts`, "1")
		cached(t, app, `SELECT count(*)::text FROM public.kin`, "0")
		pg.Exec(t, `ALTER TABLE parts ATTACH PARTITION parts_hi FOR VALUES FROM (100) TO (200)`)
		pg.Exec(t, `ALTER TABLE kin_child INHERIT kin`)
		eventually(t, limit, answer(t, app, `SELECT count(*)::text FROM public.parts`), "3")
		eventually(t, limit, answer(t, app, `SELECT count(*)::text FROM public.kin`), "2")
		checked(t)
		cached(t, app, `SELECT count(*)::text FROM public.parts`, "3")
		// A partition's own TRUNCATE is not in the stream, which publishes
		// partitions as their root. It drops parts' answers, not pub's.
		cached(t, app, `SELECT v FROM pub`, "open")
		pg.Exec(t, `TRUNCATE parts_hi`)
		eventually(t, limit, answer(t, app, `SELECT count(*)::text FROM public.parts`), "1")
		pubCached(t, app, "a partition's TRUNCATE")
		checked(t)
		cached(t, app, `SELECT count(*)::text FROM public.parts`, "1")
		pg.Exec(t, `ALTER TABLE parts DETACH PARTITION parts_lo`)
		eventually(t, limit, answer(t, app, `SELECT count(*)::text FROM public.parts`), "0")
	})
	t.Run("table_swapped", func(t *testing.T) {
		// Load a new table, then swap it in by renaming: the rows were
		// written under the other name, and renames are not in the stream.
		table(t, "prices", "old")
		app := connect(t, sc.URL("app", "", "postgres"))
		cached(t, app, `SELECT v FROM public.prices`, "old")
		pg.Exec(t, `CREATE TABLE prices_new (v text)`)
		pg.Exec(t, `INSERT INTO prices_new VALUES ('new')`)
		pg.Exec(t, `GRANT SELECT ON prices_new TO app`)
		pg.Exec(t, `BEGIN; ALTER TABLE prices RENAME TO prices_old; ALTER TABLE prices_new RENAME TO prices; COMMIT`)
		eventually(t, limit, answer(t, app, `SELECT v FROM public.prices`), "new")
	})
	t.Run("dropped_and_created", func(t *testing.T) {
		table(t, "batch", "gone")
		app := connect(t, sc.URL("app", "", "postgres"))
		cached(t, app, `SELECT count(*)::text FROM public.batch`, "1")
		pg.Exec(t, `DROP TABLE batch`)
		pg.Exec(t, `CREATE TABLE batch (v text)`)
		pg.Exec(t, `GRANT SELECT ON batch TO app`)
		eventually(t, limit, answer(t, app, `SELECT count(*)::text FROM public.batch`), "0")
	})
	t.Run("shadowed", func(t *testing.T) {
		// app's search_path is b, public: a table made in b hides public's.
		table(t, "public.listed", "public")
		app := connect(t, sc.URL("app", "", "postgres"))
		cached(t, app, `SELECT count(*)::text FROM listed`, "1")
		cached(t, app, `SELECT v FROM pub`, "open")
		pg.Exec(t, `CREATE TABLE b.listed (v text)`)
		pg.Exec(t, `GRANT SELECT ON b.listed TO app`)
		eventually(t, limit, fresh(t, `SELECT count(*)::text FROM listed`), "0")
		pubCached(t, app, "a new table named listed")
	})
	t.Run("schemas_swapped", func(t *testing.T) {
		for _, stmt := range []string{
			`CREATE SCHEMA live`, `CREATE SCHEMA staging`,
			`CREATE TABLE live.item (v text)`, `CREATE TABLE staging.item (v text)`,
			`INSERT INTO live.item VALUES ('old')`, `INSERT INTO staging.item VALUES ('new')`,
			`GRANT USAGE ON SCHEMA live, staging TO app`, `GRANT SELECT ON live.item, staging.item TO app`,
		} {
			pg.Exec(t, stmt)
		}
		waitApplied(t, sc)
		checked(t)
		url := sc.URL("app", "", "postgres", "search_path=live")
		cached(t, connect(t, url), `SELECT v FROM item`, "old")
		pg.Exec(t, `BEGIN; ALTER SCHEMA live RENAME TO retired; ALTER SCHEMA staging RENAME TO live; COMMIT`)
		eventually(t, limit, func() (string, error) {
			c := connect(t, url)
			defer c.Close(t.Context())
			return answer(t, c, `SELECT v FROM item`)()
		}, "new")
	})
	t.Run("role_renamed", func(t *testing.T) {
		// Keys carry the login role's name; once renamed, the session's
		// current_user is the new name, and the policy reads that.
		for _, stmt := range []string{
			`CREATE ROLE clerk LOGIN`,
			`CREATE TABLE ledger (owner text, v text)`,
			`INSERT INTO ledger VALUES ('clerk', 'entry')`,
			`ALTER TABLE ledger ENABLE ROW LEVEL SECURITY`,
			`CREATE POLICY mine ON ledger USING (owner = current_user)`,
			`GRANT SELECT ON ledger TO PUBLIC`,
		} {
			pg.Exec(t, stmt)
		}
		waitApplied(t, sc)
		checked(t)
		clerk := connect(t, sc.URL("clerk", "", "postgres"))
		const q = `SELECT count(*)::text FROM public.ledger`
		cached(t, clerk, q, "1")
		pg.Exec(t, `ALTER ROLE clerk RENAME TO old_clerk`)
		eventually(t, limit, answer(t, clerk, q), "0")
	})
	t.Run("overload_created", func(t *testing.T) {
		pg.Exec(t, `CREATE FUNCTION public.pick(numeric) RETURNS text IMMUTABLE LANGUAGE sql AS $$SELECT 'numeric'$$`)
		checked(t)
		app := connect(t, sc.URL("app", "", "postgres"))
		const q = `SELECT v || public.pick(1) FROM public.pub`
		cached(t, app, q, "opennumeric")
		pg.Exec(t, `CREATE FUNCTION public.pick(int) RETURNS text IMMUTABLE LANGUAGE sql AS $$SELECT 'int'$$`)
		eventually(t, limit, fresh(t, q), "openint")
	})
	t.Run("operator_overload_created", func(t *testing.T) {
		pg.Exec(t, `CREATE FUNCTION public.same_num(int, numeric) RETURNS text IMMUTABLE LANGUAGE sql AS $$SELECT 'numeric'$$`)
		pg.Exec(t, `CREATE OPERATOR public.=== (FUNCTION = public.same_num, LEFTARG = int, RIGHTARG = numeric)`)
		checked(t)
		app := connect(t, sc.URL("app", "", "postgres"))
		const q = `SELECT v || (1 === 1) FROM public.pub`
		cached(t, app, q, "opennumeric")
		// An exact match for (int, int) is now what 1 === 1 means.
		pg.Exec(t, `CREATE FUNCTION public.same_int(int, int) RETURNS text IMMUTABLE LANGUAGE sql AS $$SELECT 'int'$$`)
		pg.Exec(t, `CREATE OPERATOR public.=== (FUNCTION = public.same_int, LEFTARG = int, RIGHTARG = int)`)
		eventually(t, limit, fresh(t, q), "openint")
	})
	t.Run("server_search_path", func(t *testing.T) {
		// A default from postgresql.conf (ALTER SYSTEM, reload) applies to
		// every session that has not set its own, the running ones too.
		pg.Exec(t, `ALTER SYSTEM SET search_path = a, public`)
		pg.Exec(t, `SELECT pg_reload_conf()`)
		pw := connect(t, sc.URL("pwuser", "pwpass", "postgres"))
		eventually(t, limit, answer(t, pw, `SELECT v FROM t`), "from a")
		checked(t)
		pw = connect(t, sc.URL("pwuser", "pwpass", "postgres"))
		cached(t, pw, `SELECT v FROM t`, "from a")
		pg.Exec(t, `ALTER SYSTEM SET search_path = b, public`)
		pg.Exec(t, `SELECT pg_reload_conf()`)
		eventually(t, limit, answer(t, pw, `SELECT v FROM t`), "from b")
	})
}
