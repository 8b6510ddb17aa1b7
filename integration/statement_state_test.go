package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// How sqlcache follows prepared statements and session state through
// failures, pipelines and statements it cannot read: each compares, byte
// for byte, a direct session and a proxied one (rtEnv.compare).

func TestStatementState(t *testing.T) {
	e := startProtocolEnv(t)
	e.pg.Exec(t, `CREATE SCHEMA other`)
	e.pg.Exec(t, `CREATE TABLE other.items (id int PRIMARY KEY, v text NOT NULL)`)
	e.pg.Exec(t, `INSERT INTO other.items VALUES (1, 'other one')`)
	waitApplied(t, e.sc)

	// exec_parse_message drops the unnamed statement before it parses the
	// new text, so a Parse "" that fails leaves none: a Bind "" gets
	// 26000, not the answer of the statement before.
	t.Run("failed_unnamed_parse_drops_previous", func(t *testing.T) {
		e.warm(t, step(1, pbes("", rtQ, "1")...), step(1, pbes("", rtQ, "1")...))
		hits := e.compare(t,
			step(1, &pgproto3.Parse{Query: rtQ}, &pgproto3.Sync{}),
			step(1, &pgproto3.Parse{Query: "SELEC 1"}, &pgproto3.Sync{}),
			step(1, bes("", "1")...),
		)
		t.Logf("hits: %v", hits)
	})

	// A Parse "" answered from the cache replaces, for the client, an
	// unnamed statement the backend holds; a Query answered from the
	// cache then destroys it for the client, and the backend's must go
	// too, or a Bind "" binds it.
	t.Run("query_hit_after_parse_hit_no_close", func(t *testing.T) {
		e.warm(t, step(1, &pgproto3.Query{String: rtQAll}), step(1, &pgproto3.Query{String: rtQAll}),
			step(1, pbes("", rtQ, "1")...), step(1, pbes("", rtQ, "1")...))
		hits := e.compare(t,
			step(1, &pgproto3.Parse{Query: rtQ}, &pgproto3.Sync{}),
			step(1, pbes("", rtQ, "1")...),
			step(1, &pgproto3.Query{String: rtQAll}),
			step(1, bes("", "1")...),
		)
		t.Logf("hits: %v", hits)
	})

	// A request pipelined after a Parse that fails was classified with
	// the text that failed to parse: it is taken to change anything, the
	// session's settings too. Here PostgreSQL runs SET search_path where
	// sqlcache saw SELECT 1.
	t.Run("pipelined_after_failed_parse_loses_set", func(t *testing.T) {
		q := `SELECT v AS c1 FROM items WHERE id = 1`
		e.warm(t, step(1, &pgproto3.Query{String: q}), step(1, &pgproto3.Query{String: q}))
		hits := e.compare(t,
			step(1, &pgproto3.Parse{Name: "ps", Query: "SET search_path = other, public"}, &pgproto3.Sync{}),
			step(2, &pgproto3.Parse{Name: "ps", Query: "SELECT 1"}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "ps"}, &pgproto3.Execute{}, &pgproto3.Sync{}),
			// Everything was dropped (invalidateAll); this refills under
			// the session's unchanged key, with other.items' row.
			step(1, &pgproto3.Query{String: q}),
			step(1, &pgproto3.Query{String: q}),
		)
		t.Logf("hits: %v", hits)
		// A session with the default search_path reads the poisoned entry.
		e.compare(t, step(1, &pgproto3.Query{String: q}))
	})

	// A Parse too large to read (streamed, trackUnknown) leaves the
	// settings unknown, as a simple Query too large to read does.
	t.Run("large_extended_set_loses_settings", func(t *testing.T) {
		q := `SELECT v AS c2 FROM items WHERE id = 1`
		e.warm(t, step(1, &pgproto3.Query{String: q}), step(1, &pgproto3.Query{String: q}))
		big := "SET search_path = other, public /* " + strings.Repeat("x", 300<<10) + " */"
		hits := e.compare(t,
			step(1, &pgproto3.Parse{Query: big}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}),
			step(1, &pgproto3.Query{String: q}),
			step(1, &pgproto3.Query{String: q}),
		)
		t.Logf("hits: %v", hits)
		e.compare(t, step(1, &pgproto3.Query{String: q}))
	})

	// A statement sqlcache does not know (PREPAREd in SQL) and a
	// FunctionCall are taken to change anything, the session's settings
	// too: a set_config in them must change the key.
	setPath := `SELECT set_config('search_path', 'other, public', false)`
	for i, c := range []struct {
		name  string
		steps []rtStep
	}{
		{"sql_prepare_then_sql_execute", []rtStep{
			step(1, &pgproto3.Query{String: "PREPARE sp3 AS " + setPath}),
			step(1, &pgproto3.Query{String: "EXECUTE sp3"}),
		}},
		{"sql_prepare_then_bind", []rtStep{
			step(1, &pgproto3.Query{String: "PREPARE sp4 AS " + setPath}),
			step(1, bes("sp4")...),
		}},
		{"function_call_set_config", []rtStep{
			step(1, &pgproto3.FunctionCall{Function: 2078, ArgFormatCodes: []uint16{0},
				Arguments: [][]byte{[]byte("search_path"), []byte("other, public"), []byte("f")}}),
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := fmt.Sprintf(`SELECT v AS d%d FROM items WHERE id = 1`, i)
			steps := append(c.steps, step(1, &pgproto3.Query{String: q}), step(1, &pgproto3.Query{String: q}))
			hits := e.compare(t, steps...)
			t.Logf("hits: %v", hits)
			e.compare(t, step(1, &pgproto3.Query{String: q}))
		})
	}
}

// ALTER ROLE … SET made directly on the database before sqlcache's first
// catalog check of it is seen against the fingerprint read when sqlcache
// started: a session that logged in before the change and one after do
// not share answers.
func TestSessionKeysAlterRoleBeforeFirstCheck(t *testing.T) {
	e := startProtocolEnv(t)
	e.pg.Exec(t, `CREATE SCHEMA other`)
	e.pg.Exec(t, `CREATE TABLE other.items (id int PRIMARY KEY, v text NOT NULL)`)
	e.pg.Exec(t, `INSERT INTO other.items VALUES (1, 'other one')`)
	waitApplied(t, e.sc)
	q := `SELECT v FROM items WHERE id = 1`
	params := map[string]string{"user": "postgres", "database": "postgres"}
	before, _ := dialRaw(t, e.sc.Addr, params)
	e.pg.Exec(t, `ALTER ROLE postgres SET search_path = other, public`)
	after, _ := dialRaw(t, e.sc.Addr, params)
	for range 2 {
		got := frameStrings(after.roundTrip(1, &pgproto3.Query{String: q}))
		if !strings.Contains(strings.Join(got, " "), "other one") {
			t.Fatalf("session after ALTER ROLE read %v", got)
		}
	}
	got := strings.Join(frameStrings(before.roundTrip(1, &pgproto3.Query{String: q})), " ")
	if strings.Contains(got, "other one") {
		t.Errorf("session that logged in before ALTER ROLE … SET (search_path public) read %s; PostgreSQL returns 'one'", got)
	}
}

// A statement prepared after DDL made directly on the database, before
// the catalog check saw it, may have been parsed before the DDL or after:
// it must not share the answers of the statements prepared before it,
// which resolve to the old table.
func TestSessionKeysPreparedInCheckWindow(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"cache": map[string]any{"catalog_check": "2s"}})
	rsSetup(t, pg, sc, `CREATE SCHEMA s1`, `GRANT USAGE ON SCHEMA s1 TO PUBLIC`)
	params := []string{"search_path=s1,public", "default_query_exec_mode=cache_statement"}
	old := connect(t, sc.URL("app", "", "postgres", params...))
	if got := rsOne(t, old, rsQT); got != "from public" {
		t.Fatalf("old session read %q", got)
	}
	pg.Exec(t, `CREATE TABLE s1.t (v text)`)
	pg.Exec(t, `INSERT INTO s1.t VALUES ('from s1')`)
	pg.Exec(t, `GRANT SELECT ON s1.t TO PUBLIC`)
	window := connect(t, sc.URL("app", "", "postgres", params...))
	t.Logf("window session's first read (within the check interval): %q", rsOne(t, window, rsQT))
	time.Sleep(5 * time.Second) // catalog checks
	waitApplied(t, sc)
	if got := rsOne(t, old, rsQT); got != "from public" {
		t.Fatalf("old session's prepared statement read %q; PostgreSQL keeps public.t", got)
	}
	for i := range 2 {
		if got := rsOne(t, window, rsQT); got != "from s1" {
			t.Errorf("read %d of the session that prepared after the DDL = %q; PostgreSQL returns %q", i, got, "from s1")
		}
	}
}
