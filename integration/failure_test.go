package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestBackendRestart kills the postmaster mid-query: the client must get
// an error within a second, sqlcache must keep running, and once Postgres
// is back new clients must succeed.
func TestBackendRestart(t *testing.T) {
	pg, sc := startPair(t)
	conn := connect(t, sc.URL("app", "", "postgres"))
	idle := connect(t, sc.URL("app", "", "postgres"))
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), `SELECT pg_sleep(30)`)
		errc <- err
	}()
	waitForActivity(t, sc, "SELECT pg_sleep(30)")

	start := time.Now()
	pg.Kill(t)
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("query succeeded although the postmaster was killed")
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code != "08006" && !strings.HasPrefix(pgErr.Code, "57") {
			t.Errorf("error %v; want 08006 or the backend's own shutdown error", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("client got the error after %v; want under 1s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no error 10s after killing the postmaster")
	}
	// A session that was idle learns of the loss on its next use.
	if _, err := idle.Exec(t.Context(), `SELECT 1`); err == nil {
		t.Error("idle session still answers after its backend died")
	}
	if !sc.Alive() {
		t.Fatalf("sqlcache exited with the backend:\n%s", sc.Output())
	}

	// While Postgres is down, a new client gets a clear error.
	got := loginErrorAny(t, sc.URL("app", "", "postgres"))
	if !strings.Contains(got, "08001") || !strings.Contains(got, pg.Addr()) {
		t.Errorf("login while the backend is down: %s; want 08001 naming %s", got, pg.Addr())
	}
	if n := metricValue(t, sc, "sqlcache_backend_connect_errors_total"); n < 1 {
		t.Errorf("backend connect errors = %v; want at least 1", n)
	}

	pg.Start(t)
	checkHealthy(t, sc)
}

// TestBackendUnreachableAtStart: sqlcache starts although nothing listens
// at the backend address, reports not ready, and gives each client 08001.
func TestBackendUnreachableAtStart(t *testing.T) {
	dead := freeAddr(t)
	sc := StartSqlcache(t, SqlcacheConfig{Backend: dead, BackendDown: true})
	got := loginErrorAny(t, sc.URL("app", "", "postgres"))
	if !strings.Contains(got, "08001") || !strings.Contains(got, dead) {
		t.Errorf("login error %q; want 08001 naming %s", got, dead)
	}
	body, err := sc.adminGet("/readyz")
	if err == nil {
		t.Errorf("/readyz answered %q with the backend down; want 503", body)
	}
}

// TestGracefulShutdown sends SIGTERM while one session is idle and one
// runs a query: the idle one is closed at once with 57P01, new
// connections are refused, the running query completes, and the process
// exits 0.
func TestGracefulShutdown(t *testing.T) {
	pg := StartPostgres(t)
	sc := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr(), ShutdownTimeout: 20 * time.Second})
	idle := connect(t, sc.URL("app", "", "postgres"))
	busy := connect(t, sc.URL("app", "", "postgres"))
	done := make(chan error, 1)
	go func() {
		var s string
		done <- busy.QueryRow(context.Background(), `SELECT pg_sleep(1.5)::text`).Scan(&s)
	}()
	waitForActivity(t, sc, "SELECT pg_sleep(1.5)::text")

	if err := sc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The listener closes first.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", sc.Addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 5s after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := idle.Exec(t.Context(), `SELECT 1`); err == nil {
		t.Errorf("idle session after SIGTERM: %v; want it closed (57P01)", err)
	}
	if err := <-done; err != nil {
		t.Errorf("in-flight query during shutdown: %v; want it to complete", err)
	}
	code, err := sc.Wait(10 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("exit code %d, %v; want 0", code, err)
	}
}

// TestShutdownTimeout: a transaction left open past shutdown_timeout is cut.
func TestShutdownTimeout(t *testing.T) {
	pg := StartPostgres(t)
	sc := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr(), ShutdownTimeout: time.Second})
	tx := connect(t, sc.URL("app", "", "postgres"))
	if _, err := tx.Exec(t.Context(), `BEGIN`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sc.Signal(syscall.SIGTERM)
	code, err := sc.Wait(10 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("exit code %d, %v; want 0", code, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("exited %v after SIGTERM; want about shutdown_timeout (1s)", d)
	}
	if _, err := tx.Exec(t.Context(), `SELECT 1`); err == nil {
		t.Error("session in a transaction survived the shutdown timeout")
	}
}

// TestCatalogUnresponsive: the service login (postgres.service_dsn) reaches
// a server that accepts connections and never answers. Reads are relayed,
// uncached; after the first lookup times out, the following statements do
// not each wait for the lookup timeout (5s) again.
func TestCatalogUnresponsive(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		var held []net.Conn
		for {
			c, err := silent.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	pg := StartPostgres(t)
	sc := StartSqlcache(t, SqlcacheConfig{
		Backend:    pg.Addr(),
		ServiceDSN: "postgres://sqlcache@" + silent.Addr().String() + "/postgres?sslmode=disable",
		Extra:      map[string]any{"invalidation": map[string]any{"postgres": map[string]any{"mode": "none"}}},
	})
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	start := time.Now()
	const reads = 10
	for i := range reads {
		var v int
		// Distinct texts: each needs its own decision.
		if err := conn.QueryRow(t.Context(), fmt.Sprintf("SELECT %d FROM pg_database LIMIT 1", i)).Scan(&v); err != nil || v != i {
			t.Fatalf("read %d through sqlcache: %d, %v", i, v, err)
		}
	}
	// One lookup timeout, plus the reads themselves; without the retry
	// delay each read would wait for its own timeout (50s in all).
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("%d reads took %v with the catalog unresponsive; each waited for its own lookup", reads, d)
	}
	if hits := metricValue(t, sc, "sqlcache_cache_hits_total"); hits != 0 {
		t.Errorf("%v hits without catalog facts", hits)
	}
}
