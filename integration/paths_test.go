package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// libpqCopyIn is what libpq sends for PQexecParams("COPY … FROM STDIN")
// followed by PQputCopyData and PQputCopyEnd: the extended batch with its
// Sync, the data, CopyDone (or CopyFail if fail is set) and a second Sync
// (pqEndcopy3 and PQputCopyEnd: "If we sent the COPY command in
// extended-query mode, we must issue a Sync as well"; tokio-postgres's
// copy_in does the same). PostgreSQL ignores the first Sync while in
// copy-in mode (CopyGetData), so the two Syncs get one ReadyForQuery.
func libpqCopyIn(table string, fail bool, rows ...string) []pgproto3.FrontendMessage {
	msgs := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "COPY " + table + " FROM STDIN"},
		&pgproto3.Bind{},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	}
	for _, r := range rows {
		msgs = append(msgs, &pgproto3.CopyData{Data: []byte(r + "\n")})
	}
	if fail {
		return append(msgs, &pgproto3.CopyFail{Message: "client gave up"}, &pgproto3.Sync{})
	}
	return append(msgs, &pgproto3.CopyDone{}, &pgproto3.Sync{})
}

// TestPathsExtendedCopyInvalidation: an extended-protocol COPY FROM STDIN
// sent as libpq sends it has two Syncs and one ReadyForQuery (PostgreSQL
// ignores a Sync during the copy). sqlcache must not expect a reply to
// both, or every later ReadyForQuery completes the request before its
// own, and an autocommit write's answers are dropped one request late.
func TestPathsExtendedCopyInvalidation(t *testing.T) {
	e := startProtocolEnv(t)
	e.pg.Exec(t, `CREATE TABLE sink (a int PRIMARY KEY)`)
	// Invalidation mode none: only writes through sqlcache invalidate,
	// and they must, at once (as in protocol_state_test's
	// syncless_message_then_writes).
	sc := StartSqlcache(t, SqlcacheConfig{
		Backend:    e.pg.Addr(),
		ServiceDSN: e.pg.URL("postgres", "", "postgres"),
		Extra:      map[string]any{"invalidation": map[string]any{"postgres": map[string]any{"mode": "none"}}},
	})
	reader, _ := dialRaw(t, sc.Addr, rtParams)
	for i, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "CopyDone", true: "CopyFail"}[fail], func(t *testing.T) {
			// The bytes a libpq client sees are the same both ways,
			// and PostgreSQL answers the two Syncs with one
			// ReadyForQuery: the next Query's reply is its own.
			direct, _ := dialRaw(t, e.pg.Addr(), rtParams)
			proxied, _ := dialRaw(t, sc.Addr, rtParams)
			rows := []string{fmt.Sprint(10 * i), fmt.Sprint(10*i + 1)}
			want := frameStrings(direct.roundTrip(1, libpqCopyIn("sink", fail, rows...)...))
			got := frameStrings(proxied.roundTrip(1, libpqCopyIn("sink", fail, fmt.Sprint(10*i+2))...))
			want = append(want, frameStrings(direct.roundTrip(1, &pgproto3.Query{String: "SELECT 42"}))...)
			got = append(got, frameStrings(proxied.roundTrip(1, &pgproto3.Query{String: "SELECT 42"}))...)
			t.Logf("direct: %v", want)
			if len(want) != len(got) {
				t.Errorf("extended COPY FROM STDIN then SELECT 42: direct %v, proxied %v", want, got)
			}

			id := fmt.Sprint(i + 1)
			read := func() string {
				reader.roundTrip(1, pbes("", rtQ, id)...)
				return fmt.Sprint(reader.roundTrip(1, pbes("", rtQ, id)...))
			}
			hits0 := metricValue(t, sc, "sqlcache_cache_hits_total")
			read()
			if metricValue(t, sc, "sqlcache_cache_hits_total") == hits0 {
				t.Fatal("the read was not answered from the cache; the case proves nothing")
			}
			// The COPY session writes; its UPDATE has completed
			// (CommandComplete and ReadyForQuery received) before
			// the other session reads.
			newV := "new" + id
			proxied.roundTrip(1, &pgproto3.Query{String: "UPDATE items SET v = '" + newV + "' WHERE id = " + id})
			if got := read(); !strings.Contains(got, newV) {
				t.Errorf("after an UPDATE completed through sqlcache (on a session that had run an extended COPY FROM STDIN), another session reads %v; PostgreSQL returns %q", got, newV)
			}
			time.Sleep(300 * time.Millisecond)
			if got := read(); !strings.Contains(got, newV) {
				t.Errorf("300ms later, another session still reads %v", got)
			}
			// The next request of the COPY session retires the
			// UPDATE's request.
			proxied.roundTrip(1, &pgproto3.Query{String: "SELECT 1"})
			if got := read(); !strings.Contains(got, newV) {
				t.Errorf("after the writer's next request, another session reads %v", got)
			}
		})
	}
}

// TestPathsOversizedSyncFlush: a Sync or Flush whose length field claims
// more than 256 KiB (so the reader streams it) but less than
// postgres.max_message_bytes. PostgreSQL closes just that connection
// (Sync and Flush are limited to PQ_SMALL_MESSAGE_LIMIT); sqlcache must
// not take every other session with it.
func TestPathsOversizedSyncFlush(t *testing.T) {
	for _, typ := range []byte{'S', 'H'} {
		t.Run(string(typ), func(t *testing.T) {
			_, sc := startCache(t, nil)
			bystander := connect(t, sc.URL("postgres", "", "postgres"))
			c, _ := dialRaw(t, sc.Addr, rtParams)
			body := make([]byte, 300<<10)
			hdr := []byte{typ, 0, 0, 0, 0}
			n := uint32(len(body) + 4)
			hdr[1], hdr[2], hdr[3], hdr[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
			c.writeRaw(append(hdr, body...))
			frames := c.readAll()
			t.Logf("the sender got %v", frames)
			time.Sleep(200 * time.Millisecond)
			if !sc.Alive() {
				out := sc.Output()
				if i := strings.Index(out, "panic"); i >= 0 {
					out = out[i:min(len(out), i+1500)]
				}
				t.Fatalf("sqlcache exited after one client sent a %d-byte %q message:\n%s", len(body), typ, out)
			}
			var one int
			if err := bystander.QueryRow(t.Context(), `SELECT 1`).Scan(&one); err != nil {
				t.Errorf("another session after the oversized %q: %v", typ, err)
			}
		})
	}
}

// TestPathsStampedeWaitsForSlowLeader: a miss whose answer is larger than
// cache.max_entry_bytes can never be stored: once its capture gives up,
// the other sessions missing on the same key must stop waiting for it,
// or a leader whose client reads slowly, or not at all, stalls them all.
func TestPathsStampedeWaitsForSlowLeader(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE big (id int PRIMARY KEY, pad text NOT NULL)`)
	pg.Exec(t, `INSERT INTO big SELECT i, repeat('x', 2000) FROM generate_series(1, 20000) i`)
	waitApplied(t, sc)
	const q = `SELECT id, pad FROM big ORDER BY id`

	// Warm the plan (catalog lookup) with a read that is not slow.
	warm := connect(t, sc.URL("postgres", "", "postgres"))
	rtRows(t, t.Context(), warm, q)

	slow, _ := dialRaw(t, sc.Addr, rtParams)
	slow.send(&pgproto3.Query{String: q}) // and never read the ~40 MB answer
	time.Sleep(500 * time.Millisecond)

	other := connect(t, sc.URL("postgres", "", "postgres"))
	start := time.Now()
	rows, err := other.Query(t.Context(), q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	took := time.Since(start)
	t.Logf("the other session read %d rows in %v; stampede waits %v", n, took,
		metricValue(t, sc, "sqlcache_cache_stampede_waits_total"))
	if took > 3*time.Second {
		t.Errorf("another session's read of a %d-row answer took %v while one client was slow to read the same query; directly it does not wait for that client", n, took)
	}
}

// TestPathsExtendedCopyShutdown: a session that ran a libpq-style
// extended COPY FROM STDIN is idle after it: on SIGTERM it is closed at
// once with 57P01, as idle sessions are.
func TestPathsExtendedCopyShutdown(t *testing.T) {
	pg := StartPostgres(t)
	pg.Exec(t, `CREATE TABLE sink (a int PRIMARY KEY)`)
	sc := StartSqlcache(t, SqlcacheConfig{
		Backend:         pg.Addr(),
		ServiceDSN:      pg.URL("postgres", "", "postgres"),
		ShutdownTimeout: 8 * time.Second,
	})
	waitCacheFresh(t, sc)
	copier, _ := dialRaw(t, sc.Addr, rtParams)
	copier.roundTrip(1, libpqCopyIn("sink", false, "1", "2")...)
	copier.roundTrip(1, &pgproto3.Query{String: "SELECT 1"})
	plain, _ := dialRaw(t, sc.Addr, rtParams)
	plain.roundTrip(1, &pgproto3.Query{String: "SELECT 1"})

	start := time.Now()
	if err := sc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, c := range []*rawConn{plain, copier} {
		name := []string{"plain", "copier"}[i]
		f, err := c.next()
		took := time.Since(start)
		t.Logf("%s: %v, %v after SIGTERM", name, f, took)
		if err != nil || errorCode(f) != "57P01" || took > 3*time.Second {
			t.Errorf("idle session (%s) after SIGTERM: got %v, %v after %v; want FATAL 57P01 at once", name, f, err, took)
		}
	}
}

// TestPathsDeepExpression: a Query of ~120 KB, `SELECT 1+1+…+1` (60,000
// terms). pg_query turns a parse tree into protobuf by recursion with no
// stack check; PostgreSQL answers the client with an error and goes on,
// and sqlcache must not die (a SIGSEGV in cgo ends the whole process).
func TestPathsDeepExpression(t *testing.T) {
	pg, sc := startCache(t, nil)
	sql := "SELECT 1" + strings.Repeat("+1", 60000)

	direct, _ := dialRaw(t, pg.Addr(), rtParams)
	want := frameStrings(direct.roundTrip(1, &pgproto3.Query{String: sql}))
	t.Logf("PostgreSQL answers %.300v", want)

	bystander := connect(t, sc.URL("postgres", "", "postgres"))
	c, _ := dialRaw(t, sc.Addr, rtParams)
	c.send(&pgproto3.Query{String: sql})
	var got []frame
	for {
		f, err := c.next()
		if err != nil {
			break
		}
		got = append(got, f)
		if f[0] == 'Z' {
			break
		}
	}
	time.Sleep(200 * time.Millisecond)
	if !sc.Alive() {
		out := sc.Output()
		if i := strings.Index(out, "SIGSEGV"); i >= 0 {
			out = out[i:min(len(out), i+1200)]
		}
		t.Fatalf("sqlcache exited after one client sent a %d-byte SELECT 1+1+…; the client got %v:\n%s", len(sql), got, out)
	}
	if fmt.Sprint(frameStrings(got)) != fmt.Sprint(want) {
		t.Errorf("replies differ: direct %.300v, proxied %.300v", want, frameStrings(got))
	}
	var one int
	if err := bystander.QueryRow(t.Context(), `SELECT 1`).Scan(&one); err != nil {
		t.Errorf("another session afterwards: %v", err)
	}
}

// rssKB returns the resident set size of process pid in KiB.
func rssKB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var n int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")), "%d", &n)
			return n
		}
	}
	return 0
}

// TestPathsSyncFlood: a client that pipelines Syncs and never reads its
// replies is held back directly by the sockets alone; through sqlcache
// every Sync in flight is also a queued request, so their number must be
// bounded (maxInFlight), or the memory they take is not.
func TestPathsSyncFlood(t *testing.T) {
	_, sc := startCache(t, nil)
	c, _ := dialRaw(t, sc.Addr, rtParams)
	before := rssKB(t, sc.Cmd.Process.Pid)
	chunk := bytes.Repeat([]byte{'S', 0, 0, 0, 4}, 1<<16)
	sent := 0
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		n, err := c.conn.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	time.Sleep(time.Second)
	after := rssKB(t, sc.Cmd.Process.Pid)
	c.conn.Close()
	// Its session ends with it, though it was waiting for room.
	for deadline := time.Now().Add(5 * time.Second); metricValue(t, sc, "sqlcache_client_connections") > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the session of a client that closed mid-flood is still open")
		}
	}
	t.Logf("sent %d Syncs unread; sqlcache RSS %d KiB -> %d KiB", sent/5, before, after)
	if after-before > 64<<10 {
		t.Errorf("one client that pipelined %d Syncs (%d MB) without reading made sqlcache's RSS grow by %d MiB (README: about 100 KiB per connection for buffers); directly PostgreSQL holds nothing beyond its socket buffers", sent/5, sent>>20, (after-before)>>10)
	}
}

// TestPathsCancelWhileWaitingForFill: a session that misses on a key
// another session is filling waits for that fill inside sqlcache, with
// nothing running on its own backend. Its client's CancelRequest must
// still cancel it (57014), as it cancels its own query directly.
func TestPathsCancelWhileWaitingForFill(t *testing.T) {
	pg, sc := startCache(t, nil)
	const q = `SELECT count(*) FROM generate_series(1, 40000000) g`
	ctx := t.Context()
	for _, target := range []struct{ name, url string }{
		{"direct", pg.URL("postgres", "", "postgres")},
		{"sqlcache", sc.URL("postgres", "", "postgres")},
	} {
		t.Run(target.name, func(t *testing.T) {
			leader := connect(t, target.url)
			waiter := connect(t, target.url)
			// Let the plan be decided first.
			var n int64
			if err := leader.QueryRow(ctx, `SELECT count(*) FROM generate_series(1, 10) g`, pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil {
				t.Fatal(err)
			}
			leaderDone := make(chan struct{})
			go func() {
				defer close(leaderDone)
				leader.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol)
			}()
			defer func() {
				// Before the connections close (t.Cleanup), which must not
				// race the leader's query.
				leader.PgConn().CancelRequest(context.Background())
				<-leaderDone
			}()
			time.Sleep(300 * time.Millisecond)
			errc := make(chan error, 1)
			start := time.Now()
			go func() {
				var n int64
				errc <- waiter.QueryRow(ctx, q, pgx.QueryExecModeSimpleProtocol).Scan(&n)
			}()
			time.Sleep(500 * time.Millisecond)
			if err := waiter.PgConn().CancelRequest(ctx); err != nil {
				t.Fatal(err)
			}
			err := <-errc
			t.Logf("%s: the cancelled read returned %v after %v", target.name, err, time.Since(start))
			if code := pgCode(err); code != "57014" {
				t.Errorf("a read cancelled 500ms after it was sent returned %v after %v; want 57014 (canceling statement due to user request), as directly", err, time.Since(start))
			}
		})
	}
}

// TestPathsOddButFramedInput compares, byte for byte, messages that
// are well framed but wrong, on a statement whose answers are cached:
// each gets PostgreSQL's own error and the session goes on.
func TestPathsOddButFramedInput(t *testing.T) {
	e := startProtocolEnv(t)
	e.warm(t, step(1, pbes("", rtQ, "1")...), step(1, pbes("", rtQ, "1")...))
	syncs := make([]pgproto3.FrontendMessage, 50)
	for i := range syncs {
		syncs[i] = &pgproto3.Sync{}
	}
	hits := e.compare(t,
		step(1, pbes("", rtQ, "1")...),
		// Too few and too many parameters for the cached statement.
		rtStep{syncs: 1, msgs: pbes("", rtQ), anyRoutine: true},
		rtStep{syncs: 1, msgs: pbes("", rtQ, "1", "2"), anyRoutine: true},
		step(1, &pgproto3.Describe{ObjectType: 'P', Name: "nope"}, &pgproto3.Sync{}),
		step(1, &pgproto3.Execute{Portal: "nope"}, &pgproto3.Sync{}),
		step(1, &pgproto3.Close{ObjectType: 'P', Name: "nope"}, &pgproto3.Close{ObjectType: 'S', Name: "nope"}, &pgproto3.Sync{}),
		step(50, syncs...),
		// COPY messages outside COPY are ignored.
		step(1, &pgproto3.CopyData{Data: []byte("x")}, &pgproto3.CopyDone{}, &pgproto3.CopyFail{Message: "no"}, &pgproto3.Query{String: "SELECT 7"}),
		step(1, pbes("", rtQ, "1")...),
		// Simple COPY FROM STDIN with CopyFail, then a cached read.
		step(1, &pgproto3.Query{String: "COPY items FROM STDIN"}, &pgproto3.CopyData{Data: []byte("100\thundred\n")}, &pgproto3.CopyFail{Message: "changed my mind"}),
		step(1, pbes("", rtQ, "1")...),
		step(1, &pgproto3.Query{String: "COPY items TO STDOUT"}),
		step(1, pbes("", rtQ, "1")...),
	)
	if hits < 2 {
		t.Errorf("only %v hits; the case proves little", hits)
	}
}
