package integration

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Red-team tests of session settings and other session state that change
// the bytes or rows PostgreSQL answers, and whether sqlcache's cache key
// carries them. Each compares with what PostgreSQL itself answers.

// soRows returns the text of every DataRow's columns among frames, one
// row a line, columns separated by '|'.
func soRows(t *testing.T, frames []frame) string {
	t.Helper()
	var b strings.Builder
	for _, f := range frames {
		switch f[0] {
		case 'D':
			var d pgproto3.DataRow
			if err := d.Decode(f[5:]); err != nil {
				t.Fatalf("DataRow: %v", err)
			}
			for i, v := range d.Values {
				if i > 0 {
					b.WriteByte('|')
				}
				b.Write(v)
			}
			b.WriteByte('\n')
		case 'E':
			t.Fatalf("error: %v", f)
		}
	}
	return b.String()
}

// TestSettingsOutputTempDomainShadows: a domain (or any type) made in the
// session's temporary schema shadows a permanent one of the same name, as
// a temporary table does: PostgreSQL searches pg_temp first for types.
// A session that made one must not read, or fill, answers under the key
// of sessions that did not.
func TestSettingsOutputTempDomainShadows(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE DOMAIN public.so_dd AS numeric(6,2)`)
	waitApplied(t, sc)
	const q = `SELECT (1.234::so_dd)::text AS v`
	a := connect(t, sc.URL("app", "", "postgres"))
	b := connect(t, sc.URL("app", "", "postgres"))
	if _, err := a.Exec(t.Context(), `CREATE DOMAIN pg_temp.so_dd AS numeric(6,1)`); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, sc)
	if got := rtCached(t, t.Context(), sc, b, q); got != "1.23\n" {
		t.Fatalf("B (public.so_dd, numeric(6,2)) read %q; PostgreSQL answers 1.23", got)
	}
	// A's so_dd is its temporary numeric(6,1): PostgreSQL answers 1.2.
	if got := rtRows(t, t.Context(), a, q); got != "1.2\n" {
		t.Errorf("A, whose temporary domain so_dd shadows public.so_dd, read %q; PostgreSQL answers 1.2 (B's cached answer leaked)", got)
	}
}

// soSJIS is a string literal's content in Shift_JIS: さ (E3 81) then 表
// (95 5C), whose second byte is a backslash. Read as UTF-8, E3 81 95 is
// one character and the 5C a backslash that escapes what follows in an
// escape string (E'…').
const soSJIS = "\xe3\x81\x95\x5c"

// TestSettingsOutputSJISStatementMisread: with client_encoding SJIS,
// PostgreSQL converts a statement to the server's encoding before
// parsing it; sqlcache parses the bytes as UTF-8. In an escape string (E'…') a
// character whose second byte is 0x5C then hides, from sqlcache, the
// statements that follow it in the same Query.
func TestSettingsOutputSJISStatementMisread(t *testing.T) {
	pg, sc := startCache(t, nil)
	rsSetup(t, pg, sc, `CREATE TABLE so_counter (id int PRIMARY KEY, n int)`,
		`INSERT INTO so_counter VALUES (1, 0)`, `GRANT SELECT, UPDATE ON so_counter TO app`)
	params := map[string]string{"user": "app", "database": "postgres", "client_encoding": "SJIS"}

	t.Run("set_hidden", func(t *testing.T) {
		read := &pgproto3.Query{String: rsQT}
		// C, an SJIS session on the default search_path, fills the cache.
		c, _ := dialRaw(t, sc.Addr, params)
		hits := metricValue(t, sc, "sqlcache_cache_hits_total")
		for range 3 {
			if got := soRows(t, c.roundTrip(1, read)); got != "from public\n" {
				t.Fatalf("C read %q; want from public", got)
			}
		}
		if metricValue(t, sc, "sqlcache_cache_hits_total") == hits {
			t.Fatal("C's reads were not cached; the case proves nothing")
		}
		setPath := &pgproto3.Query{String: "SELECT E'" + soSJIS + "' AS k; SET search_path = b; -- '"}
		direct, _ := dialRaw(t, pg.Addr(), params)
		proxied, _ := dialRaw(t, sc.Addr, params)
		direct.roundTrip(1, setPath)
		proxied.roundTrip(1, setPath)
		want := soRows(t, direct.roundTrip(1, read))
		if want != "from b\n" {
			t.Fatalf("PostgreSQL answered %q", want)
		}
		for i := range 2 {
			if got := soRows(t, proxied.roundTrip(1, read)); got != want {
				t.Errorf("read %d after a Query that set search_path = b: %q; PostgreSQL answers %q", i, got, want)
			}
		}
	})

	t.Run("write_lost", func(t *testing.T) {
		bump := &pgproto3.Query{String: "SELECT E'" + soSJIS + "' AS k; UPDATE so_counter SET n = n + 1 WHERE id = 1; -- '"}
		proxied, _ := dialRaw(t, sc.Addr, params)
		for range 3 {
			proxied.roundTrip(1, bump)
		}
		var n int
		if err := pg.Conn(t).QueryRow(t.Context(), `SELECT n FROM so_counter WHERE id = 1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Errorf("after three Queries each running UPDATE so_counter SET n = n + 1: n = %d; PostgreSQL would have 3", n)
		}
	})
}

// TestSettingsOutputLatin1SetNotFollowed: with client_encoding LATIN1 a
// SET whose value has a non-ASCII letter is valid for PostgreSQL, which
// converts it to the server's encoding, but is not valid UTF-8 for
// sqlcache's parser, which takes it for a string PostgreSQL will reject
// and that changes nothing. The session's key keeps the tenant it had.
func TestSettingsOutputLatin1SetNotFollowed(t *testing.T) {
	pg, sc := startCache(t, nil)
	for _, stmt := range []string{
		`CREATE TABLE so_tenant_docs (id int PRIMARY KEY, tenant text, body text)`,
		`INSERT INTO so_tenant_docs VALUES (1, 'tea', 'doc of tea'), (2, 'café', 'doc of café')`,
		`ALTER TABLE so_tenant_docs ENABLE ROW LEVEL SECURITY`,
		`CREATE POLICY by_tenant ON so_tenant_docs USING (tenant = current_setting('app.tenant', true))`,
		`GRANT SELECT ON so_tenant_docs TO app`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	params := map[string]string{"user": "app", "database": "postgres", "client_encoding": "LATIN1"}
	read := &pgproto3.Query{String: `SELECT coalesce(string_agg(body, ','), '') FROM so_tenant_docs`}
	toTea := &pgproto3.Query{String: `SET app.tenant = 'tea'`}
	toCafe := &pgproto3.Query{String: "SET app.tenant = 'caf\xe9'"}

	direct, _ := dialRaw(t, pg.Addr(), params)
	proxied, _ := dialRaw(t, sc.Addr, params)
	direct.roundTrip(1, toTea)
	proxied.roundTrip(1, toTea)
	hits := metricValue(t, sc, "sqlcache_cache_hits_total")
	for range 3 {
		if got := soRows(t, proxied.roundTrip(1, read)); got != "doc of tea\n" {
			t.Fatalf("tenant tea read %q", got)
		}
	}
	if metricValue(t, sc, "sqlcache_cache_hits_total") == hits {
		t.Fatal("tenant tea's reads were not cached; the case proves nothing")
	}
	direct.roundTrip(1, toCafe)
	proxied.roundTrip(1, toCafe)
	want := soRows(t, direct.roundTrip(1, read))
	if want != "doc of caf\xe9\n" {
		t.Fatalf("PostgreSQL answered %q", want)
	}
	for i := range 2 {
		if got := soRows(t, proxied.roundTrip(1, read)); got != want {
			t.Errorf("read %d as tenant café: %q; PostgreSQL answers %q (tenant tea's rows)", i, got, want)
		}
	}
	// Another session of tenant tea.
	other, _ := dialRaw(t, sc.Addr, params)
	other.roundTrip(1, toTea)
	for i := range 2 {
		if got := soRows(t, other.roundTrip(1, read)); got != "doc of tea\n" {
			t.Errorf("read %d of another session of tenant tea: %q; PostgreSQL answers %q", i, got, "doc of tea\n")
		}
	}
}

// TestSettingsOutputSetRoleNoneAfterStartupRole: a session whose role
// comes from its login (options -c role=…, or ALTER ROLE … SET role)
// runs as that role; SET ROLE NONE makes it run as the login role
// itself, while RESET ROLE goes back to the role it logged in with.
// sqlcache files both as "no role set", the key of a session that never
// changed its role.
func TestSettingsOutputSetRoleNoneAfterStartupRole(t *testing.T) {
	pg, sc := startCache(t, nil)
	rsSetup(t, pg, sc)
	// Z runs as md5user, as its startup options say.
	z := rsSimple(t, sc, "app", "", "options=-crole=md5user")
	if got := rsOne(t, z, `SELECT current_user::text`); got != "md5user" {
		t.Fatalf("current_user with options -c role=md5user = %q", got)
	}
	if got := rtCached(t, t.Context(), sc, z, rsQDocs); got != "md5 doc\n" {
		t.Fatalf("Z (md5user) read %q; want md5 doc", got)
	}
	// X logs in the same way, then SET ROLE NONE: it runs as app.
	x := rsSimple(t, sc, "app", "", "options=-crole=md5user")
	rsQuery(t, x, `SET ROLE NONE`)
	if got := rsOne(t, x, `SELECT current_user::text`); got != "app" {
		t.Fatalf("current_user after SET ROLE NONE = %q; PostgreSQL says app", got)
	}
	for i := range 2 {
		if got := rsOne(t, x, rsQDocs); got != "app doc" {
			t.Errorf("read %d as app (SET ROLE NONE) = %q; PostgreSQL answers %q (md5user's rows)", i, got, "app doc")
		}
	}
}
