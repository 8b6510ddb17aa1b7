package integration

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Tests of session state and cache keys: each makes two sessions that
// PostgreSQL would answer differently and checks that sqlcache gives them
// different keys, against what PostgreSQL itself returns.

// rsSetup creates, as the superuser, tables t in public, a and b (one row
// naming its schema each, readable by everyone), and docs with a row
// security policy on current_user (app sees "app doc", md5user "md5 doc";
// app may SET ROLE md5user).
func rsSetup(t *testing.T, pg *Postgres, sc *Sqlcache, extra ...string) {
	t.Helper()
	for _, stmt := range append([]string{
		`CREATE SCHEMA a`, `CREATE SCHEMA b`,
		`CREATE TABLE public.t (v text)`, `CREATE TABLE a.t (v text)`, `CREATE TABLE b.t (v text)`,
		`INSERT INTO public.t VALUES ('from public')`,
		`INSERT INTO a.t VALUES ('from a')`, `INSERT INTO b.t VALUES ('from b')`,
		`GRANT USAGE ON SCHEMA a, b TO PUBLIC`, `GRANT SELECT ON public.t, a.t, b.t TO PUBLIC`,
		`CREATE TABLE docs (owner text, body text)`,
		`INSERT INTO docs VALUES ('app', 'app doc'), ('md5user', 'md5 doc')`,
		`ALTER TABLE docs ENABLE ROW LEVEL SECURITY`,
		`CREATE POLICY own ON docs USING (owner = current_user)`,
		`GRANT SELECT ON docs TO app, md5user`,
		`GRANT md5user TO app`,
	}, extra...) {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
}

// rsSimple connects to sqlcache as user with the simple protocol, plus
// extra URL parameters.
func rsSimple(t *testing.T, sc *Sqlcache, user, password string, params ...string) *pgx.Conn {
	t.Helper()
	return connect(t, sc.URL(user, password, "postgres", append([]string{"default_query_exec_mode=simple_protocol"}, params...)...))
}

// rsQuery runs sql (one or several statements) as one simple Query.
func rsQuery(t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.PgConn().Exec(t.Context(), sql).ReadAll(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// rsOne reads one text value.
func rsOne(t *testing.T, c *pgx.Conn, q string) string {
	t.Helper()
	var s string
	if err := c.QueryRow(t.Context(), q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

const (
	rsQT    = `SELECT string_agg(v, ',' ORDER BY v) FROM t`
	rsQDocs = `SELECT string_agg(body, ',' ORDER BY body) FROM docs`
)

// TestSessionKeysSetLocalOutsideBlock: SET LOCAL outside a transaction
// block does nothing (PostgreSQL warns "SET LOCAL can only be used in
// transaction blocks"): SET LOCAL ROLE and SET LOCAL x TO DEFAULT must
// leave the session's key alone, or its answers are filed under another
// role's (or setting's) key.
func TestSessionKeysSetLocalOutsideBlock(t *testing.T) {
	pg, sc := startCache(t, nil)
	rsSetup(t, pg, sc)

	t.Run("set_local_role", func(t *testing.T) {
		// A: SET LOCAL ROLE is a no-op; A is still app and reads app's row,
		// which sqlcache files under the key of role md5user.
		a := rsSimple(t, sc, "app", "")
		rsQuery(t, a, `SET LOCAL ROLE md5user`)
		if got := rsOne(t, a, `SELECT current_user::text`); got != "app" {
			t.Fatalf("current_user after SET LOCAL ROLE outside a block = %q; PostgreSQL says app", got)
		}
		if got := rsOne(t, a, rsQDocs); got != "app doc" {
			t.Fatalf("A (still app) read %q; want app doc", got)
		}
		// B really is md5user.
		b := rsSimple(t, sc, "app", "")
		rsQuery(t, b, `SET ROLE md5user`)
		for i := range 2 {
			if got := rsOne(t, b, rsQDocs); got != "md5 doc" {
				t.Errorf("read %d after SET ROLE md5user = %q; PostgreSQL returns %q (A's answer, cached under role md5user)", i, got, "md5 doc")
			}
		}
	})
	t.Run("set_local_to_default", func(t *testing.T) {
		// A: search_path b; SET LOCAL search_path TO DEFAULT is a no-op,
		// but sqlcache drops set:search_path from A's key.
		a := rsSimple(t, sc, "app", "")
		rsQuery(t, a, `SET search_path TO b`)
		rsQuery(t, a, `SET LOCAL search_path TO DEFAULT`)
		if got := rsOne(t, a, rsQT); got != "from b" {
			t.Fatalf("A read %q; want from b", got)
		}
		c := rsSimple(t, sc, "app", "")
		for i := range 2 {
			if got := rsOne(t, c, rsQT); got != "from public" {
				t.Errorf("read %d of a session on the default search_path = %q; PostgreSQL returns %q", i, got, "from public")
			}
		}
	})
}

// TestSessionKeysRolledBackInOneQuery: a simple Query holding its own
// BEGIN ... ROLLBACK ends idle and without error, yet its SET and DISCARD
// TEMP were undone: sqlcache must not follow them (Analysis.Transaction).
func TestSessionKeysRolledBackInOneQuery(t *testing.T) {
	pg, sc := startCache(t, nil)
	rsSetup(t, pg, sc)

	t.Run("set_rolled_back", func(t *testing.T) {
		a := rsSimple(t, sc, "app", "")
		rsQuery(t, a, `BEGIN; SET search_path TO b; ROLLBACK`)
		if got := rsOne(t, a, `SHOW search_path`); got != `"$user", public` {
			t.Fatalf("search_path after the rollback = %q", got)
		}
		// A reads public.t, filed under the key of search_path b.
		if got := rsOne(t, a, rsQT); got != "from public" {
			t.Fatalf("A read %q; want from public", got)
		}
		b := rsSimple(t, sc, "app", "")
		rsQuery(t, b, `SET search_path TO b`)
		for i := range 2 {
			if got := rsOne(t, b, rsQT); got != "from b" {
				t.Errorf("read %d with search_path b = %q; PostgreSQL returns %q", i, got, "from b")
			}
		}
	})
	t.Run("discard_temp_rolled_back", func(t *testing.T) {
		// Another session has public.t's answer cached (the plan is
		// decided while no temporary t exists).
		other := rsSimple(t, sc, "app", "")
		for range 2 {
			if got := rsOne(t, other, rsQT); got != "from public" {
				t.Fatalf("other read %q", got)
			}
		}
		a := rsSimple(t, sc, "app", "")
		rsQuery(t, a, `CREATE TEMP TABLE t (v text)`)
		// Writes t by name: drops the cached answers of t.
		rsQuery(t, a, `INSERT INTO t VALUES ('temp secret of A')`)
		rsQuery(t, a, `BEGIN; DISCARD TEMP; ROLLBACK`)
		waitApplied(t, sc)
		// A's temporary table survived the rollback; sqlcache thinks it
		// is gone and caches A's read of it.
		if got := rsOne(t, a, rsQT); got != "temp secret of A" {
			t.Fatalf("A read %q; want its own temporary table", got)
		}
		for i := range 2 {
			if got := rsOne(t, other, rsQT); got != "from public" {
				t.Errorf("read %d of another session = %q; PostgreSQL returns %q", i, got, "from public")
			}
		}
	})
}

// TestSessionKeysSetConfigRoleThenResetAll: SELECT set_config('role',
// 'md5user', false) is SET ROLE, and PostgreSQL's RESET ALL leaves the
// role alone (GUC_NO_RESET_ALL), whether it was set that way or by a DO
// block: the session keeps its role's key.
func TestSessionKeysSetConfigRoleThenResetAll(t *testing.T) {
	pg, sc := startCache(t, nil)
	rsSetup(t, pg, sc)

	plain := rsSimple(t, sc, "app", "")
	for range 2 {
		if got := rsOne(t, plain, rsQDocs); got != "app doc" {
			t.Fatalf("plain app read %q", got)
		}
	}
	for name, change := range map[string][]string{
		// set_config('role') is filed as "set:role", which RESET ALL drops.
		"set_config_role": {`SELECT set_config('role', 'md5user', false)`, `RESET ALL`},
		// A DO block leaves the settings unknown; RESET ALL in the same
		// string marks them known again before any read-back, though the
		// role the block set survives it.
		"do_set_role_reset_all_one_query": {`DO $$ BEGIN SET ROLE md5user; END $$; RESET ALL`},
	} {
		t.Run(name, func(t *testing.T) {
			a := rsSimple(t, sc, "app", "")
			for _, sql := range change {
				rsQuery(t, a, sql)
			}
			if got := rsOne(t, a, `SELECT current_user::text`); got != "md5user" {
				t.Fatalf("current_user after RESET ALL = %q; PostgreSQL keeps md5user", got)
			}
			for i := range 2 {
				if got := rsOne(t, a, rsQDocs); got != "md5 doc" {
					t.Errorf("read %d as md5user (%v) = %q; PostgreSQL returns %q", i, change, got, "md5 doc")
				}
			}
			// And what A filled under the plain key reaches plain app.
			for i := range 2 {
				if got := rsOne(t, plain, rsQDocs); got != "app doc" {
					t.Errorf("read %d of a plain app session = %q; PostgreSQL returns %q", i, got, "app doc")
				}
			}
		})
	}
}

// TestSessionKeysFunctionCreatesTempTable: a function that creates a
// temporary table makes the session read its settings back, which finds
// the table: the session, whose table shadows public.t, stays off the
// cache, and never fills it with its temporary rows for the others.
func TestSessionKeysFunctionCreatesTempTable(t *testing.T) {
	pg, sc := startCache(t, nil)
	rsSetup(t, pg, sc,
		`CREATE FUNCTION public.scratch() RETURNS void LANGUAGE plpgsql AS $$
		 BEGIN CREATE TEMP TABLE t AS SELECT 'temp secret of A'::text AS v; END $$`)

	other := rsSimple(t, sc, "app", "")
	for range 2 {
		if got := rsOne(t, other, rsQT); got != "from public" {
			t.Fatalf("other read %q", got)
		}
	}
	a := rsSimple(t, sc, "app", "")
	rsQuery(t, a, `SELECT public.scratch()`)
	waitApplied(t, sc)
	if got := rsOne(t, a, rsQT); got != "temp secret of A" {
		t.Errorf("A, whose temporary t shadows public.t, read %q; PostgreSQL returns %q", got, "temp secret of A")
	}
	// A write of public.t elsewhere drops the cached answer; A refills it.
	pg.Exec(t, `INSERT INTO public.t VALUES ('from public 2')`)
	waitApplied(t, sc)
	if got := rsOne(t, a, rsQT); got != "temp secret of A" {
		t.Fatalf("A read %q", got)
	}
	for i := range 2 {
		if got := rsOne(t, other, rsQT); got != "from public,from public 2" {
			t.Errorf("read %d of another session = %q; PostgreSQL returns %q", i, got, "from public,from public 2")
		}
	}
}

// TestSessionKeysAlterRoleSetOldSession: ALTER ROLE … SET search_path
// applies to new sessions only, and PostgreSQL 15 does not report
// search_path: a session opened before keeps the old one, so sessions
// opened before and after must not share answers (loginKey).
func TestSessionKeysAlterRoleSetOldSession(t *testing.T) {
	pg, sc := startCache(t, nil)
	rsSetup(t, pg, sc)

	old := rsSimple(t, sc, "app", "")
	if got := rsOne(t, old, rsQT); got != "from public" {
		t.Fatalf("old session read %q", got)
	}
	admin := rsSimple(t, sc, "postgres", "")
	rsQuery(t, admin, `ALTER ROLE app SET search_path = b`)
	// The old session keeps its search_path and refills the cache.
	if got := rsOne(t, old, rsQT); got != "from public" {
		t.Fatalf("old session read %q", got)
	}
	direct := connect(t, pg.URL("app", "", "postgres"))
	if got := rsOne(t, direct, rsQT); got != "from b" {
		t.Fatalf("a new session directly on PostgreSQL read %q", got)
	}
	fresh := rsSimple(t, sc, "app", "")
	if got := rsOne(t, fresh, `SHOW search_path`); got != "b" {
		t.Fatalf("new session's search_path = %q", got)
	}
	for i := range 2 {
		if got := rsOne(t, fresh, rsQT); got != "from b" {
			t.Errorf("read %d of a session opened after ALTER ROLE app SET search_path = b: %q; PostgreSQL returns %q", i, got, "from b")
		}
	}
}

// TestSessionKeysAlterRoleSetDirect: ALTER ROLE … SET made directly on
// the database is seen by the catalog check. A session that logged in
// before it keeps the old settings; one that logged in around it (before
// the check saw it) may have either and stops using the cache; one that
// logs in after the check is cached under the new settings.
func TestSessionKeysAlterRoleSetDirect(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"cache": map[string]any{"catalog_check": "1s"}})
	rsSetup(t, pg, sc)
	old := rsSimple(t, sc, "app", "")
	for range 2 {
		if got := rsOne(t, old, rsQT); got != "from public" {
			t.Fatalf("old session read %q", got)
		}
	}
	pg.Exec(t, `ALTER ROLE app SET search_path = b`)
	around := rsSimple(t, sc, "app", "")
	time.Sleep(3 * time.Second) // two catalog checks
	after := rsSimple(t, sc, "app", "")
	for i := range 2 {
		for _, c := range []struct {
			name string
			conn *pgx.Conn
			want string
		}{{"old", old, "from public"}, {"around", around, "from b"}, {"after", after, "from b"}} {
			if got := rsOne(t, c.conn, rsQT); got != c.want {
				t.Errorf("read %d of the session that logged in %s the change: %q; PostgreSQL returns %q", i, c.name, got, c.want)
			}
		}
	}
	before := metricValue(t, sc, "sqlcache_cache_hits_total")
	rsOne(t, after, rsQT)
	if metricValue(t, sc, "sqlcache_cache_hits_total") == before {
		t.Errorf("a session that logged in after the check was not answered from the cache")
	}
}

// TestSessionKeysPreparedStatementKeepsOldTable: a prepared statement
// keeps the table it resolved to when a table of the same name is created
// in a schema earlier on its search_path (PostgreSQL re-parses it only when
// an object it uses changes, or search_path does): its answers must not
// reach a fresh parse of the same text, which resolves to the new table,
// as pgx's statement cache in a long-lived connection would make them.
func TestSessionKeysPreparedStatementKeepsOldTable(t *testing.T) {
	pg, sc := startCache(t, nil)
	rsSetup(t, pg, sc, `CREATE SCHEMA s1`, `GRANT USAGE ON SCHEMA s1 TO PUBLIC`)
	params := []string{"search_path=s1,public", "default_query_exec_mode=cache_statement"}
	old := connect(t, sc.URL("app", "", "postgres", params...))
	if got := rsOne(t, old, rsQT); got != "from public" {
		t.Fatalf("old session read %q", got)
	}
	admin := rsSimple(t, sc, "postgres", "")
	rsQuery(t, admin, `CREATE TABLE s1.t (v text)`)
	rsQuery(t, admin, `INSERT INTO s1.t VALUES ('from s1')`)
	rsQuery(t, admin, `GRANT SELECT ON s1.t TO PUBLIC`)
	waitApplied(t, sc)
	// The old session's prepared statement still reads public.t, in
	// PostgreSQL, and refills the cache.
	if got := rsOne(t, old, rsQT); got != "from public" {
		t.Fatalf("old session's prepared statement read %q; PostgreSQL keeps public.t", got)
	}
	direct := connect(t, pg.URL("app", "", "postgres", params...))
	if got := rsOne(t, direct, rsQT); got != "from s1" {
		t.Fatalf("a new session directly on PostgreSQL read %q", got)
	}
	fresh := connect(t, sc.URL("app", "", "postgres", params...))
	for i := range 2 {
		if got := rsOne(t, fresh, rsQT); got != "from s1" {
			t.Errorf("read %d of a new session = %q; PostgreSQL returns %q", i, got, "from s1")
		}
	}
}

// TestSessionKeysFunctionSetAfterComment: whether a user-defined
// function may change settings is a text test on its source
// (functionsSQL, setsPattern); a comment line between BEGIN and SET, as
// in the commonest style of PL/pgSQL, must not hide it.
func TestSessionKeysFunctionSetAfterComment(t *testing.T) {
	pg, sc := startCache(t, nil)
	rsSetup(t, pg, sc,
		`CREATE FUNCTION public.enter_b() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  -- enter tenant b's schema
  SET search_path = b;
END $$`)

	a := rsSimple(t, sc, "app", "")
	for range 2 {
		if got := rsOne(t, a, rsQT); got != "from public" {
			t.Fatalf("A read %q", got)
		}
	}
	rsQuery(t, a, `SELECT public.enter_b()`)
	waitApplied(t, sc)
	if got := rsOne(t, a, `SHOW search_path`); got != "b" {
		t.Fatalf("search_path after enter_b() = %q", got)
	}
	for i := range 2 {
		if got := rsOne(t, a, rsQT); got != "from b" {
			t.Errorf("read %d after enter_b() = %q; PostgreSQL returns %q", i, got, "from b")
		}
	}
}
