package cache

import (
	"fmt"
	"strconv"
	"testing"
)

// chunkedStore returns a store holding, in database db, rows row entries
// of table a by column id (keys "0", "1", …), any table-level entries of
// a, and others entries of table b, with a betweenChunks hook that checks
// that the lock is free and counts its calls.
func chunkedStore(t *testing.T, rows, any, others int) (*Store, *int) {
	t.Helper()
	s := New(Config{MaxBytes: 1 << 40})
	for i := range rows {
		putRow(t, s, "row "+strconv.Itoa(i), "db", Row{"a", "id", strconv.Itoa(i)})
	}
	for i := range any {
		put(t, s, item{key: "any " + strconv.Itoa(i), db: "db", tables: []string{"a"}, value: "v"})
	}
	for i := range others {
		put(t, s, item{key: "other " + strconv.Itoa(i), db: "db", tables: []string{"b"}, value: "v"})
	}
	calls := new(int)
	s.betweenChunks = func() {
		*calls++
		if !s.mu.TryLock() {
			t.Error("the store's lock is held between chunks of an invalidation")
			return
		}
		s.mu.Unlock()
	}
	return s, calls
}

// keyRange returns "0" … n-1 as strings.
func keyRange(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
	}
	return keys
}

// TestInvalidateInChunks: a large invalidation releases the lock between
// chunks of removals and still removes every entry it names.
func TestInvalidateInChunks(t *testing.T) {
	const rows, any = 3 * invalidateChunk, 2 * invalidateChunk
	for _, tc := range []struct {
		name       string
		invalidate func(s *Store) int
		removed    int // entries the call removes
		left       int // entries left (of table b, or rows of a not named)
	}{
		{"table", func(s *Store) int { return s.InvalidateTable("db", "a") }, rows + any, 10},
		{"rows", func(s *Store) int { return s.InvalidateRows("db", "a", "id", keyRange(rows-5)) }, rows - 5 + any, 15},
		{"database", func(s *Store) int { return s.InvalidateDB("db") }, rows + any + 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, calls := chunkedStore(t, rows, any, 10)
			if n := tc.invalidate(s); n != tc.removed {
				t.Errorf("removed %d entries; want %d", n, tc.removed)
			}
			// At least one chunk boundary per invalidateChunk entries
			// after the first chunk.
			if min := tc.removed/invalidateChunk - 1; *calls < min {
				t.Errorf("%d pauses between chunks for %d entries; want at least %d", *calls, tc.removed, min)
			}
			if st := s.Stats(); st.Entries != tc.left {
				t.Errorf("%d entries left; want %d", st.Entries, tc.left)
			}
			checkInvariants(t, s)
		})
	}
}

// TestInvalidateChunksRefuseOlderFills: while an invalidation runs in
// chunks, a fill begun before it either is refused or stores an entry
// that a later chunk removes, so none is left when the call returns; a
// fill begun during it stores.
func TestInvalidateChunksRefuseOlderFills(t *testing.T) {
	const rows = 3 * invalidateChunk
	for _, tc := range []struct {
		name       string
		invalidate func(s *Store)
	}{
		{"table", func(s *Store) { s.InvalidateTable("db", "a") }},
		{"rows", func(s *Store) { s.InvalidateRows("db", "a", "id", keyRange(rows)) }},
		{"database", func(s *Store) { s.InvalidateDB("db") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := chunkedStore(t, rows, 0, 0)
			// Fills of the first and the last row, and of the table, begun
			// before the change: their answers may predate it.
			first := s.BeginRow([]byte("old first"), "", "db", Row{"a", "id", "0"}, 0)
			last := s.BeginRow([]byte("old last"), "", "db", Row{"a", "id", strconv.Itoa(rows - 1)}, 0)
			any := s.Begin([]byte("old any"), "", "db", []string{"a"}, 0)
			hook := s.betweenChunks
			committed := false
			s.betweenChunks = func() {
				hook()
				if committed {
					return
				}
				committed = true
				for _, f := range []*Fill{first, last, any} {
					s.Commit(f, []byte("old"))
				}
				putRow(t, s, "new", "db", Row{"a", "id", "0"})
			}
			tc.invalidate(s)
			if !committed {
				t.Fatal("the invalidation ran in one chunk; the case proves nothing")
			}
			if got := present(s, "old first", "old last", "old any"); len(got) > 0 {
				t.Errorf("answers of fills begun before the invalidation are cached after it: %q", got)
			}
			checkInvariants(t, s)
		})
	}
}

// BenchmarkInvalidateTableLarge measures dropping a table with many row
// entries: the time of the whole call, which releases the lock between
// chunks (invalidateChunk).
func BenchmarkInvalidateTableLarge(b *testing.B) {
	const n = 100_000
	value := []byte("0123456789abcdef")
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%d", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		s := New(Config{MaxBytes: 1 << 40})
		for i, k := range keys {
			s.Commit(s.BeginRow(k, "", "db", Row{"t", "id", strconv.Itoa(i)}, 0), value)
		}
		b.StartTimer()
		if got := s.InvalidateTable("db", "t"); got != n {
			b.Fatalf("removed %d; want %d", got, n)
		}
	}
}
