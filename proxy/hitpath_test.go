package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sqlcache/sqlcache/cachepolicy"
	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// pipeSession runs a session over in-memory connections with a scripted
// backend, for measuring the proxy's own cost. It returns the client end.
// The statements in sqls are planned as cacheable.
func pipeSession(tb testing.TB, sqls ...string) (net.Conn, *Proxy) {
	tb.Helper()
	p := testProxy(tb)
	// The catalog is not reachable here: decide the statement up front.
	for _, sql := range sqls {
		pl := newPlan(sql, cachepolicy.Analyze(sql))
		pl.decided = true
		pl.decision = cachepolicy.Decision{Cacheable: true, Tables: []string{"t"}, Rule: -1}
		p.planner.plans.add(planKey{"db", sql}, pl, pl.size())
	}
	client, backend := startSession(tb, p)
	go fakeBackend(backend)
	return client, p
}

// testProxy returns a Proxy with the cache on and no change stream, whose
// backend is never dialled.
func testProxy(tb testing.TB) *Proxy {
	tb.Helper()
	p, err := New(Config{
		Backend:      "127.0.0.1:1",
		Cache:        CacheConfig{Enabled: true},
		Invalidation: InvalidationConfig{Mode: InvalidationNone},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// startSession runs a session of p, user u in database db, over
// in-memory connections, past its startup, and returns the client's end
// and the backend's.
func startSession(tb testing.TB, p *Proxy) (client, backend net.Conn) {
	client, proxyClient := net.Pipe()
	proxyBackend, backend := net.Pipe()
	s := newSession(p, proxyClient)
	s.backend = proxyBackend
	s.br = pgwire.NewReader(proxyBackend, 0)
	s.bw = bufio.NewWriterSize(proxyBackend, writeBufferSize)
	s.params = map[string]string{"user": "u", "database": "db"}
	s.txStatus = pgwire.TxIdle
	go s.run()
	tb.Cleanup(func() { client.Close(); backend.Close() })
	return client, backend
}

// fakeBackend answers every request with one row; a Query "BEGIN" opens a
// transaction block, which it never leaves, and sqlcache's read of the
// session's transaction defaults gets read committed, no idle timeout.
func fakeBackend(conn net.Conn) {
	r := pgwire.NewReader(conn, 0)
	status := pgwire.TxIdle
	var out []byte
	row := func() {
		out, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte("42")}}).Encode(out)
		out, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(out)
	}
	for {
		msg, err := r.Next()
		if err != nil {
			return
		}
		switch msg.Type {
		case 'Q':
			switch {
			case bytes.Equal(msg.Body, []byte("BEGIN\x00")):
				out, _ = (&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}).Encode(out)
				status = pgwire.TxActive
			case bytes.Equal(msg.Raw, txDefaultsMsg):
				out, _ = (&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
					{Name: []byte("current_setting"), DataTypeOID: 25, DataTypeSize: -1},
					{Name: []byte("current_setting"), DataTypeOID: 25, DataTypeSize: -1},
					{Name: []byte("current_setting"), DataTypeOID: 25, DataTypeSize: -1},
				}}).Encode(out)
				out, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte("read committed"), []byte("0"), []byte("0")}}).Encode(out)
				out, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(out)
			default:
				out, _ = (&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("v"), DataTypeOID: 23, DataTypeSize: 4}}}).Encode(out)
				row()
			}
			out = pgwire.AppendReadyForQuery(out, status)
		case 'P':
			out = append(out, '1', 0, 0, 0, 4)
		case 'B':
			out = append(out, '2', 0, 0, 0, 4)
		case 'E':
			row()
		case 'S':
			out = pgwire.AppendReadyForQuery(out, status)
		}
		if !r.Ready() {
			if _, err := conn.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}

// roundTrip sends req and reads the answer up to ReadyForQuery.
func roundTrip(tb testing.TB, c net.Conn, r *pgwire.Reader, req []byte) {
	if _, err := c.Write(req); err != nil {
		tb.Fatal(err)
	}
	for {
		msg, err := r.Next()
		if err != nil {
			tb.Fatal(err)
		}
		if msg.Type == 'Z' {
			return
		}
	}
}

func encode(tb testing.TB, msgs ...pgproto3.FrontendMessage) []byte {
	var out []byte
	for _, m := range msgs {
		var err error
		if out, err = m.Encode(out); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

const hitSQL = "SELECT v FROM t WHERE id = $1"

// BenchmarkHitSimple measures a cache hit for a simple Query, end to end
// through the session on in-memory connections.
func BenchmarkHitSimple(b *testing.B) {
	const sql = "SELECT v FROM t WHERE id = 1"
	c, _ := pipeSession(b, sql)
	r := pgwire.NewReader(c, 0)
	req := encode(b, &pgproto3.Query{String: sql})
	roundTrip(b, c, r, req) // miss, fills
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, c, r, req)
	}
}

// BenchmarkHitSimpleManyTexts measures hits for simple Queries with their
// constants inlined, more distinct texts than a session keeps plans for.
func BenchmarkHitSimpleManyTexts(b *testing.B) {
	var sqls []string
	for i := range 2 * maxSessionPlans {
		sqls = append(sqls, fmt.Sprintf("SELECT v FROM t WHERE id = %d", i))
	}
	c, _ := pipeSession(b, sqls...)
	r := pgwire.NewReader(c, 0)
	reqs := make([][]byte, len(sqls))
	for i, sql := range sqls {
		reqs[i] = encode(b, &pgproto3.Query{String: sql})
		roundTrip(b, c, r, reqs[i]) // miss, fills
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		roundTrip(b, c, r, reqs[i%len(reqs)])
		i++
	}
}

// preparedHit prepares hitSQL as a named statement and fills the cache
// with one Bind/[Describe]/Execute/Sync; it returns what a hit needs.
func preparedHit(tb testing.TB, describe bool) (net.Conn, *pgwire.Reader, []byte, *Proxy) {
	c, p := pipeSession(tb, hitSQL)
	r := pgwire.NewReader(c, 0)
	roundTrip(tb, c, r, encode(tb, &pgproto3.Parse{Name: "s1", Query: hitSQL}, &pgproto3.Sync{}))
	msgs := []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("7")}}}
	if describe {
		msgs = append(msgs, &pgproto3.Describe{ObjectType: 'P'})
	}
	req := encode(tb, append(msgs, &pgproto3.Execute{}, &pgproto3.Sync{})...)
	roundTrip(tb, c, r, req) // miss, fills
	return c, r, req, p
}

// BenchmarkHitPrepared measures a cache hit for Bind/Describe/Execute/Sync
// on a named prepared statement (pgbench -M prepared).
func BenchmarkHitPrepared(b *testing.B) {
	c, r, req, _ := preparedHit(b, true)
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, c, r, req)
	}
}

// TestHitPathAllocations: a hit (Bind/Execute/Sync, as pgx sends) allocates
// nothing.
func TestHitPathAllocations(t *testing.T) {
	c, r, req, p := preparedHit(t, false)
	before := counterValue(p.metrics.hits)
	if n := testing.AllocsPerRun(200, func() { roundTrip(t, c, r, req) }); n > 0 {
		t.Errorf("%v allocations per hit; want 0", n)
	}
	if hits := counterValue(p.metrics.hits) - before; hits < 200 {
		t.Errorf("%d hits in 201 runs: the benchmark did not measure hits", hits)
	}
}

// TestHitInBlockAllocations: a hit inside a read committed transaction
// block allocates nothing either, and answers with status 'T'.
func TestHitInBlockAllocations(t *testing.T) {
	c, r, req, p := preparedHit(t, false)
	roundTrip(t, c, r, encode(t, &pgproto3.Query{String: "BEGIN"}))
	roundTrip(t, c, r, req) // the first hit in the block
	before := counterValue(p.metrics.hitsInBlock)
	if n := testing.AllocsPerRun(200, func() { roundTrip(t, c, r, req) }); n > 0 {
		t.Errorf("%v allocations per hit in a block; want 0", n)
	}
	if hits := counterValue(p.metrics.hitsInBlock) - before; hits < 200 {
		t.Errorf("%d hits in a block in 201 runs: the test did not measure them", hits)
	}
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if msg.Type == 'Z' {
			if st, _ := pgwire.ReadyStatus(msg.Body); st != pgwire.TxActive {
				t.Errorf("a hit in a block ended with ReadyForQuery %q; want 'T'", st)
			}
			break
		}
	}
}

// BenchmarkMissSimple measures a cache miss for a simple Query whose text
// is new but of a known shape, relayed and stored: what a client that
// inlines keys drawn from a whole table (pgbench -S -M simple) costs
// beyond relaying.
func BenchmarkMissSimple(b *testing.B) {
	p := testProxy(b)
	p.planner.catalog = knownCatalog(b).catalog
	client, backend := startSession(b, p)
	go fakeBackend(backend)
	r := pgwire.NewReader(client, 0)
	var req []byte
	query := func(id int) {
		req = append(req[:0], 'Q', 0, 0, 0, 0)
		req = fmt.Appendf(req, "SELECT v FROM t WHERE id = %d\x00", id)
		binary.BigEndian.PutUint32(req[1:], uint32(len(req)-1))
		roundTrip(b, client, r, req)
	}
	query(0)
	misses := counterValue(p.metrics.misses)
	b.ReportAllocs()
	i := 1
	for b.Loop() {
		query(i)
		i++
	}
	if got := counterValue(p.metrics.misses) - misses; got != uint64(i-1) {
		b.Fatalf("%v misses for %d new texts", got, i-1)
	}
}

// BenchmarkRelayPrepared measures a Bind/Describe/Execute/Sync on a named
// prepared statement relayed with the cache off (pgbench -M prepared
// through sqlcache as a plain proxy): the session's own cost of a round
// trip, which the benchmark's in-memory I/O makes the bulk of.
func BenchmarkRelayPrepared(b *testing.B) {
	p, err := New(Config{Backend: "127.0.0.1:1", Invalidation: InvalidationConfig{Mode: InvalidationNone}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	client, backend := startSession(b, p)
	go fakeBackend(backend)
	r := pgwire.NewReader(client, 0)
	roundTrip(b, client, r, encode(b, &pgproto3.Parse{Name: "s1", Query: hitSQL}, &pgproto3.Sync{}))
	req := encode(b, &pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("7")}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, client, r, req)
	}
}
