package integration

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Probes of the wire protocol's state machine with the cache on: the same
// message sequence is sent directly to PostgreSQL and through sqlcache
// (after a warm-up session that fills the cache, so that the would-be hits
// are hits), and every message received is compared, byte for byte.

// rtStep is one round trip: messages holding `syncs` requests. If
// anyRoutine, an ErrorResponse's source line and routine (fields L and R)
// may differ.
type rtStep struct {
	syncs      int
	msgs       []pgproto3.FrontendMessage
	anyRoutine bool
}

func step(syncs int, msgs ...pgproto3.FrontendMessage) rtStep {
	return rtStep{syncs: syncs, msgs: msgs}
}

// errorSource matches an ErrorResponse's L and R fields as frameStrings
// renders them.
var errorSource = regexp.MustCompile(`\\x00[LR][^\\]*`)

// rtEnv is a PostgreSQL with a small table and sqlcache, cache on.
type rtEnv struct {
	pg *Postgres
	sc *Sqlcache
}

var rtParams = map[string]string{"user": "postgres", "database": "postgres"}

func startProtocolEnv(t *testing.T) *rtEnv {
	t.Helper()
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)`)
	pg.Exec(t, `INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'), (5, 'five'), (6, 'six'), (7, 'seven'), (8, 'eight'), (9, 'nine')`)
	waitApplied(t, sc)
	return &rtEnv{pg: pg, sc: sc}
}

// warm runs steps on a fresh proxied session (to fill the cache).
func (e *rtEnv) warm(t *testing.T, steps ...rtStep) {
	t.Helper()
	c, _ := dialRaw(t, e.sc.Addr, rtParams)
	for _, s := range steps {
		c.roundTrip(s.syncs, s.msgs...)
	}
	c.conn.Close()
}

// compare runs steps on a fresh direct session and a fresh proxied one
// and reports every step whose replies differ. It returns the number of
// cache hits the proxied run had.
func (e *rtEnv) compare(t *testing.T, steps ...rtStep) float64 {
	t.Helper()
	direct, _ := dialRaw(t, e.pg.Addr(), rtParams)
	proxied, _ := dialRaw(t, e.sc.Addr, rtParams)
	hits0 := metricValue(t, e.sc, "sqlcache_cache_hits_total")
	for i, s := range steps {
		want := frameStrings(direct.roundTrip(s.syncs, s.msgs...))
		got := frameStrings(proxied.roundTrip(s.syncs, s.msgs...))
		if s.anyRoutine {
			for i := range want {
				want[i] = errorSource.ReplaceAllString(want[i], "")
			}
			for i := range got {
				got[i] = errorSource.ReplaceAllString(got[i], "")
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("step %d %s: replies differ (-direct +proxy):\n%s", i, describeMsgs(s.msgs), diff)
		}
	}
	return metricValue(t, e.sc, "sqlcache_cache_hits_total") - hits0
}

// frameStrings renders frames in full, for readable diffs.
func frameStrings(fs []frame) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = fmt.Sprintf("%c %q", f[0], []byte(f[5:]))
	}
	return out
}

func describeMsgs(msgs []pgproto3.FrontendMessage) string {
	out := ""
	for _, m := range msgs {
		switch m := m.(type) {
		case *pgproto3.Parse:
			out += fmt.Sprintf("Parse(%q,%q) ", m.Name, m.Query)
		case *pgproto3.Bind:
			out += fmt.Sprintf("Bind(%q,%q) ", m.DestinationPortal, m.PreparedStatement)
		case *pgproto3.Describe:
			out += fmt.Sprintf("Describe(%c,%q) ", m.ObjectType, m.Name)
		case *pgproto3.Execute:
			out += fmt.Sprintf("Execute(%q,%d) ", m.Portal, m.MaxRows)
		case *pgproto3.Close:
			out += fmt.Sprintf("Close(%c,%q) ", m.ObjectType, m.Name)
		case *pgproto3.Query:
			out += fmt.Sprintf("Query(%q) ", m.String)
		default:
			out += fmt.Sprintf("%T ", m)
		}
	}
	return out
}

const (
	rtQ    = `SELECT v FROM items WHERE id = $1`
	rtQAll = `SELECT id, v FROM items ORDER BY id`
)

func pbes(name, q string, args ...string) []pgproto3.FrontendMessage {
	var params [][]byte
	for _, a := range args {
		params = append(params, []byte(a))
	}
	return []pgproto3.FrontendMessage{
		&pgproto3.Parse{Name: name, Query: q},
		&pgproto3.Bind{PreparedStatement: name, Parameters: params},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	}
}

func bes(stmt string, args ...string) []pgproto3.FrontendMessage {
	var params [][]byte
	for _, a := range args {
		params = append(params, []byte(a))
	}
	return []pgproto3.FrontendMessage{
		&pgproto3.Bind{PreparedStatement: stmt, Parameters: params},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	}
}

func TestProtocolState(t *testing.T) {
	e := startProtocolEnv(t)

	// Probes that behaved like PostgreSQL (kept as regression checks; run
	// first, before the subtests below poison the cache):
	// hits mixed with relayed requests in and around transaction blocks.
	t.Run("passing_blocks_and_pipelines", func(t *testing.T) {
		q := `SELECT id, v FROM items WHERE id < 4 ORDER BY id`
		e.warm(t, step(1, &pgproto3.Query{String: q}), step(1, &pgproto3.Query{String: q}),
			step(1, pbes("", rtQ, "1")...), step(1, pbes("", rtQ, "1")...))
		hits := e.compare(t,
			step(1, &pgproto3.Query{String: "BEGIN"}),
			step(1, &pgproto3.Query{String: q}),
			step(1, pbes("", rtQ, "1")...),
			step(1, &pgproto3.Query{String: "SAVEPOINT a"}),
			step(1, &pgproto3.Query{String: q}),
			step(1, &pgproto3.Query{String: "SELECT 1/0"}),
			step(1, &pgproto3.Query{String: q}),
			step(1, pbes("", rtQ, "1")...),
			step(1, &pgproto3.Query{String: "ROLLBACK TO a"}),
			step(1, pbes("", rtQ, "1")...),
			step(1, &pgproto3.Query{String: "COMMIT AND CHAIN"}),
			step(1, &pgproto3.Query{String: q}),
			step(1, &pgproto3.Query{String: "COMMIT"}),
			// A would-be hit followed by a relayed request in one write.
			step(2, append(pbes("", rtQ, "1"), pbes("", rtQ, "2")...)...),
			// A would-be hit and an error before one Sync.
			step(1, &pgproto3.Bind{PreparedStatement: "nosuch"}, &pgproto3.Parse{Query: rtQ},
				&pgproto3.Bind{Parameters: [][]byte{[]byte("1")}}, &pgproto3.Execute{}, &pgproto3.Sync{}),
			// Flush after a would-be hit, then Sync.
			step(0, &pgproto3.Parse{Query: rtQ}, &pgproto3.Bind{Parameters: [][]byte{[]byte("1")}},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Flush{}),
			step(1, &pgproto3.Sync{}),
			// Row limit and PortalSuspended.
			step(1, &pgproto3.Parse{Query: q}, &pgproto3.Bind{}, &pgproto3.Execute{MaxRows: 1},
				&pgproto3.Execute{MaxRows: 1}, &pgproto3.Execute{}, &pgproto3.Sync{}),
			// Describe S after a hit answered the Parse.
			step(1, pbes("", rtQ, "1")...),
			step(1, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{}),
			step(1, &pgproto3.Parse{Query: rtQ}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{}),
			step(1, &pgproto3.Parse{Query: rtQ}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{}),
			step(1, &pgproto3.Bind{Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{1}},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}),
			// Multi-statement strings, empty queries.
			step(1, &pgproto3.Query{String: q + "; " + q}),
			step(1, &pgproto3.Query{String: q + "; " + q}),
			step(1, &pgproto3.Query{String: q + "; SELECT 1/0; " + q}),
			step(1, &pgproto3.Query{String: ";"}),
		)
		t.Logf("hits: %v", hits)
	})

	// A simple Query destroys the unnamed prepared statement
	// (exec_simple_query's drop_unnamed_stmt), also when sqlcache answers
	// it from the cache.
	t.Run("simple_hit_drops_unnamed_statement", func(t *testing.T) {
		e.warm(t, step(1, &pgproto3.Query{String: rtQAll}), step(1, &pgproto3.Query{String: rtQAll}))
		hits := e.compare(t,
			step(1, &pgproto3.Parse{Query: rtQ}, &pgproto3.Sync{}),
			step(1, &pgproto3.Query{String: rtQAll}),
			step(1, bes("", "1")...),
		)
		if hits != 1 {
			t.Errorf("hits = %v; want the Query answered from the cache", hits)
		}
	})

	// A Parse of a name already in use fails; the statement keeps its
	// first text.
	t.Run("failed_named_parse", func(t *testing.T) {
		e.warm(t, step(1, pbes("", rtQ, "3")...), step(1, pbes("", rtQ, "3")...))
		hits := e.compare(t,
			step(1, &pgproto3.Parse{Name: "s1", Query: `SELECT v FROM items WHERE id = $1 + 1`}, &pgproto3.Sync{}),
			step(1, &pgproto3.Parse{Name: "s1", Query: rtQ}, &pgproto3.Sync{}),
			step(1, bes("s1", "2")...),
			step(1, bes("s1", "3")...),
		)
		t.Logf("hits: %v", hits)
		// Step 2 was relayed and its answer (for id 3) stored under the
		// key of rtQ with 2: another session reads it.
		e.compare(t, step(1, pbes("", rtQ, "2")...))
	})

	// A Parse after an error in the same batch is skipped until Sync.
	t.Run("parse_skipped_after_error", func(t *testing.T) {
		e.warm(t, step(1, pbes("", rtQ, "1")...), step(1, pbes("", rtQ, "1")...))
		hits := e.compare(t,
			step(1, &pgproto3.Bind{PreparedStatement: "nosuch"}, &pgproto3.Parse{Name: "s2", Query: rtQ}, &pgproto3.Sync{}),
			step(1, bes("s2", "1")...),
		)
		t.Logf("hits: %v", hits)
	})

	// Variants of simple_hit_drops_unnamed_statement: a relayed simple
	// Query that sqlcache does not count as a statement (empty, comment
	// only, syntax error) drops the unnamed statement in PostgreSQL too.
	for name, q := range map[string]string{"empty": "", "comment": "-- nothing", "syntax_error": "SELEC 1"} {
		t.Run("query_"+name+"_drops_unnamed_statement", func(t *testing.T) {
			e.warm(t, step(1, pbes("", rtQ, "1")...), step(1, pbes("", rtQ, "1")...))
			hits := e.compare(t,
				step(1, &pgproto3.Parse{Query: rtQ}, &pgproto3.Sync{}),
				step(1, &pgproto3.Query{String: q}),
				step(1, bes("", "1")...),
			)
			t.Logf("hits: %v", hits)
		})
	}

	// DEALLOCATE and DISCARD ALL, sent as SQL, drop prepared statements.
	for _, q := range []string{"DEALLOCATE s4", "DEALLOCATE ALL", "DISCARD ALL"} {
		t.Run("sql_"+q, func(t *testing.T) {
			e.warm(t, step(1, pbes("", rtQ, "1")...), step(1, pbes("", rtQ, "1")...))
			hits := e.compare(t,
				step(1, &pgproto3.Parse{Name: "s4", Query: rtQ}, &pgproto3.Sync{}),
				step(1, &pgproto3.Query{String: q}),
				step(1, bes("s4", "1")...),
			)
			t.Logf("hits: %v", hits)
		})
	}

	// A name freed by DEALLOCATE and taken by PREPARE for another text:
	// the answer relayed is stored under the old text's key (poisoning
	// other sessions).
	t.Run("prepare_reuses_deallocated_name_poisons", func(t *testing.T) {
		hits := e.compare(t,
			step(1, &pgproto3.Parse{Name: "s5", Query: rtQ}, &pgproto3.Sync{}),
			step(1, &pgproto3.Query{String: "DEALLOCATE s5"}),
			step(1, &pgproto3.Query{String: "PREPARE s5(int) AS SELECT v FROM items WHERE id = $1 - 1"}),
			step(1, bes("s5", "3")...),
		)
		t.Logf("hits: %v", hits)
		// Another session asks the old text with the same parameter.
		e.compare(t, step(1, pbes("", rtQ, "3")...))
	})

	// A Parse of the unnamed statement skipped after an error: the
	// backend keeps the one before; what it answers is stored under the
	// skipped text's key.
	t.Run("unnamed_parse_skipped_after_error_poisons", func(t *testing.T) {
		hits := e.compare(t,
			step(1, &pgproto3.Parse{Query: `SELECT v FROM items WHERE id = $1 - 1`}, &pgproto3.Sync{}),
			step(1, &pgproto3.Bind{PreparedStatement: "nosuch"}, &pgproto3.Parse{Query: rtQ}, &pgproto3.Sync{}),
			step(1, bes("", "2")...),
		)
		t.Logf("hits: %v", hits)
		e.compare(t, step(1, pbes("", rtQ, "2")...))
	})

	// The re-parse of the unnamed statement after a hit, sent ahead of a
	// batch in an aborted block, fails there; the backend then lacks the
	// statement after the block ends.
	t.Run("reparse_in_aborted_block", func(t *testing.T) {
		e.warm(t, step(1, pbes("", rtQ, "1")...), step(1, pbes("", rtQ, "1")...))
		hits := e.compare(t,
			step(1, &pgproto3.Parse{Name: "rb", Query: "ROLLBACK"}, &pgproto3.Parse{Name: "boom", Query: "SELECT 1/0"}, &pgproto3.Sync{}),
			step(1, &pgproto3.Query{String: "BEGIN"}),
			step(1, pbes("", rtQ, "1")...),
			step(1, bes("boom")...),
			// sqlcache parses the statement again ahead of the Bind:
			// the same error, from exec_parse_message.
			rtStep{syncs: 1, msgs: bes("", "1"), anyRoutine: true},
			step(1, bes("rb")...),
			step(1, bes("", "7")...),
		)
		t.Logf("hits: %v", hits)
	})

	// An extended-protocol message not followed by Sync before a simple
	// Query (a Flush alone, a Close or Parse sent ahead of the next
	// request): sqlcache queues a request for it that no ReadyForQuery of
	// its own answers, so the Query's ReadyForQuery retires it instead,
	// the Query's own request stays queued until the next one, and the
	// next extended batch is classified into the retired request (s.cur).
	// Invalidation mode none: only writes through sqlcache invalidate,
	// and they must, at once.
	t.Run("syncless_message_then_writes", func(t *testing.T) {
		sc := StartSqlcache(t, SqlcacheConfig{
			Backend:    e.pg.Addr(),
			ServiceDSN: e.pg.URL("postgres", "", "postgres"),
			Extra:      map[string]any{"invalidation": map[string]any{"postgres": map[string]any{"mode": "none"}}},
		})
		reader, _ := dialRaw(t, sc.Addr, rtParams)
		read := func(id string) string {
			reader.roundTrip(1, pbes("", rtQ, id)...)
			return fmt.Sprint(reader.roundTrip(1, pbes("", rtQ, id)...))
		}
		for i, prelude := range []pgproto3.FrontendMessage{
			&pgproto3.Flush{},
			&pgproto3.Close{ObjectType: 'S', Name: "gone"},
			&pgproto3.Parse{Name: "p", Query: "SELECT 1"},
		} {
			t.Run(fmt.Sprintf("%T", prelude), func(t *testing.T) {
				a, b := fmt.Sprint(2*i+4), fmt.Sprint(2*i+5)
				read(a)
				read(b)
				writer, _ := dialRaw(t, sc.Addr, rtParams)
				writer.send(prelude)
				newA := fmt.Sprintf("A%d", i)
				writer.roundTrip(1, &pgproto3.Query{String: "UPDATE items SET v = '" + newA + "' WHERE id = " + a})
				if got := read(a); !strings.Contains(got, newA) {
					t.Errorf("after the UPDATE (simple Query) completed, another session reads %v", got)
				}
				// The UPDATE's request is retired by the next ReadyForQuery.
				writer.roundTrip(1, &pgproto3.Query{String: "SELECT 1"})
				read(b)
				// The batch joins the prelude's request, long retired:
				// its write is never invalidated.
				newB := fmt.Sprintf("B%d", i)
				writer.roundTrip(1, pbes("", "UPDATE items SET v = $1 WHERE id = $2", newB, b)...)
				if got := read(b); !strings.Contains(got, newB) {
					t.Errorf("after the extended UPDATE completed, another session reads %v", got)
				}
				writer.roundTrip(1, &pgproto3.Query{String: "SELECT 1"})
				time.Sleep(300 * time.Millisecond)
				if got := read(b); !strings.Contains(got, newB) {
					t.Errorf("300ms and another request later, another session still reads %v", got)
				}
			})
		}
	})

	// The same desynchronisation loses a session setting: a SET sent in
	// the extended batch after a Sync-less Flush and a simple Query is
	// classified into the retired request, so the session's key keeps the
	// old search_path and a cached answer read under it is served.
	t.Run("syncless_flush_then_extended_set", func(t *testing.T) {
		e.pg.Exec(t, `CREATE SCHEMA other`)
		e.pg.Exec(t, `CREATE TABLE other.items (id int PRIMARY KEY, v text NOT NULL)`)
		e.pg.Exec(t, `INSERT INTO other.items VALUES (1, 'other one')`)
		waitApplied(t, e.sc)
		q := `SELECT v FROM items WHERE id = 1`
		e.warm(t, step(1, &pgproto3.Query{String: q}), step(1, &pgproto3.Query{String: q}))
		setPath := pbes("", "SET search_path = other, public")
		hits := e.compare(t,
			step(1, &pgproto3.Flush{}, &pgproto3.Query{String: "SELECT 1"}),
			step(1, setPath...),
			step(1, &pgproto3.Query{String: q}),
		)
		t.Logf("hits: %v", hits)
	})

}
