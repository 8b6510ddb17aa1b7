package integration

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestCancel cancels a long query through the proxy: it must end with
// 57014 within a second, while a query on another connection goes on.
func TestCancel(t *testing.T) {
	_, sc := startPair(t)
	ctx := t.Context()
	victim := connect(t, sc.URL("app", "", "postgres"))
	bystander := connect(t, sc.URL("app", "", "postgres"))

	var wg sync.WaitGroup
	var bystanderErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, bystanderErr = bystander.Exec(ctx, `SELECT pg_sleep(2)`)
	}()

	errc := make(chan error, 1)
	go func() {
		_, err := victim.Exec(ctx, `SELECT pg_sleep(30)`)
		errc <- err
	}()
	waitForActivity(t, sc, "SELECT pg_sleep(30)")

	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := victim.PgConn().CancelRequest(cctx); err != nil {
		t.Fatalf("CancelRequest: %v", err)
	}
	select {
	case err := <-errc:
		if code := pgCode(err); code != "57014" {
			t.Errorf("cancelled query: %v; want SQLSTATE 57014", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("cancel took %v; want under 1s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("query not cancelled after 5s")
	}
	wg.Wait()
	if bystanderErr != nil {
		t.Errorf("query on another connection: %v; want it untouched by the cancel", bystanderErr)
	}
	// The cancelled session is still usable, as it is directly.
	var one int
	if err := victim.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		t.Errorf("query after cancel on the same session: %v", err)
	}
}

// TestCancelRace cancels half of many sessions at once, each in a long
// query (PgBouncer's test_cancel_race): every cancel must reach its own
// session and no other, and every session stays usable.
func TestCancelRace(t *testing.T) {
	_, sc := startPair(t)
	ctx := t.Context()
	const n = 16
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		conns[i] = connect(t, sc.URL("app", "", "postgres"))
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got int
			errs[i] = c.QueryRow(ctx, `SELECT $1::int FROM pg_sleep(3)`, i).Scan(&got)
			if errs[i] == nil && got != i {
				errs[i] = fmt.Errorf("answered %d", got)
			}
		}()
	}
	waitForSleepers(t, sc, "", n)

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var cancels sync.WaitGroup
	for i := 0; i < n; i += 2 {
		cancels.Add(1)
		go func() {
			defer cancels.Done()
			if err := conns[i].PgConn().CancelRequest(cctx); err != nil {
				t.Errorf("session %d: CancelRequest: %v", i, err)
			}
		}()
	}
	cancels.Wait()
	wg.Wait()
	for i, err := range errs {
		switch {
		case i%2 == 0 && pgCode(err) != "57014":
			t.Errorf("cancelled session %d: %v; want SQLSTATE 57014", i, err)
		case i%2 == 1 && err != nil:
			t.Errorf("session %d, not cancelled: %v", i, err)
		}
		var one int
		if err := conns[i].QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
			t.Errorf("session %d after the cancels: %v", i, err)
		}
	}
	if got := metricValue(t, sc, `sqlcache_cancel_requests_total{result="forwarded"}`); got != n/2 {
		t.Errorf("forwarded cancels = %v; want %d", got, n/2)
	}
}

// TestCancelUnknownKey sends a CancelRequest with a key no session has: it
// must not reach the backend, and the running query goes on.
func TestCancelUnknownKey(t *testing.T) {
	_, sc := startPair(t)
	conn := connect(t, sc.URL("app", "", "postgres"))
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Exec(t.Context(), `SELECT pg_sleep(1)`)
		errc <- err
	}()
	waitForActivity(t, sc, "SELECT pg_sleep(1)")
	pid := conn.PgConn().PID()
	// Right pid, wrong secret: PostgreSQL itself would ignore it too, but
	// sqlcache must not even forward it.
	raw := []byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, byte(pid >> 24), byte(pid >> 16), byte(pid >> 8), byte(pid), 1, 2, 3, 4}
	c, err := net.DialTimeout("tcp", sc.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(raw)
	// sqlcache closes a cancel connection once it has dealt with it.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Errorf("cancel connection answered %d bytes, %v; want it closed", n, err)
	}
	c.Close()
	if err := <-errc; err != nil {
		t.Errorf("query after a bogus cancel: %v", err)
	}
	if got := metricValue(t, sc, `sqlcache_cancel_requests_total{result="unknown"}`); got != 1 {
		t.Errorf("unknown cancels = %v; want 1", got)
	}
}

// waitForActivity waits until a backend runs query and sleeps in it,
// looking through the proxy itself. Each query it is given calls
// pg_sleep. A query is also "active" while pgx prepares it (Parse,
// Describe, Sync), after which the session is idle for a moment: waiting
// for the sleep makes sure the execution itself is under way.
func waitForActivity(t *testing.T, sc *Sqlcache, query string) {
	t.Helper()
	waitForSleepers(t, sc, query, 1)
}

// waitForSleepers waits until n backends sleep in pg_sleep running
// query, or running anything if query is "", looking through the proxy
// itself.
func waitForSleepers(t *testing.T, sc *Sqlcache, query string, n int) {
	t.Helper()
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	waitUntil(t, 10*time.Second, fmt.Sprintf("%d sessions in pg_sleep running %q", n, query), func() bool {
		var got int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE ($1 = '' OR query = $1) AND state = 'active' AND wait_event = 'PgSleep'`, query).Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got >= n
	})
}
