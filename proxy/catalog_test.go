package proxy

import (
	"context"
	"reflect"
	"testing"

	"github.com/sqlcache/sqlcache/cachepolicy"
)

// TestFactsReused: texts of one shape get the facts put together for the
// first, without building them again, until the epoch changes.
func TestFactsReused(t *testing.T) {
	pl := knownCatalog(t)
	ctx := context.Background()
	a1, _, _ := pl.analysis("SELECT v FROM t WHERE id = 1")
	a2, _, reused := pl.analysis("SELECT v FROM t WHERE id = 2")
	if !reused {
		t.Fatal("the second text's analysis was not reused from the first's shape")
	}
	// facts returns the identity of the facts' relation map.
	facts := func(a *cachepolicy.Analysis) uintptr {
		t.Helper()
		f, _, err := pl.catalog.facts(ctx, "db", 0, a)
		if err != nil {
			t.Fatalf("facts: %v", err)
		}
		if got := f.Relations["t"]; len(got) != 1 || got[0].Key != "id" {
			t.Fatalf("facts.Relations[t] = %+v, want the table's one RelInfo", got)
		}
		return reflect.ValueOf(f.Relations).Pointer()
	}
	if facts(a1) != facts(a2) {
		t.Errorf("a text of the same shape got facts built again")
	}
	if allocs := testing.AllocsPerRun(100, func() { pl.catalog.facts(ctx, "db", 0, a2) }); allocs != 0 {
		t.Errorf("facts of a known shape allocate %v times, want 0", allocs)
	}
	// A new epoch (DDL) forgets what the catalog said, the facts put
	// together included: they must be looked up again, which fails here
	// since this catalog cannot be reached.
	if _, _, err := pl.catalog.facts(ctx, "db", 1, a2); err == nil {
		t.Errorf("facts in a new epoch came from the old epoch's")
	}
}
