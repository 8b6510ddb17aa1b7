package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sqlcache/sqlcache/cachepolicy"
	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// TestReadBackState: a session whose settings were read back keys its
// answers as a session that SET the same settings does, and apart from
// one whose role or session authorization differs.
func TestReadBackState(t *testing.T) {
	params := map[string]string{"user": "app", "database": "db"}
	set := func(effects ...cachepolicy.SessionEffect) *sessionState {
		st := newSessionState(params, 0)
		st.apply(effects)
		return st
	}
	setVar := func(name, value string) cachepolicy.SessionEffect {
		return cachepolicy.SessionEffect{Kind: cachepolicy.SetVar, Name: name, Value: value}
	}
	want := set(setVar("search_path", "b"), setVar("app.tenant", "t1"))

	st := set(setVar("search_path", "a"), cachepolicy.SessionEffect{Kind: cachepolicy.SetRole, Value: "admin"},
		cachepolicy.SessionEffect{Kind: cachepolicy.SetConfigCall})
	if !st.unknown {
		t.Fatal("set_config did not leave the state unknown")
	}
	st.readBack([][2]string{{"search_path", "b"}, {"app.tenant", "t1"}}, "app", "app", 0)
	if st.unknown {
		t.Error("still unknown after the read-back")
	}
	if st.digest != want.digest {
		t.Errorf("read back %v; a session that SET the same has %v", st.settings, want.settings)
	}

	for _, tc := range []struct{ role, auth string }{{"admin", "app"}, {"other", "other"}} {
		st := set(cachepolicy.SessionEffect{Kind: cachepolicy.SetConfigCall})
		st.readBack([][2]string{{"search_path", "b"}, {"app.tenant", "t1"}}, tc.role, tc.auth, 0)
		if st.digest == want.digest {
			t.Errorf("role %q, session authorization %q: same key as the login role's", tc.role, tc.auth)
		}
	}
}

// TestReadBackRows: rows of readBackSQL's shape are read; anything else
// spoils the read-back rather than being half understood.
func TestReadBackRows(t *testing.T) {
	row := func(values ...[]byte) pgwire.Message {
		t.Helper()
		b, err := (&pgproto3.DataRow{Values: values}).Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		return pgwire.Message{Type: b[0], Len: len(b) - 5, Raw: b, Body: b[5:]}
	}
	var rb readBack
	rb.row(row([]byte("s"), []byte("TimeZone"), []byte("UTC")))
	rb.row(row([]byte("r"), []byte("admin"), []byte("app")))
	if rb.bad || !rb.sawRole || rb.role != "admin" || rb.auth != "app" || len(rb.settings) != 1 || rb.settings[0] != [2]string{"TimeZone", "UTC"} {
		t.Fatalf("read %+v", rb)
	}
	for _, bad := range []pgwire.Message{
		row([]byte("s"), []byte("x")),              // two columns
		row([]byte("s"), []byte("x"), nil),         // NULL value
		row([]byte("q"), []byte("x"), []byte("y")), // unknown kind
		{Type: pgwire.MsgDataRow, Len: 2, Raw: []byte{'D', 0, 0, 0, 6, 0, 3}, Body: []byte{0, 3}}, // truncated
		{Type: pgwire.MsgDataRow, Len: 1 << 20},                                                   // streamed
	} {
		var rb readBack
		rb.row(bad)
		if !rb.bad {
			t.Errorf("row %q read as good: %+v", bad.Body, rb)
		}
	}
}
