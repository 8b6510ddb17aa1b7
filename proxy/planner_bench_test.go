package proxy

import (
	"context"
	"strconv"
	"testing"

	"github.com/sqlcache/sqlcache/cachepolicy"
)

// knownCatalog returns a planner whose catalog already knows table t of
// database db (a primary key id), so that planning needs no lookup.
func knownCatalog(tb testing.TB) *planner {
	tb.Helper()
	c := newCatalog("postgres://unused", nil)
	d := c.db("db")
	d.rels = map[string]relFacts{"t": {infos: []cachepolicy.RelInfo{
		{Schema: "public", Name: "t", Kind: 'r', Key: "id", KeyType: 23},
	}}}
	d.funcs = map[string][]cachepolicy.FuncInfo{}
	pl := newPlanner(c, nil, 0)
	pl.streamed = true
	return pl
}

// BenchmarkPlanNewText measures what a simple Query costs the planner the
// first time its text is seen, when a text of the same shape was planned
// before: a client that inlines its keys (pgbench -M simple) sends such
// texts all the time.
func BenchmarkPlanNewText(b *testing.B) {
	pl := knownCatalog(b)
	epoch := pl.epoch("db")
	sql := []byte("SELECT v FROM t WHERE id = ")
	base := len(sql)
	plan1 := pl.decideIn(context.Background(), "db", epoch, pl.lookup("db", append(sql, '0')))
	if !plan1.decision.Cacheable {
		b.Fatalf("not cacheable: %s", plan1.decision.Reason)
	}
	b.ReportAllocs()
	i := 1
	for b.Loop() {
		sql = strconv.AppendInt(sql[:base], int64(i), 10)
		p := pl.decideIn(context.Background(), "db", epoch, pl.lookup("db", sql))
		if !p.decision.Cacheable {
			b.Fatalf("%s: not cacheable: %s", sql, p.decision.Reason)
		}
		i++
	}
}
