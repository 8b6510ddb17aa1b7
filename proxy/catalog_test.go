package proxy

import (
	"context"
	"testing"
)

// TestFactsEpoch: the catalog's facts hold for their epoch; a new epoch
// (DDL) forgets them.
func TestFactsEpoch(t *testing.T) {
	pl := knownCatalog(t)
	ctx := context.Background()
	a, _, _ := pl.analysis("SELECT v FROM t WHERE id = 1")
	f, _, err := pl.catalog.facts(ctx, "db", 0, a)
	if err != nil {
		t.Fatalf("facts: %v", err)
	}
	if got := f.Relations["t"]; len(got) != 1 || got[0].Key != "id" {
		t.Fatalf("facts.Relations[t] = %+v, want the table's one RelInfo", got)
	}
	// They must be looked up again, which fails here since this catalog
	// cannot be reached.
	if _, _, err := pl.catalog.facts(ctx, "db", 1, a); err == nil {
		t.Errorf("facts in a new epoch came from the old epoch's")
	}
}
