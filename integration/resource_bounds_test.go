package integration

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rbPad returns n bytes of letters that differ from one i to the next in
// their first bytes.
func rbPad(i, n int) string {
	var b strings.Builder
	b.Grow(n)
	fmt.Fprintf(&b, "%010d", i)
	for b.Len() < n {
		b.WriteByte(byte('a' + (b.Len()*7+i)%26))
	}
	return b.String()
}

// rbStart starts PostgreSQL and sqlcache with a small cache budget and
// Go's collector set to collect at 10% growth (GOGC=10), so that the
// heap sqlcache reports stays close to what it keeps alive.
func rbStart(t *testing.T) (*Postgres, *Sqlcache) {
	t.Helper()
	pg := StartPostgres(t)
	sc := StartSqlcache(t, SqlcacheConfig{
		Backend:    pg.Addr(),
		ServiceDSN: pg.URL("postgres", "", "postgres"),
		Extra:      map[string]any{"cache": map[string]any{"max_bytes": "8MiB"}},
		Env:        []string{"GOGC=10"},
	})
	waitCacheFresh(t, sc)
	return pg, sc
}

// rbLiveMiB makes sqlcache produce garbage (answers cached and evicted
// again from its 8 MiB budget), so that its collector runs, and returns
// the heap it then reports in MiB: about what it keeps alive.
func rbLiveMiB(t *testing.T, sc *Sqlcache) float64 {
	t.Helper()
	c, _ := dialRaw(t, sc.Addr, rtParams)
	gcs := metricValue(t, sc, "go_gc_duration_seconds_count")
	for i := range 150 {
		c.roundTrip(1, &pgproto3.Query{String: fmt.Sprintf("SELECT repeat('x', 200000 + %d)", i)})
	}
	c.conn.Close()
	time.Sleep(500 * time.Millisecond)
	heap := metricValue(t, sc, "go_memstats_heap_alloc_bytes") / (1 << 20)
	t.Logf("heap %.1f MiB, RSS %d KiB (%v collections during the churn)", heap, rssKB(t, sc.Cmd.Process.Pid),
		metricValue(t, sc, "go_gc_duration_seconds_count")-gcs)
	return heap
}

// TestResourceBoundsSessionPlanTexts: a session that sends many distinct
// large SQL texts (a string constant of 200 KB, as psycopg2 or PDO's
// emulated prepares inline a document or a long list) must not make
// sqlcache keep every text: directly, PostgreSQL keeps nothing of a
// simple Query once it has answered it. README bounds a connection's
// memory at about 100 KiB for buffers, more only while large rows pass.
func TestResourceBoundsSessionPlanTexts(t *testing.T) {
	_, sc := rbStart(t)
	before := rbLiveMiB(t, sc)
	c, _ := dialRaw(t, sc.Addr, rtParams)
	const n, size = 200, 200 << 10
	for i := range n {
		got := c.roundTrip(1, &pgproto3.Query{String: "SELECT length('" + rbPad(i, size) + "')"})
		if len(got) != 4 || got[1][0] != 'D' {
			t.Fatalf("query %d: got %v", i, got)
		}
	}
	// The session stays open, idle.
	after := rbLiveMiB(t, sc)
	if grew := after - before; grew > 32 {
		t.Errorf("one idle session that had sent %d distinct %d-KiB queries (%d MiB in all, each answered) keeps %.0f MiB of sqlcache's heap; PostgreSQL keeps nothing of an answered simple Query", n, size>>10, n*size>>20, grew)
	}
}

// TestResourceBoundsInsertTexts: an application that inserts documents
// with their values inlined in the SQL text (psycopg2 interpolates
// parameters on the client), one connection after another. Each text is
// used once; once its connection has closed nothing of it should stay in
// sqlcache's memory.
func TestResourceBoundsInsertTexts(t *testing.T) {
	pg, sc := rbStart(t)
	pg.Exec(t, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	before := rbLiveMiB(t, sc)
	const conns, per, size = 4, 60, 200 << 10
	for k := range conns {
		c, _ := dialRaw(t, sc.Addr, rtParams)
		for i := range per {
			id := k*per + i
			got := c.roundTrip(1, &pgproto3.Query{String: fmt.Sprintf("INSERT INTO docs VALUES (%d, '%s')", id, rbPad(id, size))})
			if len(got) != 2 || got[0][0] != 'C' {
				t.Fatalf("insert %d: got %v", id, got)
			}
		}
		c.conn.Close()
	}
	for deadline := time.Now().Add(5 * time.Second); metricValue(t, sc, "sqlcache_client_connections") > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("sessions still open")
		}
	}
	after := rbLiveMiB(t, sc)
	if grew := after - before; grew > 32 {
		t.Errorf("after %d connections each inserted %d rows of %d KiB through sqlcache and closed (%d MiB of SQL text, each text used once), sqlcache's heap is %.0f MiB larger; PostgreSQL keeps nothing of them", conns, per, size>>10, conns*per*size>>20, grew)
	}
}

// TestResourceBoundsShutdownWithUnreadClients: clients that asked for a
// cached answer and stopped reading (a hung application, a client behind
// a dead network path) must not hold up sqlcache's shutdown: README says
// SIGTERM closes idle sessions with 57P01 at once and the rest after
// shutdown_timeout.
func TestResourceBoundsShutdownWithUnreadClients(t *testing.T) {
	pg := StartPostgres(t)
	pg.Exec(t, `CREATE TABLE mid (id int PRIMARY KEY, pad text NOT NULL)`)
	pg.Exec(t, `INSERT INTO mid SELECT i, repeat('x', 1000) FROM generate_series(1, 900) i`)
	sc := StartSqlcache(t, SqlcacheConfig{
		Backend:         pg.Addr(),
		ServiceDSN:      pg.URL("postgres", "", "postgres"),
		ShutdownTimeout: 2 * time.Second,
	})
	waitCacheFresh(t, sc)
	const q = `SELECT id, pad FROM mid ORDER BY id` // about 900 KB, cached
	warm := connect(t, sc.URL("postgres", "", "postgres"))
	rtCached(t, t.Context(), sc, warm, q, pgx.QueryExecModeSimpleProtocol)
	warm.Close(t.Context())

	const stuck = 12
	for range stuck {
		c, _ := dialRaw(t, sc.Addr, rtParams)
		for range 10 {
			c.send(&pgproto3.Query{String: q}) // answered from the cache, never read
		}
	}
	bystander, _ := dialRaw(t, sc.Addr, rtParams)
	time.Sleep(time.Second)

	start := time.Now()
	if err := sc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	f, err := bystander.next()
	byTook := time.Since(start)
	_, werr := sc.Wait(30 * time.Second)
	took := time.Since(start)
	t.Logf("the idle bystander got %v, %v after %v; sqlcache exited after %v (%v)", f, err, byTook, took, werr)
	if err != nil || errorCode(f) != "57P01" || byTook > 3*time.Second {
		t.Errorf("an idle session got %v, %v, %v after SIGTERM, with %d clients not reading their cached answers; want FATAL 57P01 at once", f, err, byTook, stuck)
	}
	if took > 6*time.Second {
		t.Errorf("sqlcache took %v to exit after SIGTERM with shutdown_timeout 2s, because %d clients were not reading their cached answers", took, stuck)
	}
}

// TestResourceBoundsAbandonedSessions: clients that vanish mid-COPY,
// mid-transaction (holding a row lock), mid-answer and mid-pipeline. As
// directly, each backend must end and its locks go, so that writers are
// not blocked and connection slots are not used up.
func TestResourceBoundsAbandonedSessions(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE acct (id int PRIMARY KEY, v int)`)
	pg.Exec(t, `INSERT INTO acct SELECT i, 0 FROM generate_series(1, 10) i`)
	pg.Exec(t, `CREATE TABLE sink (a int)`)
	admin := pg.Conn(t)
	count := func() int {
		var n int
		if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name = 'rb'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	params := map[string]string{"user": "postgres", "database": "postgres", "application_name": "rb"}
	var conns []*rawConn
	for range 4 {
		c, _ := dialRaw(t, sc.Addr, params)
		conns = append(conns, c)
	}
	// Mid-COPY FROM STDIN.
	conns[0].send(&pgproto3.Query{String: "COPY sink FROM STDIN"}, &pgproto3.CopyData{Data: []byte("1\n2\n")})
	// Mid-transaction, holding a row lock.
	conns[1].roundTrip(1, &pgproto3.Query{String: "BEGIN; UPDATE acct SET v = 1 WHERE id = 1"})
	// Mid-answer: a large one, unread.
	conns[2].send(&pgproto3.Query{String: "SELECT repeat('x', 1000) FROM generate_series(1, 200000)"})
	// Mid-pipeline: a long one, unread.
	var pipe []pgproto3.FrontendMessage
	for range 2000 {
		pipe = append(pipe, &pgproto3.Query{String: "SELECT pg_sleep(0.001), repeat('y', 5000)"})
	}
	conns[3].send(pipe...)
	time.Sleep(time.Second)
	if n := count(); n != 4 {
		t.Fatalf("%d backends for the 4 sessions", n)
	}
	for _, c := range conns {
		c.conn.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := count(); n > 0 {
		rows := rtRows(t, t.Context(), admin, `SELECT state, left(query, 60) FROM pg_stat_activity WHERE application_name = 'rb'`)
		t.Errorf("10 s after 4 clients closed their connections, %d of their backends remain:\n%s", n, rows)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	w := connect(t, sc.URL("postgres", "", "postgres"))
	if _, err := w.Exec(ctx, `UPDATE acct SET v = 2 WHERE id = 1`); err != nil {
		t.Errorf("a write of the row the vanished transaction had locked: %v", err)
	}
	if got := metricValue(t, sc, "sqlcache_client_connections"); got != 1 {
		t.Errorf("sqlcache_client_connections = %v; want 1", got)
	}
}
