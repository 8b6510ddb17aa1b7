package cache

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
)

// putRow stores key as a row entry and fails the test if it is not stored.
func putRow(t testing.TB, s *Store, key, db string, row Row) {
	t.Helper()
	f := s.BeginRow([]byte(key), "label "+key, db, row, 0)
	if ok, why := s.Commit(f, []byte("v "+key)); !ok {
		t.Fatalf("Commit(%q) = false, %q", key, why)
	}
}

func TestInvalidateRows(t *testing.T) {
	setup := func() *Store {
		s := New(Config{})
		putRow(t, s, "a1", "db", Row{"a", "id", "1"})
		putRow(t, s, "a1 again", "db", Row{"a", "id", "1"})
		putRow(t, s, "a2", "db", Row{"a", "id", "2"})
		putRow(t, s, "a by name", "db", Row{"a", "name", "x"})
		put(t, s, item{key: "a all", db: "db", tables: []string{"a"}, value: "v"})
		put(t, s, item{key: "a and b", db: "db", tables: []string{"a", "b"}, value: "v"})
		putRow(t, s, "b1", "db", Row{"b", "id", "1"})
		putRow(t, s, "a1 other db", "db2", Row{"a", "id", "1"})
		return s
	}
	all := []string{"a1", "a1 again", "a2", "a by name", "a all", "a and b", "b1", "a1 other db"}
	for _, tc := range []struct {
		name string
		do   func(s *Store) int
		left []string
	}{
		{"one row", func(s *Store) int { return s.InvalidateRows("db", "a", "id", []string{"1"}) },
			// Entries of any rows of a go; so do entries by another column,
			// which may be the same row.
			[]string{"a2", "b1", "a1 other db"}},
		{"two rows", func(s *Store) int { return s.InvalidateRows("db", "a", "id", []string{"1", "2"}) },
			[]string{"b1", "a1 other db"}},
		{"a row no entry reads", func(s *Store) int { return s.InvalidateRows("db", "a", "id", []string{"3"}) },
			[]string{"a1", "a1 again", "a2", "b1", "a1 other db"}},
		{"by the other column", func(s *Store) int { return s.InvalidateRows("db", "a", "name", []string{"y"}) },
			[]string{"a by name", "b1", "a1 other db"}},
		{"whole table", func(s *Store) int { return s.InvalidateTable("db", "a") },
			[]string{"b1", "a1 other db"}},
		{"database", func(s *Store) int { return s.InvalidateDB("db") },
			[]string{"a1 other db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := setup()
			n := tc.do(s)
			got := present(s, all...)
			if !slices.Equal(got, tc.left) {
				t.Errorf("left %q; want %q", got, tc.left)
			}
			if want := len(all) - len(tc.left); n != want {
				t.Errorf("removed %d; want %d", n, want)
			}
			if st := s.Stats(); st.Entries != len(tc.left) {
				t.Errorf("Stats().Entries = %d; want %d", st.Entries, len(tc.left))
			}
		})
	}
}

// TestRowFillRace: a row fill that began before a change of its row, or
// of its whole table, does not store; a change of another row does not
// stop it, but does stop fills of answers that read any rows.
func TestRowFillRace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		change     func(s *Store)
		row, table bool // whether the row fill and the table fill store
	}{
		{"same row", func(s *Store) { s.InvalidateRows("db", "a", "id", []string{"1"}) }, false, false},
		{"other row", func(s *Store) { s.InvalidateRows("db", "a", "id", []string{"2"}) }, true, false},
		{"other column", func(s *Store) { s.InvalidateRows("db", "a", "name", []string{"x"}) }, true, false},
		{"whole table", func(s *Store) { s.InvalidateTable("db", "a") }, false, false},
		{"other table", func(s *Store) { s.InvalidateRows("db", "b", "id", []string{"1"}) }, true, true},
		{"database", func(s *Store) { s.InvalidateDB("db") }, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{})
			rf := s.BeginRow([]byte("row"), "", "db", Row{"a", "id", "1"}, 0)
			tf := s.Begin([]byte("table"), "", "db", []string{"a"}, 0)
			tc.change(s)
			if ok, _ := s.Commit(rf, []byte("v")); ok != tc.row {
				t.Errorf("row fill stored: %t; want %t", ok, tc.row)
			}
			if ok, _ := s.Commit(tf, []byte("v")); ok != tc.table {
				t.Errorf("table fill stored: %t; want %t", ok, tc.table)
			}
		})
	}
}

// TestRowOverheadEstimate is TestOverheadEstimate for row entries.
func TestRowOverheadEstimate(t *testing.T) {
	const n = 20000
	s := New(Config{MaxBytes: 1 << 40})
	keys := make([][]byte, n)
	rows := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%012d", i)
		rows[i] = fmt.Sprint(i)
	}
	value := []byte("0123456789abcdef")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i, k := range keys {
		s.Commit(s.BeginRow(k, "", "db", Row{"t1", "id", rows[i]}, 0), value)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	heap := float64(after.HeapAlloc-before.HeapAlloc) / n
	accounted := float64(s.Stats().Bytes) / n
	t.Logf("heap %.0f bytes/entry, accounted %.0f", heap, accounted)
	if heap > 1.2*accounted || heap < 0.8*accounted {
		t.Errorf("heap %.0f bytes/entry, accounted %.0f: off by more than 20%%", heap, accounted)
	}
}

// TestRowIndexEmpties: the row index lets go of rows, columns and tables
// as their entries go, however they go.
func TestRowIndexEmpties(t *testing.T) {
	var clk clock
	s := New(Config{Now: clk.Now, MaxBytes: 1 << 20})
	for i := range 3 {
		putRow(t, s, fmt.Sprint("same row ", i), "db", Row{"a", "id", "1"})
	}
	putRow(t, s, "other row", "db", Row{"a", "id", "2"})
	if n := s.InvalidateRows("db", "a", "id", []string{"1"}); n != 3 {
		t.Errorf("InvalidateRows removed %d; want the row's 3", n)
	}
	if got := present(s, "other row"); len(got) != 1 {
		t.Errorf("the other row's entry is gone")
	}
	// Replacing an entry of the same key, then evicting: both paths unlink.
	putRow(t, s, "other row", "db", Row{"a", "id", "2"})
	for i := range 5000 {
		put(t, s, item{key: fmt.Sprint("filler ", i), db: "db2", tables: []string{"b"}, value: "v"})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.byDB["db"]; d != nil {
		t.Errorf("database index kept after its entries went: %d entries, %d row tables", len(d.entries), len(d.rows))
	}
}
