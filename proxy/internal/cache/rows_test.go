package cache

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
			checkInvariants(t, s)
		})
	}
}

// TestRowFillRace: a row fill that began before a change of its row, or
// of its whole table, does not store; a change of another row does not
// (by the same column) does not stop it, but does stop fills of answers
// that read any rows.
func TestRowFillRace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		change     func(s *Store)
		row, table bool // whether the row fill and the table fill store
	}{
		{"same row", func(s *Store) { s.InvalidateRows("db", "a", "id", []string{"1"}) }, false, false},
		{"other row", func(s *Store) { s.InvalidateRows("db", "a", "id", []string{"2"}) }, true, false},
		{"other column", func(s *Store) { s.InvalidateRows("db", "a", "name", []string{"x"}) }, false, false}, // may be the same row
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

// TestRowIndexKeepsHeadsKey: when the first entry of a row goes and
// another of the row takes its place in the index, the index's key is the
// new head's copy, not the copy in the removed entry's value allocation
// (checkInvariants), which would keep that allocation alive.
func TestRowIndexKeepsHeadsKey(t *testing.T) {
	var clk clock
	s := New(Config{Now: clk.Now})
	row := Row{"a", "id", "1"}
	putRow(t, s, "older", "db", row)
	f := s.BeginRow([]byte("newer"), "label", "db", row, time.Second) // the head
	if ok, why := s.Commit(f, []byte("v")); !ok {
		t.Fatalf("Commit: %s", why)
	}
	clk.Advance(time.Minute)
	if v := s.Get([]byte("newer")); v != nil {
		t.Fatalf("Get(newer) after its TTL = %q; want a miss", v)
	}
	if v := s.Get([]byte("older")); string(v) != "v older" {
		t.Errorf("Get(older) = %q; want %q", v, "v older")
	}
	checkInvariants(t, s)
}

// TestBeginRowWithoutColumn: a row named by no column is taken as the
// whole table (the zero rowRef means no row), so any row's change drops it.
func TestBeginRowWithoutColumn(t *testing.T) {
	s := New(Config{})
	putRow(t, s, "k", "db", Row{"a", "", "1"})
	if n := s.InvalidateRows("db", "a", "id", []string{"2"}); n != 1 {
		t.Errorf("InvalidateRows of another row removed %d; want the entry", n)
	}
	checkInvariants(t, s)
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
		t.Errorf("database index kept after its entries went: %d entries, %d row tables", d.n, len(d.rows))
	}
}

// TestConcurrentRows is TestConcurrent for row entries: 40 goroutines read
// rows of one table by key and the whole table, while others change one
// row (reported by its key or by another column), several rows, or the
// whole table; the budget forces evictions. No read may return a row
// older than the last change reported before it, and the indexes must add
// up afterwards.
func TestConcurrentRows(t *testing.T) {
	const (
		goroutines = 40
		ops        = 2000
		nrows      = 16
	)
	var versions, floors [nrows]atomic.Uint64
	change := func(rows []int, report func()) {
		vs := make([]uint64, len(rows))
		for i, r := range rows {
			vs[i] = versions[r].Add(1)
		}
		report()
		for i, r := range rows {
			for {
				old := floors[r].Load()
				if old >= vs[i] || floors[r].CompareAndSwap(old, vs[i]) {
					break
				}
			}
		}
	}
	// An answer is "key|v0,v1,..." for the rows it read.
	answer := func(key string, rows []int) []byte {
		v := []byte(key + "|")
		for _, r := range rows {
			v = strconv.AppendUint(v, versions[r].Load(), 10)
			v = append(v, ',')
		}
		return v
	}
	stale := func(v []byte, rows []int, fl []uint64) bool {
		_, vs, _ := strings.Cut(string(v), "|")
		for i := range rows {
			var n string
			n, vs, _ = strings.Cut(vs, ",")
			if got, _ := strconv.ParseUint(n, 10, 64); got < fl[i] {
				return true
			}
		}
		return false
	}
	all := make([]int, nrows)
	for i := range all {
		all[i] = i
	}
	s := New(Config{MaxBytes: 10 * 400})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 2))
			for range ops {
				row := r.IntN(nrows)
				switch n := r.IntN(100); {
				case n < 6:
					change([]int{row}, func() { s.InvalidateRows("db", "t", "id", []string{strconv.Itoa(row)}) })
				case n < 8:
					other := r.IntN(nrows)
					change([]int{row, other}, func() {
						s.InvalidateRows("db", "t", "id", []string{strconv.Itoa(row), strconv.Itoa(other)})
					})
				case n < 9:
					// The stream names rows by another column.
					change([]int{row}, func() { s.InvalidateRows("db", "t", "name", []string{"x"}) })
				case n < 10:
					change(all, func() { s.InvalidateTable("db", "t") })
				default:
					rows, key := []int{row}, "row"+strconv.Itoa(row)
					if n < 20 {
						rows, key = all, "all"
					} else if n < 25 {
						key += "-again" // a second query of the same row
					}
					fl := make([]uint64, len(rows))
					for i, x := range rows {
						fl[i] = floors[x].Load()
					}
					if v := s.Get([]byte(key)); v != nil {
						if !bytes.HasPrefix(v, []byte(key+"|")) {
							t.Errorf("Get(%q) = %q: another key's answer", key, v)
						} else if stale(v, rows, fl) {
							t.Errorf("Get(%q) = %q: older than floors %v", key, v, fl)
						}
						continue
					}
					var f *Fill
					if key == "all" {
						f = s.Begin([]byte(key), "", "db", []string{"t"}, 0)
					} else {
						f = s.BeginRow([]byte(key), "", "db", Row{"t", "id", strconv.Itoa(row)}, 0)
					}
					v := answer(key, rows)
					runtime.Gosched()
					s.Commit(f, v)
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, s)
	if st := s.Stats(); st.Evictions == 0 {
		t.Error("no evictions: the budget is too large to exercise them")
	}
}

// TestRowEntriesCounted: Stats counts row entries as they come and go,
// by every path, InvalidateAll's included.
func TestRowEntriesCounted(t *testing.T) {
	var clk clock
	s := New(Config{Now: clk.Now, MaxBytes: 1 << 20})
	putRow(t, s, "row 1", "db", Row{"a", "id", "1"})
	putRow(t, s, "row 2", "db", Row{"a", "id", "2"})
	put(t, s, item{key: "any rows", db: "db", tables: []string{"a"}, value: "v"})
	if got := s.Stats(); got.RowEntries != 2 || got.Entries != 3 {
		t.Errorf("Stats = %d entries, %d row entries; want 3, 2", got.Entries, got.RowEntries)
	}
	s.InvalidateRows("db", "a", "id", []string{"1"})
	if got := s.Stats().RowEntries; got != 1 {
		t.Errorf("after one row's invalidation: %d row entries; want 1", got)
	}
	s.InvalidateAll()
	checkInvariants(t, s)
	if got := s.Stats().RowEntries; got != 0 {
		t.Errorf("after InvalidateAll: %d row entries; want 0", got)
	}
}
