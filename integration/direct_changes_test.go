package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// dcChecked waits until n more access checks (cache.catalog_check) have
// run: the second began after whatever DDL came before the call.
func dcChecked(t *testing.T, sc *Sqlcache, n float64) {
	t.Helper()
	const series = `sqlcache_catalog_access_checks_total{result="ok"}`
	from := metricValue(t, sc, series)
	waitUntil(t, 15*time.Second, "access checks", func() bool { return metricValue(t, sc, series) >= from+n })
}

// dcFresh reads q through sqlcache on a new connection of user, as one
// text: a prepared statement keeps what its names meant when parsed, so
// each poll parses afresh; an error gives its SQLSTATE.
func dcFresh(t *testing.T, sc *Sqlcache, user, password, q string) string {
	t.Helper()
	c := connect(t, sc.URL(user, password, "postgres"))
	defer c.Close(t.Context())
	return dcOne(t, c, q)
}

// dcOne returns q's rows as text, or the SQLSTATE it fails with.
func dcOne(t *testing.T, c *pgx.Conn, q string) string {
	t.Helper()
	rows, err := c.Query(t.Context(), q)
	if err != nil {
		return pgCode(err)
	}
	defer rows.Close()
	var out string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return pgCode(err)
		}
		for _, v := range vals {
			out += toText(v) + "|"
		}
		out += "\n"
	}
	if err := rows.Err(); err != nil {
		return pgCode(err)
	}
	return out
}

func toText(v any) string {
	if v == nil {
		return "NULL"
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// TestDirectChangesFunctionRedefined: README ("Writes from anywhere",
// Limits) promises that "a function's new definition" made directly on
// the database drops the answers that used it by the next
// cache.catalog_check. Definitions that change what an IMMUTABLE function
// returns without changing pg_proc.prosrc are not seen: a body in
// standard SQL (RETURN …, BEGIN ATOMIC, stored in prosqlbody with an
// empty prosrc), a parameter's default value (proargdefaults), STRICT
// (proisstrict), and the definition of a function that the named one
// calls.
func TestDirectChangesFunctionRedefined(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"cache": map[string]any{"catalog_check": "200ms"}})
	pg.Exec(t, `CREATE TABLE pub (id int PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO pub VALUES (1, 'open')`)
	waitApplied(t, sc)
	ctx := t.Context()
	// A first read opens the database's service connection: from then on
	// the access checks run.
	rtRows(t, ctx, connect(t, sc.URL("postgres", "", "postgres")), `SELECT v FROM pub`)
	for _, tc := range []struct {
		name   string
		setup  []string
		read   string
		change string
	}{
		{"sql_standard_return",
			[]string{`CREATE FUNCTION std_rate() RETURNS int IMMUTABLE LANGUAGE sql RETURN 7`},
			`SELECT v || std_rate() FROM pub`,
			`CREATE OR REPLACE FUNCTION std_rate() RETURNS int IMMUTABLE LANGUAGE sql RETURN 8`},
		{"sql_standard_begin_atomic",
			[]string{`CREATE FUNCTION atomic_rate() RETURNS int IMMUTABLE LANGUAGE sql BEGIN ATOMIC SELECT 7; END`},
			`SELECT v || atomic_rate() FROM pub`,
			`CREATE OR REPLACE FUNCTION atomic_rate() RETURNS int IMMUTABLE LANGUAGE sql BEGIN ATOMIC SELECT 8; END`},
		{"default_argument",
			[]string{`CREATE FUNCTION with_tax(price int, rate int DEFAULT 10) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT price + price * rate / 100'`},
			`SELECT v || with_tax(100) FROM pub`,
			`CREATE OR REPLACE FUNCTION with_tax(price int, rate int DEFAULT 20) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT price + price * rate / 100'`},
		{"strict",
			[]string{`CREATE FUNCTION label(x text) RETURNS text IMMUTABLE LANGUAGE sql AS $$SELECT coalesce(x, 'none')$$`},
			`SELECT v || coalesce(label(NULL), '-') FROM pub`,
			`ALTER FUNCTION label(text) STRICT`},
		{"called_function",
			[]string{
				`CREATE FUNCTION base_rate() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 7'`,
				`CREATE FUNCTION shown_rate() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN RETURN base_rate(); END $$`,
			},
			`SELECT v || shown_rate() FROM pub`,
			`CREATE OR REPLACE FUNCTION base_rate() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 8'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range tc.setup {
				pg.Exec(t, s)
			}
			waitApplied(t, sc)
			dcChecked(t, sc, 2)
			conn := connect(t, sc.URL("postgres", "", "postgres"))
			before := rtCached(t, ctx, sc, conn, tc.read)
			pg.Exec(t, tc.change) // directly on PostgreSQL
			direct := pg.Conn(t)
			want := dcOne(t, direct, tc.read)
			if want == before {
				t.Fatalf("%q changes nothing PostgreSQL answers (%q): the case proves nothing", tc.change, want)
			}
			waitApplied(t, sc)
			dcChecked(t, sc, 5) // 1s with catalog_check 200ms: well past the declared bound
			if got := dcFresh(t, sc, "postgres", "", tc.read); got != want {
				t.Errorf("after %q made directly and 5 catalog checks, %s through sqlcache (new connection): %q; PostgreSQL returns %q",
					tc.change, tc.read, got, want)
			}
		})
	}
}

// TestDirectChangesCompositeType: a column of a composite type reads as
// the type's attributes now, not as when the row was written. ALTER TYPE
// … DROP ATTRIBUTE (or ADD) changes every row's value without a row in
// the change stream and without touching the table's pg_attribute, which
// is what the catalog check compares. A migration that drops a sensitive
// attribute keeps serving it from the cache.
func TestDirectChangesCompositeType(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"cache": map[string]any{"catalog_check": "200ms"}})
	for _, s := range []string{
		`CREATE TYPE contact AS (email text, pin text)`,
		`CREATE TABLE people (id int PRIMARY KEY, c contact)`,
		`INSERT INTO people VALUES (1, ROW('ada@example.com', '1234'))`,
	} {
		pg.Exec(t, s)
	}
	waitApplied(t, sc)
	ctx := t.Context()
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	rtRows(t, ctx, conn, `SELECT id FROM people`) // opens the service connection: checks run from then on
	dcChecked(t, sc, 2)
	for _, read := range []string{`SELECT c::text FROM people ORDER BY id`} {
		rtCached(t, ctx, sc, conn, read)
	}
	pg.Exec(t, `ALTER TYPE contact DROP ATTRIBUTE pin`) // directly on PostgreSQL
	waitApplied(t, sc)
	dcChecked(t, sc, 5)
	direct := pg.Conn(t)
	for _, read := range []string{`SELECT c::text FROM people ORDER BY id`} {
		want := dcOne(t, direct, read)
		if got := dcFresh(t, sc, "postgres", "", read); got != want {
			t.Errorf("after ALTER TYPE contact DROP ATTRIBUTE pin made directly and 5 catalog checks, %s through sqlcache: %q; PostgreSQL returns %q", read, got, want)
		}
	}
}

// TestDirectChangesDDLInFunction: DDL run by a user-defined function that
// a client calls through sqlcache (SELECT f(), as pg_partman's
// run_maintenance() or a tenant off-boarding function is called) is DDL
// through sqlcache, which README says invalidates at once; but sqlcache
// only makes the caller's next hit wait for the change stream, which
// carries no DDL. Answers stay until the next catalog check: a role whose
// privilege the function revoked keeps reading the table from the cache,
// and a partition the function detached is still counted. (DO and CALL,
// which may run the same code, drop the database's answers.) The check
// interval is set long: the reads follow the call by milliseconds.
func TestDirectChangesDDLInFunction(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"cache": map[string]any{"catalog_check": "10m"}})
	for _, s := range []string{
		`CREATE TABLE secret (id int PRIMARY KEY, v text)`,
		`INSERT INTO secret VALUES (1, 'hidden')`,
		`GRANT SELECT ON secret TO app`,
		`CREATE FUNCTION offboard(r text) RETURNS void LANGUAGE plpgsql AS $$
		 BEGIN EXECUTE format('REVOKE SELECT ON secret FROM %I', r); END $$`,
		`CREATE TABLE events (id int, day int, PRIMARY KEY (id, day)) PARTITION BY RANGE (day)`,
		`CREATE TABLE events_old PARTITION OF events FOR VALUES FROM (0) TO (100)`,
		`CREATE TABLE events_new PARTITION OF events FOR VALUES FROM (100) TO (200)`,
		`INSERT INTO events VALUES (1, 1), (2, 2), (3, 150)`,
		`CREATE FUNCTION rotate() RETURNS void LANGUAGE plpgsql AS $$
		 BEGIN ALTER TABLE events DETACH PARTITION events_old; END $$`,
	} {
		pg.Exec(t, s)
	}
	waitApplied(t, sc)
	ctx := t.Context()
	direct := pg.Conn(t)
	admin := connect(t, sc.URL("postgres", "", "postgres"))
	app := connect(t, sc.URL("app", "", "postgres"))

	t.Run("revoke", func(t *testing.T) {
		const q = `SELECT v FROM secret WHERE id = 1`
		rtCached(t, ctx, sc, app, q)
		if _, err := admin.Exec(ctx, `SELECT offboard('app')`); err != nil {
			t.Fatal(err)
		}
		// PostgreSQL checks privileges as each statement runs: app's
		// session gets 42501 at once.
		appDirect := connect(t, pg.URL("app", "", "postgres"))
		if want := dcOne(t, appDirect, q); want != "42501" {
			t.Fatalf("directly, app reads %q after the REVOKE; want 42501", want)
		}
		if got := dcOne(t, app, q); got != "42501" {
			t.Errorf("after SELECT offboard('app') (REVOKE SELECT ON secret FROM app) through sqlcache, app's %s through sqlcache: %q; PostgreSQL answers 42501 (permission denied)", q, got)
		}
	})
	t.Run("detach_partition", func(t *testing.T) {
		const q = `SELECT count(*) FROM events`
		rtCached(t, ctx, sc, admin, q)
		if _, err := admin.Exec(ctx, `SELECT rotate()`); err != nil {
			t.Fatal(err)
		}
		want := dcOne(t, direct, q)
		if got := dcOne(t, admin, q); got != want {
			t.Errorf("after SELECT rotate() (ALTER TABLE events DETACH PARTITION events_old) through sqlcache, the same session's %s through sqlcache: %q; PostgreSQL returns %q", q, got, want)
		}
	})
}

// TestDirectChangesRowSecurity: row security changed directly on the
// database — a policy's USING altered, FORCE ROW LEVEL SECURITY for a
// table's owner, a role given BYPASSRLS — changes which rows a role sees
// with no row change; sqlcache drops the answers cached under the old
// rules within cache.catalog_check.
func TestDirectChangesRowSecurity(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"cache": map[string]any{"catalog_check": "200ms"}})
	for _, s := range []string{
		`CREATE TABLE notes (id int PRIMARY KEY, owner text, v text)`,
		`INSERT INTO notes VALUES (1, 'app', 'a'), (2, 'md5user', 'm'), (3, 'shared', 's')`,
		`ALTER TABLE notes ENABLE ROW LEVEL SECURITY`,
		`CREATE POLICY own ON notes USING (owner = current_user)`,
		`ALTER TABLE notes OWNER TO app`,
		`GRANT SELECT ON notes TO md5user`,
	} {
		pg.Exec(t, s)
	}
	waitApplied(t, sc)
	ctx := t.Context()
	rtRows(t, ctx, connect(t, sc.URL("app", "", "postgres")), `SELECT id FROM notes`) // checks run from then on
	dcChecked(t, sc, 2)
	const q = `SELECT string_agg(v, ',' ORDER BY id) FROM public.notes`
	for _, tc := range []struct {
		name, user, password, change, want string
	}{
		{"policy_altered", "md5user", "md5pass", `ALTER POLICY own ON notes USING (owner IN (current_user, 'shared'))`, "m,s"},
		{"forced_for_owner", "app", "", `ALTER TABLE notes FORCE ROW LEVEL SECURITY`, "a,s"},
		{"bypassrls", "md5user", "md5pass", `ALTER ROLE md5user BYPASSRLS`, "a,m,s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := connect(t, sc.URL(tc.user, tc.password, "postgres"))
			rtCached(t, ctx, sc, conn, q)
			pg.Exec(t, tc.change)
			direct := connect(t, pg.URL(tc.user, tc.password, "postgres"))
			if got := dcOne(t, direct, q); got != tc.want+"|\n" {
				t.Fatalf("directly after %q: %q; want %q", tc.change, got, tc.want)
			}
			eventually(t, 10*time.Second, func() (string, error) { return dcOne(t, conn, q), nil }, tc.want+"|\n")
		})
	}
}
