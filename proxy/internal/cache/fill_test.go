package cache

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// invalidationFixture is stored before each invalidation case.
var invalidationFixture = []item{
	{key: "users", db: "app", tables: []string{"users"}},
	{key: "join", db: "app", tables: []string{"users", "orders"}},
	{key: "orders", db: "app", tables: []string{"orders"}},
	{key: "none", db: "app"},
	{key: "other-db", db: "shop", tables: []string{"users"}},
}

func fixtureKeys() []string {
	var keys []string
	for _, it := range invalidationFixture {
		keys = append(keys, it.key)
	}
	return keys
}

func TestInvalidate(t *testing.T) {
	tests := []struct {
		name    string
		do      func(*Store) int
		removed int
		left    []string
	}{
		{"table", func(s *Store) int { return s.InvalidateTable("app", "users") },
			2, []string{"orders", "none", "other-db"}},
		{"other table", func(s *Store) int { return s.InvalidateTable("app", "orders") },
			2, []string{"users", "none", "other-db"}},
		{"same table name in another db", func(s *Store) int { return s.InvalidateTable("shop", "users") },
			1, []string{"users", "join", "orders", "none"}},
		{"unknown table", func(s *Store) int { return s.InvalidateTable("app", "nope") },
			0, []string{"users", "join", "orders", "none", "other-db"}},
		{"unknown db", func(s *Store) int { return s.InvalidateTable("nope", "users") },
			0, []string{"users", "join", "orders", "none", "other-db"}},
		{"db", func(s *Store) int { return s.InvalidateDB("app") },
			4, []string{"other-db"}},
		{"other db", func(s *Store) int { return s.InvalidateDB("shop") },
			1, []string{"users", "join", "orders", "none"}},
		{"all", func(s *Store) int { return s.InvalidateAll() },
			5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{})
			for _, it := range invalidationFixture {
				it.value = "v"
				put(t, s, it)
			}
			if got := tt.do(s); got != tt.removed {
				t.Errorf("removed %d, want %d", got, tt.removed)
			}
			if got := present(s, fixtureKeys()...); !cmp.Equal(got, tt.left, cmpopts.EquateEmpty()) {
				t.Errorf("left %q, want %q", got, tt.left)
			}
			checkInvariants(t, s)
		})
	}
}

func TestInvalidateEmptiesIndex(t *testing.T) {
	s := New(Config{})
	for _, it := range invalidationFixture {
		it.value = "v"
		put(t, s, it)
	}
	s.InvalidateTable("app", "users")
	s.InvalidateTable("app", "orders")
	s.InvalidateDB("app")
	s.InvalidateDB("shop")
	if st := s.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Errorf("Stats = %+v, want empty", st)
	}
	if len(s.byDB) != 0 {
		t.Errorf("byDB keeps %d databases after removing every entry", len(s.byDB))
	}
}

func TestGeneration(t *testing.T) {
	s := New(Config{})
	s.InvalidateTable("app", "users")
	s.InvalidateTable("app", "users")
	s.InvalidateTable("shop", "users")
	s.InvalidateDB("app")
	s.InvalidateAll()
	for _, c := range []struct {
		db, table string
		want      uint64
	}{{"app", "users", 2}, {"shop", "users", 1}, {"app", "orders", 0}} {
		if got := s.Generation(c.db, c.table); got != c.want {
			t.Errorf("Generation(%q, %q) = %d, want %d", c.db, c.table, got, c.want)
		}
	}
}

func TestFillInvalidateRace(t *testing.T) {
	tests := []struct {
		name   string
		during func(*Store) // between Begin and Commit
		want   string
	}{
		{"nothing", func(*Store) {}, ReasonStored},
		{"table read", func(s *Store) { s.InvalidateTable("app", "orders") }, ReasonInvalidated},
		{"first table read", func(s *Store) { s.InvalidateTable("app", "users") }, ReasonInvalidated},
		{"unrelated table", func(s *Store) { s.InvalidateTable("app", "items") }, ReasonStored},
		{"same table in another db", func(s *Store) { s.InvalidateTable("shop", "orders") }, ReasonStored},
		{"the db", func(s *Store) { s.InvalidateDB("app") }, ReasonInvalidated},
		{"another db", func(s *Store) { s.InvalidateDB("shop") }, ReasonStored},
		{"all", func(s *Store) { s.InvalidateAll() }, ReasonInvalidated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{})
			f := s.Begin([]byte("k"), "", "app", []string{"users", "orders"}, 0)
			tt.during(s)
			stored, why := s.Commit(f, []byte("v"))
			if why != tt.want || stored != (tt.want == ReasonStored) {
				t.Errorf("Commit = %v, %q, want %q", stored, why, tt.want)
			}
			if got := s.Get([]byte("k")) != nil; got != stored {
				t.Errorf("Get hit = %v, want %v", got, stored)
			}
			checkInvariants(t, s)
		})
	}
}

func TestInvalidationBeforeBeginDoesNotBlockFill(t *testing.T) {
	s := New(Config{})
	s.InvalidateTable("app", "users")
	s.InvalidateDB("app")
	s.InvalidateAll()
	f := s.Begin([]byte("k"), "", "app", []string{"users"}, 0)
	if ok, why := s.Commit(f, []byte("v")); !ok {
		t.Errorf("Commit = %v, %q, want stored", ok, why)
	}
}

// closed reports whether ch is closed, without blocking.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestSingleFlight(t *testing.T) {
	tests := []struct {
		name   string
		end    func(s *Store, f *Fill)
		waiter bool // whether the waiter's Get hits afterwards
	}{
		{"commit", func(s *Store, f *Fill) { s.Commit(f, []byte("v")) }, true},
		{"abort", func(s *Store, f *Fill) { s.Abort(f) }, false},
		{"commit refused", func(s *Store, f *Fill) {
			s.InvalidateTable("db", "t")
			s.Commit(f, []byte("v"))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{})
			key := []byte("k")
			if w := s.Wait(key); w != nil {
				t.Fatal("Wait with no fill running is not nil")
			}
			first := s.Begin(key, "", "db", []string{"t"}, 0)
			second := s.Begin(key, "", "db", []string{"t"}, 0)
			if !first.Leader() || second.Leader() {
				t.Fatalf("Leader: first %v, second %v; want true, false", first.Leader(), second.Leader())
			}
			wait := s.Wait(key)
			if wait == nil || closed(wait) {
				t.Fatal("Wait during the leader fill: nil or closed")
			}
			s.Abort(second) // a follower ending releases no one
			if closed(wait) {
				t.Fatal("Wait channel closed by a non-leader")
			}
			tt.end(s, first)
			if !closed(wait) {
				t.Fatal("Wait channel open after the leader ended")
			}
			if got := s.Get(key) != nil; got != tt.waiter {
				t.Errorf("waiter's Get hit = %v, want %v", got, tt.waiter)
			}
			if w := s.Wait(key); w != nil {
				t.Error("Wait after the leader ended is not nil")
			}
			if next := s.Begin(key, "", "db", []string{"t"}, 0); !next.Leader() {
				t.Error("first Begin after the leader ended is not leader")
			}
		})
	}
}

func TestFollowerCommitStores(t *testing.T) {
	s := New(Config{})
	key := []byte("k")
	leader := s.Begin(key, "", "db", nil, 0)
	follower := s.Begin(key, "", "db", nil, 0)
	wait := s.Wait(key)
	if ok, why := s.Commit(follower, []byte("follower")); !ok {
		t.Fatalf("follower Commit = %v, %q", ok, why)
	}
	if closed(wait) {
		t.Error("follower Commit closed the leader's channel")
	}
	if got := string(s.Get(key)); got != "follower" {
		t.Errorf("Get = %q, want follower", got)
	}
	s.Commit(leader, []byte("leader"))
	if got := string(s.Get(key)); got != "leader" {
		t.Errorf("Get = %q, want leader", got)
	}
	checkInvariants(t, s)
}

func TestFillEndsOnce(t *testing.T) {
	s := New(Config{})
	f := s.Begin([]byte("k"), "", "db", nil, 0)
	if ok, why := s.Commit(f, []byte("one")); !ok {
		t.Fatalf("Commit = %v, %q", ok, why)
	}
	s.Abort(f) // deferred cleanup after a Commit: no effect
	if ok, why := s.Commit(f, []byte("two")); ok || why != ReasonClosed {
		t.Errorf("second Commit = %v, %q, want false, %q", ok, why, ReasonClosed)
	}
	if ok, why := s.Commit(f, make([]byte, 2<<20)); ok || why != ReasonClosed {
		t.Errorf("second Commit of a too large value = %v, %q, want false, %q", ok, why, ReasonClosed)
	}
	if got := string(s.Get([]byte("k"))); got != "one" {
		t.Errorf("Get = %q, want one", got)
	}

	g := s.Begin([]byte("k2"), "", "db", nil, 0)
	s.Abort(g)
	if ok, why := s.Commit(g, []byte("v")); ok || why != ReasonClosed {
		t.Errorf("Commit after Abort = %v, %q, want false, %q", ok, why, ReasonClosed)
	}
}

func TestWaiterWakes(t *testing.T) {
	s := New(Config{})
	key := []byte("k")
	f := s.Begin(key, "", "db", nil, 0)
	wait := s.Wait(key)
	got := make(chan []byte)
	go func() {
		<-wait
		got <- s.Get(key)
	}()
	s.Commit(f, []byte("v"))
	select {
	case v := <-got:
		if string(v) != "v" {
			t.Errorf("waiter got %q, want v", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter not woken by Commit")
	}
}
