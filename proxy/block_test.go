package proxy

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sqlcache/sqlcache/cachepolicy"
	"github.com/sqlcache/sqlcache/wire/pgwire"
)

func TestParseMillis(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"250", 250 * time.Millisecond, true},
		{"1500ms", 1500 * time.Millisecond, true},
		{"30s", 30 * time.Second, true},
		{"5min", 5 * time.Minute, true},
		{"2h", 2 * time.Hour, true},
		{"1d", 24 * time.Hour, true},
		{"", 0, false},
		{"ms", 0, false},
		{"5 min", 0, false},
		{"-1", 0, false},
		{"1.5s", 0, false},
		{"10us", 0, false},
		{"99999999999999999999", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseMillis([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseMillis(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestReparseInBatch: after a hit on Parse "" inside a transaction block,
// the backend lacks the unnamed statement. A later batch that does not use
// it goes out as sent; one that does gets the Parse ahead of it, in the
// same batch, so that if it fails (the table was dropped since the hit,
// which took no lock) the client sees that error, rather than sqlcache
// swallowing it and leaving the block aborted behind the client's back.
func TestReparseInBatch(t *testing.T) {
	p := testProxy(t)
	pl := newPlan(hitSQL, cachepolicy.Analyze(hitSQL))
	pl.decided = true
	pl.decision = cachepolicy.Decision{Cacheable: true, Tables: []string{"t"}, Rule: -1}
	p.planner.plans.add(planKey{"db", hitSQL}, pl, pl.size())
	client, backend := startSession(t, p)
	sc := newScripted(t, client, backend)
	fromClient, toBackend, reply := sc.fromClient, sc.toBackend, sc.reply
	cr := sc.cr
	row := []pgproto3.BackendMessage{&pgproto3.DataRow{Values: [][]byte{[]byte("42")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}}

	client.Write(encode(t, &pgproto3.Query{String: "BEGIN"}))
	if got := toBackend(); got != "Q "+txDefaultsSQL {
		t.Fatalf("backend read %q; want sqlcache's read of the defaults", got)
	}
	answerTxDefaults(t, backend, "read committed", "0")
	toBackend()
	reply(pgwire.TxActive, &pgproto3.CommandComplete{CommandTag: []byte("BEGIN")})
	fromClient()

	read := encode(t, &pgproto3.Parse{Query: hitSQL}, &pgproto3.Bind{Parameters: [][]byte{[]byte("1")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	client.Write(read)
	toBackend()
	reply(pgwire.TxActive, append([]pgproto3.BackendMessage{&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}}, row...)...)
	fromClient()
	client.Write(read)
	if got := fromClient(); got != "12DCZT" {
		t.Fatalf("the repeated read in the block: client read %q; want a hit, 12DCZT", got)
	}

	// A batch that does not use the unnamed statement. The first request
	// relayed after the hit gets sqlcache's SELECT 1 ahead of it, taking
	// the snapshot the hit did not (snapshotIfHits).
	client.Write(encode(t, &pgproto3.Parse{Name: "s1", Query: "SHOW work_mem"}, &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	if got := toBackend(); got != "Q SELECT 1" {
		t.Errorf("the first request after a hit in the block reached the backend as %q; want sqlcache's Q SELECT 1 first", got)
	}
	reply(pgwire.TxActive, &pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	if got := toBackend(); got != "PBES" {
		t.Errorf("a batch that does not use the unnamed statement reached the backend as %q; want PBES, as sent", got)
	}
	reply(pgwire.TxActive, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.DataRow{Values: [][]byte{[]byte("4MB")}}, &pgproto3.CommandComplete{CommandTag: []byte("SHOW")})
	if got := fromClient(); got != "12DCZT" {
		t.Errorf("client read %q; want 12DCZT", got)
	}

	// One that binds it: the Parse goes first, in the same batch.
	bindUnnamed := encode(t, &pgproto3.Bind{Parameters: [][]byte{[]byte("2")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	client.Write(bindUnnamed)
	if got := toBackend(); got != "PBES" {
		t.Fatalf("a Bind of the unnamed statement reached the backend as %q; want PBES (the Parse in its batch)", got)
	}
	reply(pgwire.TxFailed, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P01", Message: `relation "t" does not exist`})
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	msg, err := cr.Next()
	if err != nil || msg.Type != 'E' || !bytes.Contains(msg.Body, []byte("42P01")) {
		t.Fatalf("client read %q %q, %v; want the Parse's ErrorResponse", msg.Type, msg.Body, err)
	}
	if got := fromClient(); got != "ZE" {
		t.Errorf("after the error the client read %q; want ZE", got)
	}
	client.Write(encode(t, &pgproto3.Query{String: "ROLLBACK"}))
	toBackend()
	reply(pgwire.TxIdle, &pgproto3.CommandComplete{CommandTag: []byte("ROLLBACK")})
	fromClient()

	// Outside a block, likewise; on success the client does not see the
	// Parse's ParseComplete.
	client.Write(read)
	if got := fromClient(); got != "12DCZI" {
		t.Fatalf("the read outside the block: client read %q; want a hit, 12DCZI", got)
	}
	client.Write(bindUnnamed)
	if got := toBackend(); got != "PBES" {
		t.Fatalf("a Bind of the unnamed statement reached the backend as %q; want PBES", got)
	}
	reply(pgwire.TxIdle, append([]pgproto3.BackendMessage{&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}}, row...)...)
	if got := fromClient(); got != "2DCZI" {
		t.Errorf("client read %q; want 2DCZI, without sqlcache's ParseComplete", got)
	}
}

// scripted drives a session over in-memory connections, playing both the
// client and a scripted backend.
type scripted struct {
	t               *testing.T
	client, backend net.Conn
	cr, br          *pgwire.Reader
}

func newScripted(t *testing.T, client, backend net.Conn) *scripted {
	return &scripted{t: t, client: client, backend: backend, cr: pgwire.NewReader(client, 0), br: pgwire.NewReader(backend, 0)}
}

// fromClient returns the types of the messages the client reads up to its
// ReadyForQuery, and that ReadyForQuery's status.
func (sc *scripted) fromClient() string {
	sc.t.Helper()
	var types []byte
	for {
		sc.client.SetReadDeadline(time.Now().Add(2 * time.Second))
		msg, err := sc.cr.Next()
		if err != nil {
			sc.t.Fatalf("client read: %v (after %q)", err, types)
		}
		types = append(types, msg.Type)
		if msg.Type == 'Z' {
			return string(append(types, msg.Body[0]))
		}
	}
}

// toBackend returns the types of the messages the backend reads up to a
// Sync or Query; for a Query, its text after the type.
func (sc *scripted) toBackend() string {
	sc.t.Helper()
	var types []byte
	for {
		sc.backend.SetReadDeadline(time.Now().Add(2 * time.Second))
		msg, err := sc.br.Next()
		if err != nil {
			sc.t.Fatalf("backend read: %v (after %q)", err, types)
		}
		types = append(types, msg.Type)
		if msg.Type == 'Q' {
			return string(types) + " " + string(bytes.TrimSuffix(msg.Body, []byte{0}))
		}
		if msg.Type == 'S' {
			return string(types)
		}
	}
}

// reply sends msgs and a ReadyForQuery with status st as the backend.
func (sc *scripted) reply(st pgwire.TxStatus, msgs ...pgproto3.BackendMessage) {
	sc.t.Helper()
	var out []byte
	for _, m := range msgs {
		out = append(out, encode1(sc.t, m)...)
	}
	if _, err := sc.backend.Write(pgwire.AppendReadyForQuery(out, st)); err != nil {
		sc.t.Fatal(err)
	}
}

// TestTxDefaultsReadFailed: when reading the session's transaction
// defaults fails, the block is relayed, and the read is not tried again
// before every BEGIN, only once the session's settings changed.
func TestTxDefaultsReadFailed(t *testing.T) {
	p := testProxy(t)
	client, backend := startSession(t, p)
	sc := newScripted(t, client, backend)
	begin := func() {
		t.Helper()
		client.Write(encode(t, &pgproto3.Query{String: "BEGIN"}))
	}
	done := func(sql, tag string, st pgwire.TxStatus) {
		t.Helper()
		if got := sc.toBackend(); got != "Q "+sql {
			t.Fatalf("backend read %q; want %q", got, "Q "+sql)
		}
		sc.reply(st, &pgproto3.CommandComplete{CommandTag: []byte(tag)})
		sc.fromClient()
	}
	begin()
	if got := sc.toBackend(); got != "Q "+txDefaultsSQL {
		t.Fatalf("backend read %q; want sqlcache's read of the defaults", got)
	}
	sc.reply(pgwire.TxIdle, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42501", Message: "permission denied for function current_setting"})
	done("BEGIN", "BEGIN", pgwire.TxActive)
	client.Write(encode(t, &pgproto3.Query{String: "COMMIT"}))
	done("COMMIT", "COMMIT", pgwire.TxIdle)
	begin()
	done("BEGIN", "BEGIN", pgwire.TxActive)
	client.Write(encode(t, &pgproto3.Query{String: "COMMIT"}))
	done("COMMIT", "COMMIT", pgwire.TxIdle)
	client.Write(encode(t, &pgproto3.Query{String: "SET search_path = app"}))
	done("SET search_path = app", "SET", pgwire.TxIdle)
	begin()
	if got := sc.toBackend(); got != "Q "+txDefaultsSQL {
		t.Fatalf("after a SET the backend read %q; want sqlcache's read of the defaults again", got)
	}
	answerTxDefaults(t, backend, "read committed", "0")
	done("BEGIN", "BEGIN", pgwire.TxActive)
}
