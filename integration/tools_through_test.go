package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// toolsBin returns the path of a PostgreSQL client program: from the
// server's bin directory if there, else from $PATH.
func toolsBin(t *testing.T, name string) string {
	t.Helper()
	if p := filepath.Join(findPGBinDir(t), name); isFile(p) {
		return p
	}
	return LookBinary(t, name, "postgresql-client")
}

// toolsRun runs a client program for at most timeout and returns its
// combined output and error; a program still running then is killed and
// reported as hung.
func toolsRun(t *testing.T, timeout time.Duration, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, toolsBin(t, name), args...)
	cmd.Env = append(os.Environ(), "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Errorf("%s %q hung for %v:\n%s", name, args, timeout, out)
	}
	return string(out), err
}

// TestToolsThroughReplication: replication connections (pg_recvlogical's
// logical walsender, pg_basebackup's physical one) through sqlcache are
// passed through as PostgreSQL serves them.
func TestToolsThroughReplication(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE rl (id int PRIMARY KEY, v text)`)
	direct := pg.URL("postgres", "", "postgres")
	proxied := sc.URL("postgres", "", "postgres")

	t.Run("recvlogical", func(t *testing.T) {
		for _, c := range []struct{ url, slot string }{{direct, "direct_slot"}, {proxied, "proxied_slot"}} {
			if out, err := toolsRun(t, 30*time.Second, "", "pg_recvlogical", "-d", c.url, "-S", c.slot, "-P", "test_decoding", "--create-slot"); err != nil {
				t.Fatalf("create slot %s: %v\n%s", c.slot, err, out)
			}
		}
		pg.Exec(t, `INSERT INTO rl VALUES (1, 'one'), (2, 'two')`)
		pg.Exec(t, `UPDATE rl SET v = 'uno' WHERE id = 1`)
		got := map[string]string{}
		for _, c := range []struct{ url, slot string }{{direct, "direct_slot"}, {proxied, "proxied_slot"}} {
			got[c.slot] = toolsRecvlogical(t, c.url, c.slot, "uno")
		}
		if got["direct_slot"] != got["proxied_slot"] {
			t.Errorf("pg_recvlogical through sqlcache printed\n%s\ndirectly\n%s", got["proxied_slot"], got["direct_slot"])
		}
	})

	t.Run("basebackup", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "bb")
		out, err := toolsRun(t, 120*time.Second, "", "pg_basebackup", "-d", proxied, "-D", dir, "-Ft", "-X", "stream", "-c", "fast", "--no-sync")
		if err != nil {
			t.Fatalf("pg_basebackup through sqlcache: %v\n%s", err, out)
		}
		if !isFile(filepath.Join(dir, "base.tar")) || !isFile(filepath.Join(dir, "backup_manifest")) {
			t.Errorf("pg_basebackup through sqlcache left no base.tar or manifest:\n%s", out)
		}
		// A physical replication connection is attached to no database:
		// libpq names it "replication". sqlcache must not take that for a
		// database to follow: PostgreSQL refuses such a stream for ever.
		if m := sc.Metrics(t); strings.Contains(m, `database="replication"`) {
			var lines []string
			for _, l := range strings.Split(m, "\n") {
				if strings.Contains(l, `database="replication"`) {
					lines = append(lines, l)
				}
			}
			t.Errorf("after pg_basebackup, sqlcache follows a database named \"replication\":\n%s", strings.Join(lines, "\n"))
		}
		for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if log := pg.logTail(200); strings.Contains(log, `database "replication" does not exist`) {
				t.Errorf("after pg_basebackup through sqlcache, PostgreSQL logs refused connections to a database \"replication\":\n%s", log[strings.Index(log, "FATAL"):])
				break
			}
		}
	})
}

// toolsRecvlogical runs pg_recvlogical --start on slot until its output
// holds want (or 30 s pass), stops it with SIGINT as a user would, and
// returns what it wrote.
func toolsRecvlogical(t *testing.T, url, slot, want string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), slot+".out")
	cmd := exec.Command(toolsBin(t, "pg_recvlogical"), "-d", url, "-S", slot, "--start", "-F", "0", "-f", file)
	cmd.Env = append(os.Environ(), "PGSSLMODE=disable")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var out []byte
	for time.Now().Before(deadline) {
		out, _ = os.ReadFile(file)
		if strings.Contains(string(out), want) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Errorf("pg_recvlogical on %s did not stop on SIGINT within 15s", slot)
	}
	out, _ = os.ReadFile(file)
	if !strings.Contains(string(out), want) {
		t.Errorf("pg_recvlogical on %s never printed %q; it printed:\n%s\nstderr:\n%s", slot, want, out, stderr.String())
	}
	return string(out)
}

// TestToolsThroughDatabaseLifecycle: createdb (which copies template1, as
// pg_dumpall visits it) after pg_dumpall ran through sqlcache must work as
// it does when nothing else is connected. (A database a session used
// through sqlcache cannot be dropped while sqlcache runs: README.)
// And a database created later must not carry sqlcache's publication:
// FOR ALL TABLES makes PostgreSQL refuse UPDATE and DELETE on tables
// without a primary key in a database sqlcache never served.
func TestToolsThroughDatabaseLifecycle(t *testing.T) {
	pg, sc := startCache(t, nil)
	proxied := func(db string) string { return sc.URL("postgres", "", db) }
	directExec := func(sql string) error {
		conn := connect(t, pg.URL("postgres", "", "postgres"))
		_, err := conn.Exec(t.Context(), sql)
		return err
	}

	t.Run("createdb_after_pg_dumpall", func(t *testing.T) {
		dump := filepath.Join(t.TempDir(), "all.sql")
		if out, err := toolsRun(t, 60*time.Second, "", "pg_dumpall", "-d", proxied("postgres"), "-f", dump); err != nil {
			t.Fatalf("pg_dumpall through sqlcache: %v\n%s", err, out)
		}
		if err := directExec(`CREATE DATABASE fresh`); err != nil {
			t.Errorf("CREATE DATABASE, run directly after pg_dumpall through sqlcache had ended: %v", err)
		}
	})

	t.Run("no_publication_in_new_databases", func(t *testing.T) {
		// Whatever sqlcache did to template1 outlives it.
		sc.Signal(syscall.SIGTERM)
		if _, err := sc.Wait(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		if err := directExec(`CREATE DATABASE later`); err != nil {
			t.Fatalf("CREATE DATABASE with sqlcache stopped: %v", err)
		}
		conn := connect(t, pg.URL("postgres", "", "later"))
		var pubs string
		if err := conn.QueryRow(t.Context(), `SELECT coalesce(string_agg(pubname, ','), '') FROM pg_publication`).Scan(&pubs); err != nil {
			t.Fatal(err)
		}
		if pubs != "" {
			t.Errorf("database later, created from template1 after sqlcache had served a session of template1, has publications %q", pubs)
		}
		if _, err := conn.Exec(t.Context(), `CREATE TABLE nopk (a int); INSERT INTO nopk VALUES (1); UPDATE nopk SET a = 2`); err != nil {
			t.Errorf("UPDATE of a table without a primary key in database later: %v", err)
		}
	})
}

// toolsNormalize strips what differs between two runs of a tool
// whatever the server: pg_dump's random \restrict keys, backend PIDs.
func toolsNormalize(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "\\restrict ") || strings.HasPrefix(l, "\\unrestrict ") {
			continue
		}
		out = append(out, regexp.MustCompile(`PID \d+`).ReplaceAllString(l, "PID N"))
	}
	return strings.Join(out, "\n")
}

// TestToolsThroughDump: pg_dump (plain, and directory format with
// parallel workers, which share the leader's exported snapshot) gives
// through sqlcache, with the tables' reads cached, what it gives
// directly; pg_restore --clean through sqlcache replaces what cached
// answers showed.
func TestToolsThroughDump(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE acct (id int PRIMARY KEY, owner text, bal numeric);
		INSERT INTO acct SELECT g, 'o' || g, g * 10 FROM generate_series(1, 300) g;
		CREATE TABLE note (id int PRIMARY KEY, body text);
		INSERT INTO note SELECT g, repeat('x', g) FROM generate_series(1, 50) g;
		CREATE SEQUENCE seq; SELECT setval('seq', 77);
		CREATE VIEW rich AS SELECT * FROM acct WHERE bal > 1000`)
	waitApplied(t, sc)
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	const q = `SELECT count(*), sum(bal)::text FROM acct`
	rtCached(t, t.Context(), sc, conn, q)
	rtCached(t, t.Context(), sc, conn, `SELECT count(*) FROM rich`)
	direct := pg.URL("postgres", "", "postgres")
	proxied := sc.URL("postgres", "", "postgres")
	dir := t.TempDir()

	dump := func(url, name string, args ...string) string {
		out, err := toolsRun(t, 60*time.Second, "", "pg_dump", append([]string{"-d", url}, args...)...)
		if err != nil {
			t.Fatalf("pg_dump %s: %v\n%s", name, err, out)
		}
		return out
	}
	if d, p := dump(direct, "direct"), dump(proxied, "through sqlcache"); toolsNormalize(d) != toolsNormalize(p) {
		t.Errorf("plain pg_dump through sqlcache differs from direct:\n%s\n---- direct:\n%s", p, d)
	}
	restored := func(d string) string {
		out, err := toolsRun(t, 60*time.Second, "", "pg_restore", "-f", "-", d)
		if err != nil {
			t.Fatalf("pg_restore -f - %s: %v\n%s", d, err, out)
		}
		return toolsNormalize(out)
	}
	dump(direct, "direct -Fd", "-Fd", "-j", "3", "-f", filepath.Join(dir, "d"))
	dump(proxied, "-Fd through sqlcache", "-Fd", "-j", "3", "-f", filepath.Join(dir, "p"))
	if d, p := restored(filepath.Join(dir, "d")), restored(filepath.Join(dir, "p")); d != p {
		t.Errorf("pg_dump -Fd -j 3 through sqlcache differs from direct:\n%s\n---- direct:\n%s", p, d)
	}

	// Change the data, then restore the old dump over it through sqlcache.
	if _, err := conn.Exec(t.Context(), `DELETE FROM acct WHERE id > 10`); err != nil {
		t.Fatal(err)
	}
	if got := rtCached(t, t.Context(), sc, conn, q); got != "10 550\n" {
		t.Fatalf("after DELETE: %q", got)
	}
	if out, err := toolsRun(t, 60*time.Second, "", "pg_restore", "-d", proxied, "--clean", "-j", "2", filepath.Join(dir, "p")); err != nil {
		t.Fatalf("pg_restore through sqlcache: %v\n%s", err, out)
	}
	if got := rtRows(t, t.Context(), conn, q); got != "300 451500\n" {
		t.Errorf("after pg_restore --clean through sqlcache, %s gave %q; want 300 451500", q, got)
	}
}

// toolsPsqlScript exercises psql's own features: \gset, \gdesc, \gexec,
// \crosstabview, FETCH_COUNT (a cursor in a block), WITH HOLD cursors,
// AUTOCOMMIT off, ON_ERROR_ROLLBACK (savepoints), sequences, advisory
// locks, LISTEN/NOTIFY, COPY TO STDOUT and errors, repeating reads so
// that the second run through sqlcache answers them from the cache.
const toolsPsqlScript = `
SET client_min_messages = warning;
DROP TABLE IF EXISTS items CASCADE;
DROP SEQUENCE IF EXISTS s;
CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);
INSERT INTO items SELECT g, 'item' || g, g * 1.5 FROM generate_series(1, 20) g;
RESET client_min_messages;
SELECT * FROM items WHERE id < 4 ORDER BY id;
SELECT * FROM items WHERE id < 4 ORDER BY id;
SELECT count(*) AS n FROM items \gset
\echo n=:n
SELECT id, name FROM items WHERE id <= 2 \gdesc
SELECT 'SELECT ' || id || ' AS x' FROM items WHERE id <= 3 ORDER BY id \gexec
SELECT id % 2 AS a, id % 3 AS b, count(*) FROM items GROUP BY 1, 2 ORDER BY 1, 2 \crosstabview
\set FETCH_COUNT 3
SELECT id FROM items WHERE id < 8 ORDER BY id;
\unset FETCH_COUNT
BEGIN;
DECLARE c CURSOR WITH HOLD FOR SELECT id, name FROM items ORDER BY id;
COMMIT;
FETCH 3 FROM c;
UPDATE items SET name = 'changed' WHERE id = 1;
FETCH 3 FROM c;
CLOSE c;
SELECT * FROM items WHERE id < 4 ORDER BY id;
\set AUTOCOMMIT off
SELECT * FROM items WHERE id = 2;
UPDATE items SET name = 'two' WHERE id = 2;
SELECT * FROM items WHERE id = 2;
ROLLBACK;
SELECT * FROM items WHERE id = 2;
COMMIT;
\set AUTOCOMMIT on
\set ON_ERROR_ROLLBACK on
BEGIN;
SELECT * FROM items WHERE id = 3;
SELECT 1/0;
UPDATE items SET name = 'three' WHERE id = 3;
SELECT * FROM items WHERE id = 3;
ROLLBACK;
SELECT * FROM items WHERE id = 3;
\set ON_ERROR_ROLLBACK off
CREATE SEQUENCE s;
SELECT nextval('s'), currval('s'), lastval();
SELECT last_value, is_called FROM s;
SELECT nextval('s');
SELECT last_value, is_called FROM s;
SELECT pg_try_advisory_lock(42);
SELECT pg_advisory_unlock(42);
LISTEN ch; NOTIFY ch, 'hello';
SELECT 1 AS after_notify;
UNLISTEN ch;
COPY (SELECT id, name FROM items ORDER BY id LIMIT 3) TO STDOUT;
SELECT * FROM items WHERE id = 999;
SELECT * FROM nonexistent;
SELECT * FROM items WHERE id < 4 ORDER BY id;
`

// TestToolsThroughPsqlFeatures: the script's output through sqlcache,
// run twice (misses, then hits), is psql's output directly.
func TestToolsThroughPsqlFeatures(t *testing.T) {
	pg, sc := startCache(t, nil)
	file := filepath.Join(t.TempDir(), "script.sql")
	if err := os.WriteFile(file, []byte(toolsPsqlScript), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(url string) string {
		out, _ := toolsRun(t, 60*time.Second, "", "psql", url, "-X", "-f", file)
		return toolsNormalize(out)
	}
	want := run(pg.URL("postgres", "", "postgres"))
	hits := metricValue(t, sc, "sqlcache_cache_hits_total")
	for i := range 2 {
		if got := run(sc.URL("postgres", "", "postgres")); got != want {
			t.Errorf("run %d through sqlcache:\n%s\n---- direct:\n%s", i+1, got, want)
		}
	}
	t.Logf("cache hits during the runs: %v", metricValue(t, sc, "sqlcache_cache_hits_total")-hits)
}

// TestToolsThroughDropDatabase: once the last session of a database
// through sqlcache has ended, sqlcache releases its change stream (a
// walsender holding a replication slot, which makes DROP DATABASE fail
// even WITH (FORCE)) and its catalog connection after
// invalidation.postgres.release_idle, so that the database can be
// dropped as if sqlcache had never been there; a database in use again
// gets a new stream and caches again.
func TestToolsThroughDropDatabase(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"invalidation": map[string]any{"postgres": map[string]any{"release_idle": "1s"}}})
	ctx := t.Context()
	use := func(db string) {
		conn := connect(t, sc.URL("postgres", "", db))
		if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		rtCached(t, ctx, sc, conn, `SELECT count(*) FROM t`)
		conn.Close(ctx)
	}
	direct := pg.Conn(t)
	dropWithin := func(stmt string) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			if _, err = direct.Exec(ctx, stmt); err == nil {
				return
			}
		}
		t.Errorf("%s, run directly after the database's last session through sqlcache ended: %v", stmt, err)
	}
	pg.Exec(t, `CREATE DATABASE scratch`)
	use("scratch")
	dropWithin(`DROP DATABASE scratch`)

	pg.Exec(t, `CREATE DATABASE scratch2`)
	use("scratch2")
	use("scratch2") // again, after (or before) its release: caches again
	dropWithin(`DROP DATABASE scratch2 WITH (FORCE)`)

	// /explain looks the statement up in the database's catalog, as a
	// session would, with no session to end.
	pg.Exec(t, `CREATE DATABASE scratch3`)
	s3 := connect(t, pg.URL("postgres", "", "scratch3"))
	if _, err := s3.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	s3.Close(ctx)
	status, exp := opAdmin(t, sc, "GET", "/explain?"+url.Values{"database": {"scratch3"}, "sql": {"SELECT * FROM t"}}.Encode())
	var decision struct{ Cacheable bool }
	if err := json.Unmarshal([]byte(exp), &decision); status != http.StatusOK || err != nil || !decision.Cacheable {
		t.Fatalf("/explain in scratch3: %d %s; want a cacheable decision, which reads scratch3's catalog", status, exp)
	}
	dropWithin(`DROP DATABASE scratch3`)
}
