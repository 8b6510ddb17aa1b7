package integration

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// opAdmin sends method to path on sqlcache's admin address and returns the
// status and body.
func opAdmin(t *testing.T, sc *Sqlcache, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+sc.AdminAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestOperatorInvalidateTableNames: with invalidation.postgres.mode none,
// POST /cache/invalidate is how an operator drops what changed behind
// sqlcache's back. The table may be named as cache.rules name tables
// ("schema.name" or just "name"); either spelling must drop the entry,
// or the operator's invalidation silently does nothing and stale rows
// keep being served.
func TestOperatorInvalidateTableNames(t *testing.T) {
	pg, sc := startCache(t, map[string]any{
		"invalidation": map[string]any{"postgres": map[string]any{"mode": "none"}},
	})
	pg.Exec(t, `CREATE SCHEMA app`)
	pg.Exec(t, `CREATE TABLE public.reports (v int)`)
	pg.Exec(t, `CREATE TABLE app.items (v int)`)
	pg.Exec(t, `INSERT INTO public.reports VALUES (1)`)
	pg.Exec(t, `INSERT INTO app.items VALUES (1)`)
	ctx := t.Context()
	conn := connect(t, sc.URL("postgres", "", "postgres"))

	for i, tc := range []struct{ sql, table, update string }{
		{`SELECT v FROM reports`, "public.reports", `UPDATE public.reports SET v = v + 1`},
		{`SELECT v FROM public.reports`, "reports", `UPDATE public.reports SET v = v + 1`},
		{`SELECT v FROM app.items`, "app.items", `UPDATE app.items SET v = v + 1`},
	} {
		rtCached(t, ctx, sc, conn, tc.sql)
		pg.Exec(t, tc.update)
		direct := rtRows(t, ctx, pg.Conn(t), tc.sql)
		code, body := opAdmin(t, sc, "POST", "/cache/invalidate?"+url.Values{"database": {"postgres"}, "table": {tc.table}}.Encode())
		if code != http.StatusOK {
			t.Fatalf("case %d: POST /cache/invalidate table=%s: %d %s", i, tc.table, code, body)
		}
		if got := rtRows(t, ctx, conn, tc.sql); got != direct {
			_, exp := opAdmin(t, sc, "GET", "/explain?"+url.Values{"database": {"postgres"}, "sql": {tc.sql}}.Encode())
			t.Errorf("case %d: %s after POST /cache/invalidate?table=%s (answer %s) = %q; PostgreSQL answers %q\nexplain: %s",
				i, tc.sql, tc.table, strings.TrimSpace(body), got, direct, exp)
		}
	}
}

// TestOperatorAdminMethods: the admin API refuses what it does not serve
// with a 4xx, and a GET never invalidates.
func TestOperatorAdminMethods(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE m (v int)`)
	pg.Exec(t, `INSERT INTO m VALUES (1)`)
	waitApplied(t, sc)
	ctx := t.Context()
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	rtCached(t, ctx, sc, conn, `SELECT v FROM m`)
	// The stream applies the table's writes again once a heartbeat sees
	// them visible, which may drop an answer filled just before: fill
	// again after that.
	time.Sleep(500 * time.Millisecond)
	rtCached(t, ctx, sc, conn, `SELECT v FROM m`)
	before := metricValue(t, sc, "sqlcache_cache_entries")
	for _, tc := range []struct {
		method, path string
	}{
		{"GET", "/cache/invalidate"},
		{"GET", "/cache/invalidate?database=postgres"},
		{"PUT", "/cache/invalidate"},
		{"POST", "/cache/invalidate?table=m"},
		{"POST", "/explain?database=postgres&sql=SELECT+1"},
		{"GET", "/explain?database=postgres"},
		{"GET", "/explain?sql=SELECT+1"},
	} {
		code, body := opAdmin(t, sc, tc.method, tc.path)
		if code < 400 || code > 499 {
			t.Errorf("%s %s: %d %s; want a 4xx", tc.method, tc.path, code, body)
		}
	}
	if after := metricValue(t, sc, "sqlcache_cache_entries"); after != before {
		t.Errorf("cache entries %v -> %v after refused admin requests", before, after)
	}
}

// TestOperatorExplainHostile: /explain with hostile SQL answers JSON and
// runs nothing on the database.
func TestOperatorExplainHostile(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE victim (v int)`)
	pg.Exec(t, `INSERT INTO victim VALUES (1)`)
	pg.Exec(t, `CREATE FUNCTION bump() RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO victim VALUES (99) RETURNING 1'`)
	deep := strings.Repeat("(", 20000) + "1" + strings.Repeat(")", 20000)
	for _, sql := range []string{
		`SELECT 1; DROP TABLE victim`,
		`DROP TABLE victim`,
		`SELECT bump()`,
		`DO $$BEGIN DELETE FROM victim; END$$`,
		"SELECT 1\x00; DROP TABLE victim",
		`SELECT ` + deep,
		`SELECT 1 + ` + strings.Repeat("1 + ", 100000) + `1`,
		`TRUNCATE victim`,
	} {
		code, body := opAdmin(t, sc, "GET", "/explain?"+url.Values{"database": {"postgres"}, "sql": {sql}}.Encode())
		short := sql
		if len(short) > 60 {
			short = short[:60] + "…"
		}
		if code != http.StatusOK && (code < 400 || code > 499) {
			t.Errorf("explain %q: %d %s", short, code, body)
			continue
		}
		if code == http.StatusOK {
			var e struct {
				Cacheable *bool `json:"cacheable"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Cacheable == nil {
				t.Errorf("explain %q: not an explanation: %v %s", short, err, body)
			} else if *e.Cacheable {
				t.Errorf("explain %q: cacheable", short)
			}
		}
	}
	var n int
	if err := pg.Conn(t).QueryRow(t.Context(), `SELECT count(*) FROM victim WHERE v = 1`).Scan(&n); err != nil || n != 1 {
		t.Errorf("victim after /explain: count %d, %v; want the one row untouched", n, err)
	}
	if !sc.Alive() {
		t.Errorf("sqlcache died")
	}
}

// TestOperatorEnvEmptyWins: the environment wins over the file, so an
// environment variable set to "" (the documented way to disable
// admin.listen, or to unset postgres.service_dsn) must win over the
// file's value.
func TestOperatorEnvEmptyWins(t *testing.T) {
	pg := StartPostgres(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	body := "postgres:\n  backend: \"" + pg.Addr() + "\"\n  service_dsn: \"" + pg.URL("postgres", "", "postgres") + "\"\n  backend_tls: {mode: disable}\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// Baseline: the file's service login is tried.
	out, code := RunSqlcache(t, "check", "--config", file)
	if code != 0 || !strings.Contains(out, "service_dsn: login ok") {
		t.Fatalf("check: %d\n%s", code, out)
	}
	t.Setenv("SQLCACHE_POSTGRES_SERVICE_DSN", "")
	out, code = RunSqlcache(t, "check", "--config", file)
	if strings.Contains(out, "service_dsn: login ok") {
		t.Errorf("with SQLCACHE_POSTGRES_SERVICE_DSN= (empty) the file's postgres.service_dsn was still used (exit %d):\n%s", code, out)
	}
}

// TestOperatorConfigEdges: configurations an operator writes by
// commenting out keys of config.example.yaml, or with values of the wrong
// shape, are either accepted or refused with exit 2 naming the key, never
// a panic.
func TestOperatorConfigEdges(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct {
		body     string
		wantCode int
		want     string
	}{
		// Every key of a section commented out leaves the section null.
		{"postgres:\n  backend: \"127.0.0.1:1\"\n  tls:\n    # cert_file: \"\"\n    # key_file: \"\"\n", 1, ""},
		{"postgres:\n  backend: \"127.0.0.1:1\"\n  tls: {}\n", 1, ""},
		{"postgres:\n  backend: \"127.0.0.1:1\"\ncache:\n  rules:\n    - {table: t, ttl: -5s}\n", 2, "cache.rules[0]"},
		{"postgres:\n  backend: \"127.0.0.1:1\"\ncache:\n  max_bytes: 4MiB\n  max_entry_bytes: 3MiB\n", 2, "cache.max_entry_bytes"},
		{"postgres:\n  backend: \"127.0.0.1:1\"\ncache:\n  max_bytes: -1\n", 2, "cache.max_bytes"},
		{"postgres:\n  backend: \"127.0.0.1:1\"\ncache:\n  rules: {table: t}\n", 2, "cache.rules"},
		{"postgres:\n  backend: \"127.0.0.1:1\"\ncache:\n  rules:\n    - {query: \"(\", ttl: 1s}\n", 2, "cache.rules[0]"},
		{"postgres:\n  backend: \"127.0.0.1:1\"\n  service_dsn: \"postgres://u:s3cr3tpw@[::1\"\n", 2, "postgres.service_dsn"},
		{"postgres: 5\n", 2, "postgres"},
		{"postgres:\n  backend: \"127.0.0.1:1\"\n  max_message_bytes: 99999999999999999999999\n", 2, "postgres.max_message_bytes"},
	} {
		file := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(file, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := RunSqlcache(t, "check", "--config", file)
		if code != tc.wantCode || !strings.Contains(out, tc.want) || strings.Contains(out, "panic") || strings.Contains(out, "s3cr3tpw") {
			t.Errorf("case %d:\n%s\nexit %d; want %d naming %q:\n%s", i, tc.body, code, tc.wantCode, tc.want, out)
		}
	}
}

// TestOperatorLogsNoPasswords: at log.level debug, nothing sqlcache logs
// holds a password: not the service login's (whose change stream fails
// here, so its errors are logged), not a client's cleartext password
// (right or wrong), not one set by ALTER ROLE … PASSWORD.
func TestOperatorLogsNoPasswords(t *testing.T) {
	pg := StartPostgres(t)
	sc := StartSqlcache(t, SqlcacheConfig{
		Backend:    pg.Addr(),
		ServiceDSN: pg.URL("pwuser", "pwpass", "postgres"),
		Extra:      map[string]any{"log": map[string]any{"level": "debug", "format": "json"}},
	})
	ctx := t.Context()
	conn := connect(t, sc.URL("pwuser", "pwpass", "postgres"))
	rtRows(t, ctx, conn, `SELECT 1`)
	if _, err := conn.Exec(ctx, `SET application_name = 'x'`); err != nil {
		t.Fatal(err)
	}
	admin := connect(t, sc.URL("postgres", "", "postgres"))
	if _, err := admin.Exec(ctx, `ALTER ROLE scramuser PASSWORD 'Newsecret_xyz'`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `CREATE ROLE leaky LOGIN PASSWORD 'Leakpw_123'`); err != nil {
		t.Fatal(err)
	}
	if c, err := pgx.Connect(ctx, sc.URL("pwuser", "Wrongpw_abc", "postgres")); err == nil {
		c.Close(ctx)
		t.Fatal("wrong password accepted")
	}
	// Let the failing change stream log a few attempts.
	time.Sleep(3 * time.Second)
	out := sc.Output()
	for _, pw := range []string{"pwpass", "Newsecret_xyz", "Leakpw_123", "Wrongpw_abc"} {
		if strings.Contains(out, pw) {
			t.Errorf("sqlcache's log holds the password %q:\n%s", pw, out)
		}
	}
}

// TestOperatorShutdownBackendDown: SIGTERM ends sqlcache within
// shutdown_timeout even when PostgreSQL has died under its sessions,
// catalog connections and change stream.
func TestOperatorShutdownBackendDown(t *testing.T) {
	pg := StartPostgres(t)
	sc := StartSqlcache(t, SqlcacheConfig{
		Backend:         pg.Addr(),
		ServiceDSN:      pg.URL("postgres", "", "postgres"),
		ShutdownTimeout: 2 * time.Second,
	})
	waitCacheFresh(t, sc)
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	if _, err := conn.Exec(t.Context(), `BEGIN`); err != nil {
		t.Fatal(err)
	}
	pg.Kill(t)
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if err := sc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := sc.Wait(15 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("exit %d, %v after SIGTERM with the backend dead; want 0", code, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("exited %v after SIGTERM; shutdown_timeout is 2s", d)
	}
}

// TestOperatorSignalDuringStartupCheck: SIGTERM while the startup check
// waits on a backend that accepts and never answers (it would wait 15
// seconds) stops sqlcache at once, with exit status 0 and a log line
// saying it stopped before listening, as after serving.
func TestOperatorSignalDuringStartupCheck(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			accepted <- c
		}
	}()
	addr := silent.Addr().String()
	sc := LaunchSqlcache(t, SqlcacheConfig{Backend: addr, ServiceDSN: "postgres://postgres@" + addr + "/postgres?sslmode=disable"})
	select {
	case <-accepted:
	case <-sc.done:
		t.Fatalf("sqlcache exited (%v) before its startup check connected:\n%s", sc.waitErr, sc.Output())
	case <-time.After(10 * time.Second):
		t.Fatalf("the startup check never connected to the backend:\n%s", sc.Output())
	}
	time.Sleep(200 * time.Millisecond) // past the dial, into the wait for an answer
	start := time.Now()
	if err := sc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := sc.Wait(10 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("exit %d, %v after SIGTERM during the startup check; want 0:\n%s", code, err, sc.Output())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("exited %v after SIGTERM; the check would have waited 15s, want at once", d)
	}
	if !strings.Contains(sc.Output(), "stopped during the startup check") {
		t.Errorf("no log line saying it stopped during the startup check:\n%s", sc.Output())
	}
	if c, err := net.DialTimeout("tcp", sc.Addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s accepts connections after sqlcache stopped", sc.Addr)
	}
}

// TestOperatorExplainCLIWildcardAdmin: admin.listen may leave the host
// empty (":9187", all interfaces), and `sqlcache explain` with the same
// configuration still reaches the admin API.
func TestOperatorExplainCLIWildcardAdmin(t *testing.T) {
	pg := StartPostgres(t)
	free := freeAddr(t)
	port := free[strings.LastIndexByte(free, ':'):]
	sc := StartSqlcache(t, SqlcacheConfig{
		Backend:    pg.Addr(),
		ServiceDSN: pg.URL("postgres", "", "postgres"),
		AdminAddr:  port,
	})
	waitCacheFresh(t, sc)
	pg.Exec(t, `CREATE TABLE ex (id int PRIMARY KEY, v int)`)
	for _, tc := range []struct{ sql, want string }{
		{`SELECT v FROM ex WHERE id = 3`, "cacheable: yes"},
		{`SELECT v FROM ex FOR UPDATE`, "cacheable: no"},
		{`UPDATE ex SET v = 1 WHERE id = 3`, "writes:    ex"},
	} {
		out, code := RunSqlcache(t, "explain", "--config", sc.ConfigFile, tc.sql)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("sqlcache explain %q (admin.listen %q): exit %d; want %q:\n%s", tc.sql, port, code, tc.want, out)
		}
	}
}

// TestOperatorEnvRules: "every key can be set from the environment",
// cache.rules included (as YAML/JSON flow text, the only way a list fits
// in a variable).
func TestOperatorEnvRules(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("postgres:\n  backend: \"127.0.0.1:1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SQLCACHE_CACHE_RULES", `[{"table": "public.audit_log", "cache": "never"}]`)
	out, code := RunSqlcache(t, "check", "--config", file)
	if code == 2 {
		t.Errorf("SQLCACHE_CACHE_RULES refused as bad configuration (exit 2):\n%s", out)
	}
}
