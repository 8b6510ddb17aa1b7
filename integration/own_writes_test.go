package integration

import (
	"strings"
	"testing"
)

// TestOwnWritesWait: after a session writes through sqlcache, its next
// cached read waits for the change stream only when the write may have
// changed more than the tables it names (triggers, foreign-key actions,
// column defaults or expressions calling user functions), and in every
// case the read sees everything the write did.
func TestOwnWritesWait(t *testing.T) {
	pg, sc := startCache(t, nil)
	for _, stmt := range []string{
		`CREATE TABLE plain (id int PRIMARY KEY, v int NOT NULL)`,
		`CREATE TABLE other (id int PRIMARY KEY, v int NOT NULL)`,
		`INSERT INTO plain VALUES (1, 0)`,
		`INSERT INTO other VALUES (1, 0)`,
		`CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE other SET v = v + 1; RETURN NEW; END $$`,
		`CREATE TABLE audited (id int PRIMARY KEY)`,
		`CREATE TRIGGER bump AFTER INSERT ON audited FOR EACH ROW EXECUTE FUNCTION bump()`,
		`CREATE FUNCTION next_v() RETURNS int LANGUAGE plpgsql AS $$ BEGIN UPDATE other SET v = v + 1; RETURN 1; END $$`,
		`CREATE TABLE defaulted (id int PRIMARY KEY, v int DEFAULT next_v())`,
		`CREATE TABLE ruled (id int PRIMARY KEY, v int NOT NULL)`,
		`INSERT INTO ruled VALUES (1, 0)`,
		`CREATE RULE copy_v AS ON UPDATE TO ruled DO ALSO UPDATE other SET v = NEW.v`,
		`CREATE TABLE parent (id int PRIMARY KEY)`,
		`CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent ON DELETE CASCADE)`,
		`INSERT INTO parent SELECT g FROM generate_series(1, 3) g`,
		`INSERT INTO child SELECT g, g FROM generate_series(1, 3) g`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	conn := connect(t, sc.URL("postgres", "", "postgres", "synchronous_commit=on"))
	direct := pg.Conn(t)
	const readOther = `SELECT v FROM other WHERE id > $1`
	// The arguments of a case's write, given the attempt (from 1): a case
	// that inserts takes a new key each time.
	one := func(int) []any { return []any{1} }
	each := func(n int) []any { return []any{n} }
	for _, tc := range []struct {
		name  string
		write string
		args  func(attempt int) []any
		read  string
		wait  bool
	}{
		{"plain table, extended protocol", `UPDATE plain SET v = v + 1 WHERE id = $1`, one, readOther, false},
		{"plain table, simple protocol", `UPDATE plain SET v = v + 1 WHERE id = 1`, nil, readOther, false},
		{"built-in functions only", `UPDATE plain SET v = abs(v) + length(now()::text) WHERE id = $1`, one, readOther, false},
		{"trigger", `INSERT INTO audited VALUES ($1)`, each, readOther, true},
		{"rule", `UPDATE ruled SET v = v + 10 WHERE id = $1`, one, readOther, true},
		{"column default calls a user function", `INSERT INTO defaulted (id) VALUES ($1)`, each, readOther, true},
		{"statement calls a user function", `UPDATE plain SET v = next_v() WHERE id = $1`, one, readOther, true},
		{"foreign-key cascade", `DELETE FROM parent WHERE id = $1`, each, `SELECT count(*)::int FROM child WHERE id > $1`, true},
		{"SELECT of built-in functions", `SELECT now()::text, lower('X')`, nil, readOther, false},
		{"SELECT FOR UPDATE", `SELECT v FROM plain WHERE id = $1 FOR UPDATE`, one, readOther, false},
		{"SELECT of a user function that writes", `SELECT next_v()`, nil, readOther, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			read := func() int {
				t.Helper()
				var v int
				if err := conn.QueryRow(ctx, tc.read, 0).Scan(&v); err != nil {
					t.Fatalf("%s: %v", tc.read, err)
				}
				return v
			}
			// attempt caches the read, writes, reads again, and reports
			// whether that read waited for the change stream.
			attempt := func(n int) bool {
				t.Helper()
				read()
				hits := metricValue(t, sc, "sqlcache_cache_hits_total")
				read()
				if metricValue(t, sc, "sqlcache_cache_hits_total") == hits {
					t.Fatalf("%s was not answered from the cache; the case proves nothing", tc.read)
				}
				waits := metricValue(t, sc, "sqlcache_cache_own_write_waits_total")
				hits = metricValue(t, sc, "sqlcache_cache_hits_total")
				var args []any
				if tc.args != nil {
					args = tc.args(n)
				}
				if _, err := conn.Exec(ctx, tc.write, args...); err != nil {
					t.Fatalf("%s: %v", tc.write, err)
				}
				got := read()
				var want int
				if err := direct.QueryRow(ctx, tc.read, 0).Scan(&want); err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("after its own write %q the session read %d through sqlcache; PostgreSQL has %d", tc.write, got, want)
				}
				if !tc.wait && metricValue(t, sc, "sqlcache_cache_hits_total") == hits {
					t.Errorf("after %q, which changes at most %q, the read of another table was not a hit", tc.write, "plain")
				}
				return metricValue(t, sc, "sqlcache_cache_own_write_waits_total") > waits
			}
			// A read need not wait if a heartbeat (every 100ms) has
			// already carried the stream past the write, which can happen
			// between the write's ReadyForQuery and the read on a loaded
			// machine; so a case that should wait gets three tries. One
			// that never waits fails all three.
			const tries = 3
			waited := attempt(1)
			for n := 2; tc.wait && !waited && n <= tries; n++ {
				t.Logf("attempt %d: the stream had caught up before the read; again", n-1)
				waited = attempt(n)
			}
			if waited != tc.wait {
				t.Errorf("after %q the next read waited for the change stream: %t, want %t", tc.write, waited, tc.wait)
			}
		})
	}
	// sqlcache explain says which writes make the next read wait.
	for _, tc := range []struct{ sql, want string }{
		{`UPDATE plain SET v = 1`, "next cache read served at once"},
		{`INSERT INTO audited VALUES (9)`, "next cache read waits for the change stream"},
		{`SELECT v FROM other`, "cacheable: yes"},
	} {
		out, code := RunSqlcache(t, "explain", "--config", sc.ConfigFile, tc.sql)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("explain %q: exit %d:\n%s\nwant %q in it", tc.sql, code, out, tc.want)
		}
	}
}
