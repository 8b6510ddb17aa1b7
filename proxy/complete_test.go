package proxy

import (
	"bytes"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// TestCommitDropsBeforeItsCommandComplete: the writes of a transaction are
// dropped once it commits, before the client can see the COMMIT's
// CommandComplete, though that comes before the ReadyForQuery that ends
// the transaction, and only then. The answer dropped here was stored by
// another session while the transaction was open, as a fill may be.
func TestCommitDropsBeforeItsCommandComplete(t *testing.T) {
	p := testProxy(t)
	client, backend := startSession(t, p)

	br, cr := pgwire.NewReader(backend, 0), pgwire.NewReader(client, 0)
	// step sends sql, has the backend answer with tag (and a
	// ReadyForQuery with status st, unless st is 0), and returns once
	// the client has read the answer.
	step := func(sql, tag string, st pgwire.TxStatus) {
		t.Helper()
		if _, err := client.Write(encode(t, &pgproto3.Query{String: sql})); err != nil {
			t.Fatal(err)
		}
		msg, err := br.Next()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(msg.Raw, txDefaultsMsg) {
			// Before a BEGIN, sqlcache's own read of the session's
			// transaction defaults.
			answerTxDefaults(t, backend, "read committed", "0")
			if _, err := br.Next(); err != nil {
				t.Fatal(err)
			}
		}
		out := encode1(t, &pgproto3.CommandComplete{CommandTag: []byte(tag)})
		if st != 0 {
			out = pgwire.AppendReadyForQuery(out, st)
		}
		if _, err := backend.Write(out); err != nil {
			t.Fatal(err)
		}
		want := byte('C')
		if st != 0 {
			want = 'Z'
		}
		for {
			msg, err := cr.Next()
			if err != nil {
				t.Fatal(err)
			}
			if msg.Type == want {
				return
			}
		}
	}
	step("BEGIN", "BEGIN", pgwire.TxActive)
	step("UPDATE t SET v = 1", "UPDATE 1", pgwire.TxActive)

	key := []byte("another session's answer about t")
	f := p.store.Begin(key, "", "db", []string{"t"}, 0)
	if ok, why := p.store.Commit(f, []byte("old")); !ok {
		t.Fatal(why)
	}
	step("COMMIT", "COMMIT", 0)
	if v := p.store.Get(key); v != nil {
		t.Errorf("the client saw COMMIT's CommandComplete while an answer about t written in the transaction was still cached: %q", v)
	}
	if _, err := backend.Write(pgwire.AppendReadyForQuery(nil, pgwire.TxIdle)); err != nil {
		t.Fatal(err)
	}
	if msg, err := cr.Next(); err != nil || msg.Type != 'Z' {
		t.Fatalf("after COMMIT's CommandComplete the client read %v, %v; want its ReadyForQuery", msg.Type, err)
	}
	// Dropped once, at the COMMIT: its ReadyForQuery has nothing to add.
	if n := counterValue(p.metrics.invalidationEvents.WithLabelValues("write")); n != 1 {
		t.Errorf("the transaction was dropped %d times; want once", n)
	}
}

func encode1(tb testing.TB, m pgproto3.BackendMessage) []byte {
	out, err := m.Encode(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// answerTxDefaults answers sqlcache's read of the session's transaction
// defaults (txDefaultsSQL) as a backend would.
func answerTxDefaults(tb testing.TB, backend net.Conn, isolation, idleTimeout string) {
	tb.Helper()
	out := encode1(tb, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("current_setting"), DataTypeOID: 25, DataTypeSize: -1},
		{Name: []byte("current_setting"), DataTypeOID: 25, DataTypeSize: -1},
		{Name: []byte("current_setting"), DataTypeOID: 25, DataTypeSize: -1},
	}})
	out = append(out, encode1(tb, &pgproto3.DataRow{Values: [][]byte{[]byte(isolation), []byte(idleTimeout), []byte("0")}})...)
	out = append(out, encode1(tb, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})...)
	out = pgwire.AppendReadyForQuery(out, pgwire.TxIdle)
	if _, err := backend.Write(out); err != nil {
		tb.Fatal(err)
	}
}
