package proxy

import (
	"context"
	"regexp"
	"strconv"
	"strings"
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
	d.funcs = map[string][]cachepolicy.FuncInfo{
		cachepolicy.OperatorPrefix + "=": {{Name: "int4eq", Volatility: 'i', BuiltIn: true}},
	}
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

// TestPlanAdmission: a text planned from a known shape enters the shared
// plan cache the second time it is seen; a text parsed in full, at once.
func TestPlanAdmission(t *testing.T) {
	pl := knownCatalog(t)
	epoch := pl.epoch("db")
	kept := func(sql string) bool {
		_, ok := pl.plans.c.Peek(planKey{"db", sql})
		return ok
	}
	plan := func(sql string) *plan {
		t.Helper()
		p := pl.decideIn(context.Background(), "db", epoch, pl.lookup("db", []byte(sql)))
		if !p.decision.Cacheable {
			t.Fatalf("%s: not cacheable: %s", sql, p.decision.Reason)
		}
		return p
	}
	const first, second = "SELECT v FROM t WHERE id = 1", "SELECT v FROM t WHERE id = 2"
	plan(first)
	if !kept(first) {
		t.Errorf("the first text of a shape, parsed in full, was not kept")
	}
	if p := plan(second); !p.transient || kept(second) {
		t.Errorf("a new text of a known shape: transient %v, kept %v; want true, false", p.transient, kept(second))
	}
	if p := plan(second); p.transient || !kept(second) {
		t.Errorf("the same text again: transient %v, kept %v; want false, true", p.transient, kept(second))
	}
	if p := plan(second); p.transient || !p.decided {
		t.Errorf("a kept text: transient %v, decided %v; want false, true (from the cache)", p.transient, p.decided)
	}
}

// TestPlanShapeDecision: texts of one shape share one decision, each tied
// to its own row, unless a rule matches on the text, which may tell them
// apart.
func TestPlanShapeDecision(t *testing.T) {
	decide := func(pl *planner, sql string) cachepolicy.Decision {
		t.Helper()
		return pl.decideIn(context.Background(), "db", pl.epoch("db"), pl.lookup("db", []byte(sql))).decision
	}
	t.Run("shared", func(t *testing.T) {
		pl := knownCatalog(t)
		decide(pl, "SELECT v FROM t WHERE id = 1")
		if len(pl.decided) != 1 {
			t.Fatalf("decisions kept for shapes: %d; want 1", len(pl.decided))
		}
		for _, id := range []string{"2", "1234567", "1"} {
			got := decide(pl, "SELECT v FROM t WHERE id = "+id)
			if !got.Cacheable || got.Row == nil || got.Row.Const != id {
				t.Errorf("id %s: cacheable %v, row %+v; want cacheable, tied to row %s", id, got.Cacheable, got.Row, id)
			}
		}
		// A new epoch asks the catalog again (which this one cannot
		// reach: it knows table t only in the first epoch).
		pl.forget("db")
		if got := decide(pl, "SELECT v FROM t WHERE id = 3"); got.Cacheable || !strings.HasPrefix(got.Reason, "catalog lookup failed") {
			t.Errorf("after the epoch changed: cacheable %v (%s); want a failed catalog lookup", got.Cacheable, got.Reason)
		}
	})
	t.Run("rule on the text", func(t *testing.T) {
		rules := []cachepolicy.Rule{{Query: regexp.MustCompile(`id = 7$`), Never: true}}
		pl := newPlanner(knownCatalog(t).catalog, rules, 0)
		pl.streamed = true
		for _, tt := range []struct {
			id        string
			cacheable bool
		}{{"1", true}, {"7", false}, {"8", true}} {
			if got := decide(pl, "SELECT v FROM t WHERE id = "+tt.id); got.Cacheable != tt.cacheable {
				t.Errorf("id %s: cacheable %v (%s); want %v", tt.id, got.Cacheable, got.Reason, tt.cacheable)
			}
		}
		if len(pl.decided) != 0 {
			t.Errorf("decisions kept for shapes with a rule on the text: %d; want 0", len(pl.decided))
		}
	})
}
