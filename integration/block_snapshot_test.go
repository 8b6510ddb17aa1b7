package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestBlockPipelinedSetTransactionNewBlock: after a hit in a block, the
// client pipelines COMMIT, BEGIN and SET TRANSACTION ISOLATION LEVEL
// REPEATABLE READ (one write, no waits). The SET TRANSACTION runs in the
// new block, where PostgreSQL accepts it: sqlcache must not send its
// SELECT 1 (snapshotIfHits) there.
func TestBlockPipelinedSetTransactionNewBlock(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE st (id int PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO st VALUES (1, 'a')`)
	waitApplied(t, sc)
	ctx := t.Context()
	const read = `SELECT v FROM st WHERE id = 1`
	rtCached(t, ctx, sc, connect(t, sc.URL("postgres", "", "postgres", "default_query_exec_mode=simple_protocol")), read)

	params := map[string]string{"user": "postgres", "database": "postgres"}
	pipeline := []pgproto3.FrontendMessage{
		&pgproto3.Query{String: `COMMIT`},
		&pgproto3.Query{String: `BEGIN`},
		&pgproto3.Query{String: `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`},
		&pgproto3.Query{String: `COMMIT`},
	}
	errs := func(frames []frame) []string {
		var out []string
		for _, f := range frames {
			if f[0] == 'E' {
				out = append(out, f.String())
			}
		}
		return out
	}
	direct, _ := dialRaw(t, pg.Addr(), params)
	direct.roundTrip(1, &pgproto3.Query{String: `BEGIN`})
	direct.roundTrip(1, &pgproto3.Query{String: read})
	if e := errs(direct.roundTrip(4, pipeline...)); len(e) > 0 {
		t.Fatalf("directly: %v", e)
	}

	for i := 0; i < 5; i++ {
		c, _ := dialRaw(t, sc.Addr, params)
		c.roundTrip(1, &pgproto3.Query{String: `BEGIN`})
		before := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total")
		c.roundTrip(1, &pgproto3.Query{String: read})
		if metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total") == before {
			t.Logf("attempt %d: the read in the block was not a hit", i)
			continue
		}
		if e := errs(c.roundTrip(4, pipeline...)); len(e) > 0 {
			t.Fatalf("through sqlcache, pipelined COMMIT; BEGIN; SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; COMMIT after a hit in the first block: %v; PostgreSQL gives no error", e)
		}
		return
	}
	t.Skip("no hit in a block: proves nothing")
}

// TestBlockBeginOptionsAfterHit: BEGIN (or START TRANSACTION) inside a
// block only warns, but PostgreSQL still applies its options and refuses
// them once a query ran, like SET TRANSACTION (25001): after a hit, they
// must be refused too, or a READ ONLY block becomes read-write.
func TestBlockBeginOptionsAfterHit(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE bo (id int PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO bo VALUES (1, 'a')`)
	waitApplied(t, sc)
	ctx := t.Context()
	const read = `SELECT v FROM bo WHERE id = 1`
	run := func(conn *pgx.Conn, stmts ...string) (string, error) {
		var log []string
		for _, s := range stmts {
			if _, err := conn.Exec(ctx, s); err != nil {
				conn.Exec(ctx, `ROLLBACK`)
				return strings.Join(log, "; "), fmt.Errorf("%s: %w", s, err)
			}
			log = append(log, s)
		}
		return strings.Join(log, "; "), nil
	}
	for _, seq := range [][]string{
		{`BEGIN READ ONLY`, read, `BEGIN READ WRITE`, `UPDATE bo SET v = v || '+' WHERE id = 1`, `COMMIT`},
		{`BEGIN`, read, `START TRANSACTION ISOLATION LEVEL REPEATABLE READ`, `COMMIT`},
	} {
		_, derr := run(pg.Conn(t), seq...)
		conn := connect(t, sc.URL("postgres", "", "postgres", "default_query_exec_mode=simple_protocol"))
		rtCached(t, ctx, sc, conn, read)
		hits := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total")
		ran, err := run(conn, seq...)
		inBlock := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total") > hits
		if (derr == nil) != (err == nil) {
			t.Errorf("sequence %q: directly PostgreSQL gives %v; through sqlcache (read in the block a hit: %v) it gives %v after running %q", strings.Join(seq, "; "), derr, inBlock, err, ran)
		}
	}
}

// TestBlockChainAfterHits: COMMIT AND CHAIN (or ROLLBACK AND CHAIN) after
// reads answered from the cache in a block starts a new transaction that
// has run nothing, where PostgreSQL accepts SET TRANSACTION. The hits
// must not carry over into it (before, sqlcache sent its SELECT 1 there,
// and PostgreSQL refused the SET TRANSACTION with 25001). And a request
// that takes no snapshot (SHOW) after the hits must not let a later SET
// TRANSACTION through in the same block, as PostgreSQL refuses it.
func TestBlockChainAfterHits(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE ch (id int PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO ch VALUES (1, 'a')`)
	waitApplied(t, sc)
	ctx := t.Context()
	const read = `SELECT v FROM ch WHERE id = 1`
	rtCached(t, ctx, sc, connect(t, sc.URL("postgres", "", "postgres", "default_query_exec_mode=simple_protocol")), read)
	errs := func(frames []frame) string {
		var out []string
		for _, f := range frames {
			if f[0] == 'E' {
				out = append(out, f.String())
			}
		}
		return strings.Join(out, "; ")
	}
	for _, tc := range []struct {
		after   []string
		wantErr bool
	}{
		{[]string{`COMMIT AND CHAIN`, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`, `COMMIT`}, false},
		{[]string{`ROLLBACK AND CHAIN`, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`, `COMMIT`}, false},
		{[]string{`SHOW work_mem`, `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`, `ROLLBACK`}, true},
	} {
		run := func(addr string, hit bool) string {
			c, _ := dialRaw(t, addr, rtParams)
			c.roundTrip(1, &pgproto3.Query{String: `BEGIN`})
			before := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total")
			c.roundTrip(1, &pgproto3.Query{String: read})
			if hit && metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total") == before {
				t.Fatalf("%v: the read in the block was not a hit; the case proves nothing", tc.after)
			}
			var e []string
			for _, q := range tc.after {
				if s := errs(c.roundTrip(1, &pgproto3.Query{String: q})); s != "" {
					e = append(e, s)
				}
			}
			return strings.Join(e, "; ")
		}
		direct := run(pg.Addr(), false)
		if (direct != "") != tc.wantErr {
			t.Fatalf("%v directly: errors %q; the test assumes error %v", tc.after, direct, tc.wantErr)
		}
		if got := run(sc.Addr, true); (got != "") != tc.wantErr {
			t.Errorf("%v after a hit in the block through sqlcache: errors %q; directly %q", tc.after, got, direct)
		}
	}
}
