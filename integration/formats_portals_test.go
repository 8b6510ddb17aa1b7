package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Red-team probes of the extended query protocol's formats, portals and
// pipelines with the cache on.

// fmtDataRows returns the DataRow frames among fs, rendered.
func fmtDataRows(fs []frame) string {
	var b strings.Builder
	for _, f := range fs {
		if f[0] == 'D' {
			fmt.Fprintf(&b, "%q\n", []byte(f[5:]))
		}
	}
	return b.String()
}

// TestFormatsBinaryTextParamReadsClock: 'now' bound to a text parameter
// and cast to timestamptz in the query reads the clock. sqlcache refuses
// such a value when it comes in text format (batch.go, paramReadsClock),
// but a text parameter's binary format is the same bytes (Npgsql sends
// every parameter binary, text declared as OID 25): PostgreSQL reads the
// clock each time, and the cache must not answer with an old time.
func TestFormatsBinaryTextParamReadsClock(t *testing.T) {
	_, sc := startCache(t, nil)
	c, _ := dialRaw(t, sc.Addr, rtParams)
	run := func() string {
		return fmtDataRows(c.roundTrip(1,
			&pgproto3.Parse{Query: `SELECT $1::timestamptz AS t`, ParameterOIDs: []uint32{25}},
			&pgproto3.Bind{ParameterFormatCodes: []int16{1}, Parameters: [][]byte{[]byte("now")}},
			&pgproto3.Execute{},
			&pgproto3.Sync{}))
	}
	hits0 := metricValue(t, sc, "sqlcache_cache_hits_total")
	seen := map[string]int{}
	for i := range 10 {
		got := run()
		if got == "" {
			t.Fatalf("no row")
		}
		if j, ok := seen[got]; ok {
			t.Fatalf("run %d gave the same time as run %d (%s) (cache hits: %v); PostgreSQL reads the clock each time",
				i, j, strings.TrimSpace(got), metricValue(t, sc, "sqlcache_cache_hits_total")-hits0)
		}
		seen[got] = i
		time.Sleep(30 * time.Millisecond)
	}
}

// TestFormatsSearchPathChangedUnderStatement: PostgreSQL analyzes a
// prepared statement again when the search_path changed since it was
// parsed, and refuses to run it if its result columns changed
// (0A000 "cached plan must not change result type"). Through sqlcache the
// statement's key is the current search_path's, so a Bind of it after
// the change is answered with the rows another session cached for that
// search_path: rows of another shape than the statement describes.
func TestFormatsSearchPathChangedUnderStatement(t *testing.T) {
	e := startProtocolEnv(t)
	e.pg.Exec(t, `CREATE SCHEMA sa`)
	e.pg.Exec(t, `CREATE SCHEMA sb`)
	e.pg.Exec(t, `CREATE TABLE sa.st (id int PRIMARY KEY, v float8)`)
	e.pg.Exec(t, `CREATE TABLE sb.st (id int PRIMARY KEY, v int8, w text)`)
	e.pg.Exec(t, `INSERT INTO sa.st VALUES (1, 1.5)`)
	e.pg.Exec(t, `INSERT INTO sb.st VALUES (1, 42, 'b')`)
	waitApplied(t, e.sc)
	const q = `SELECT * FROM st ORDER BY id`
	setB := step(1, &pgproto3.Query{String: "SET search_path = sb"})
	e.warm(t, setB, step(1, pbes("", q)...), step(1, pbes("", q)...))
	hits := e.compare(t,
		step(1, &pgproto3.Query{String: "SET search_path = sa"}),
		step(1, &pgproto3.Parse{Name: "s", Query: q}, &pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{}),
		setB,
		step(1, bes("s")...),
	)
	t.Logf("hits: %v", hits)
}

// TestFormatsSkippedCloseThenQueryHit: a Close of the unnamed statement
// that PostgreSQL skips after an earlier error in its batch leaves the
// statement in place; a simple Query then destroys it. sqlcache took the
// Close as done, so when that Query is answered from the cache it does
// not close the backend's unnamed statement, and a later Bind of the
// unnamed statement runs it where PostgreSQL answers 26000.
func TestFormatsSkippedCloseThenQueryHit(t *testing.T) {
	e := startProtocolEnv(t)
	e.warm(t, step(1, &pgproto3.Query{String: rtQAll}), step(1, &pgproto3.Query{String: rtQAll}))
	hits := e.compare(t,
		step(1, &pgproto3.Parse{Query: rtQ}, &pgproto3.Sync{}),
		step(1, &pgproto3.Bind{PreparedStatement: "nosuch"}, &pgproto3.Close{ObjectType: 'S'}, &pgproto3.Sync{}),
		step(1, &pgproto3.Query{String: rtQAll}),
		step(1, bes("", "1")...),
	)
	if hits != 1 {
		t.Errorf("hits = %v; want the Query answered from the cache (the case proves nothing otherwise)", hits)
	}
}

// TestFormatsSetConfigDeclaredParamType: SELECT set_config('app.tenant',
// $1::text, false) sets the setting to the parameter's value as
// PostgreSQL reads it in the type the Parse declares: '007' bound in text
// format to a parameter declared int4 sets app.tenant to '7'. sqlcache
// takes the text bound ('007') as the value (boundEffects only looks at
// the declared type for binary values), so the session's key says
// tenant '007', and a read under a row security policy on app.tenant is
// answered with tenant 007's rows, cached by a session that really is
// tenant 007, to a session PostgreSQL shows tenant 7's rows.
func TestFormatsSetConfigDeclaredParamType(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE fmt_docs (id int PRIMARY KEY, tenant text NOT NULL, body text NOT NULL)`)
	pg.Exec(t, `INSERT INTO fmt_docs VALUES (1, '7', 'doc of tenant 7'), (2, '007', 'secret of tenant 007')`)
	pg.Exec(t, `ALTER TABLE fmt_docs ENABLE ROW LEVEL SECURITY`)
	pg.Exec(t, `CREATE POLICY by_tenant ON fmt_docs USING (tenant = current_setting('app.tenant', true))`)
	pg.Exec(t, `GRANT SELECT ON fmt_docs TO app`)
	waitApplied(t, sc)
	const q = `SELECT id, body FROM fmt_docs ORDER BY id`

	params := map[string]string{"user": "app", "database": "postgres"}
	session := func(addr string, oid uint32) string {
		c, _ := dialRaw(t, addr, params)
		set := c.roundTrip(1,
			&pgproto3.Parse{Query: `SELECT set_config('app.tenant', $1::text, false)`, ParameterOIDs: []uint32{oid}},
			&pgproto3.Bind{Parameters: [][]byte{[]byte("007")}},
			&pgproto3.Execute{},
			&pgproto3.Sync{})
		return fmt.Sprintf("set_config: %s\nrows:\n%s", fmtDataRows(set), fmtDataRows(c.roundTrip(1, &pgproto3.Query{String: q})))
	}
	// Tenant 007 (the same parameter, its type left to the server) reads
	// through sqlcache and fills the cache.
	warmHits := metricValue(t, sc, "sqlcache_cache_hits_total")
	for i := 0; metricValue(t, sc, "sqlcache_cache_hits_total") == warmHits; i++ {
		if i == 50 {
			t.Fatal("tenant 007's read was never answered from the cache; the case proves nothing")
		}
		if got := session(sc.Addr, 0); !strings.Contains(got, "secret of tenant 007") {
			t.Fatalf("tenant 007 reads %s", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := session(pg.Addr(), 23)
	hits := metricValue(t, sc, "sqlcache_cache_hits_total")
	got := session(sc.Addr, 23)
	if got != want {
		t.Errorf("directly:\n%s\nthrough sqlcache (%v hits):\n%s", want, metricValue(t, sc, "sqlcache_cache_hits_total")-hits, got)
	}
}
