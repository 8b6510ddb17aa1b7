package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/sqlcache/sqlcache/cachepolicy"
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

// TestFactsKnownDoNotWait: while a lookup is in flight (one that a slow or
// unreachable catalog can hold for lookupTimeout), a statement whose names
// were all looked up before gets its facts without waiting for it.
func TestFactsKnownDoNotWait(t *testing.T) {
	pl := knownCatalog(t)
	d := pl.catalog.db("db")
	d.lookupMu.Lock() // a lookup in flight
	defer d.lookupMu.Unlock()
	a, _, _ := pl.analysis("SELECT v FROM t WHERE id = 1")
	type result struct {
		f   cachepolicy.Facts
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, _, err := pl.catalog.facts(t.Context(), "db", 0, a)
		done <- result{f, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("facts: %v", r.err)
		}
		if got := r.f.Relations["t"]; len(got) != 1 || got[0].Key != "id" {
			t.Errorf("facts.Relations[t] = %+v, want the table's one RelInfo", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("facts of known names waited for the lookup in flight")
	}
}
