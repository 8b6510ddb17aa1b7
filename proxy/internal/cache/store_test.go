package cache

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// clock is an injected time source that tests move by hand.
type clock struct{ ns atomic.Int64 }

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *clock) Now() time.Time          { return epoch.Add(time.Duration(c.ns.Load())) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// evictLog records OnEvict calls.
type evictLog struct {
	mu      sync.Mutex // guards reasons
	reasons []string
}

func (l *evictLog) OnEvict(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reasons = append(l.reasons, reason)
}

func (l *evictLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.reasons
	l.reasons = nil
	return r
}

// item is one entry to put in a store.
type item struct {
	key    string
	db     string
	tables []string
	ttl    time.Duration
	value  string
}

// put stores it with Begin and Commit and fails the test if it is not
// stored.
func put(t testing.TB, s *Store, it item) {
	t.Helper()
	f := s.Begin([]byte(it.key), "label "+it.key, it.db, it.tables, it.ttl)
	if ok, why := s.Commit(f, []byte(it.value)); !ok {
		t.Fatalf("Commit(%q) = false, %q", it.key, why)
	}
}

// present returns the keys of keys that Get finds.
func present(s *Store, keys ...string) []string {
	var got []string
	for _, k := range keys {
		if s.Get([]byte(k)) != nil {
			got = append(got, k)
		}
	}
	return got
}

// sizeOf is the accounted size of an entry, computed independently of
// Fill.size.
func sizeOf(key, label, db string, tables []string, value int) int64 {
	n := entryOverhead + len(key) + len(label) + len(db) + value
	for _, t := range tables {
		n += tableOverhead + len(t)
	}
	return int64(n)
}

// rowListed reports whether row entry e is in its row's list.
func rowListed(d *dbIndex, e *entry) bool {
	for x := d.rows[e.tables[0]][e.row.column][e.row.key]; x != nil; x = x.rowNext {
		if x == e {
			return true
		}
	}
	return false
}

// checkInvariants verifies the store's bookkeeping: the byte count, the
// LRU and the indexes agree with each other.
func checkInvariants(t testing.TB, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()

	var sum int64
	inLRU := make(map[*entry]bool)
	for _, e := range s.lru.Values() {
		if inLRU[e] {
			t.Fatalf("entry %q twice in the LRU list", e.key)
		}
		inLRU[e] = true
		sum += e.size
		if h := s.hashKey([]byte(e.key)); s.hashOf(e) != h {
			t.Errorf("entry %q: hashOf %x, hashKey %x", e.key, s.hashOf(e), h)
		} else if got, _ := s.lru.Peek(h); got != e {
			t.Errorf("entry %q in the LRU list is not the entry of its hash %x", e.key, h)
		}
		want := sizeOf(e.key, e.label, e.db, e.tables, len(e.value))
		if e.row.orNil() != nil {
			want += int64(len(e.row.key))
		}
		if e.size != want {
			t.Errorf("entry %q size %d, want %d", e.key, e.size, want)
		}
		d := s.byDB[e.db]
		if d == nil {
			t.Errorf("entry %q: db %q not indexed", e.key, e.db)
			continue
		}
		if len(e.tables) == 0 {
			if _, ok := d.bare[e]; !ok {
				t.Errorf("entry %q of no table missing from db %q index", e.key, e.db)
			}
			continue
		}
		if e.row.orNil() != nil {
			if !rowListed(d, e) {
				t.Errorf("row entry %q missing from its row's list", e.key)
			}
			continue
		}
		for _, tb := range e.tables {
			if _, ok := d.tables[tb][e]; !ok {
				t.Errorf("entry %q missing from table %q index", e.key, tb)
			}
		}
	}
	if sum != s.bytes {
		t.Errorf("bytes = %d, entries sum to %d", s.bytes, sum)
	}
	rows := 0
	for e := range inLRU {
		if e.row.orNil() != nil {
			rows++
		}
	}
	if rows != s.rowEntries {
		t.Errorf("rowEntries = %d, lru holds %d row entries", s.rowEntries, rows)
	}
	if s.bytes > s.maxBytes {
		t.Errorf("bytes = %d > max %d", s.bytes, s.maxBytes)
	}
	perDB := make(map[string]int)
	for e := range inLRU {
		perDB[e.db]++
	}
	indexed := 0
	for db, d := range s.byDB {
		if d.n == 0 {
			t.Errorf("db %q: empty index kept", db)
		}
		if d.n != perDB[db] {
			t.Errorf("db %q: index counts %d entries, lru holds %d", db, d.n, perDB[db])
		}
		indexed += d.n
		if d.bare != nil && len(d.bare) == 0 {
			t.Errorf("db %q: empty set of entries of no table kept", db)
		}
		for e := range d.bare {
			if !inLRU[e] || e.db != db || len(e.tables) > 0 {
				t.Errorf("db %q index of no table holds a removed, foreign or table's entry %q", db, e.key)
			}
		}
		for tb, set := range d.tables {
			if len(set) == 0 {
				t.Errorf("db %q table %q: empty set kept", db, tb)
			}
			for e := range set {
				if !inLRU[e] || !slices.Contains(e.tables, tb) || e.row.orNil() != nil {
					t.Errorf("db %q table %q index holds removed, foreign or row entry %q", db, tb, e.key)
				}
			}
		}
		for tb, ri := range d.rows {
			if len(ri) == 0 {
				t.Errorf("db %q table %q: empty row index kept", db, tb)
			}
			for col, keys := range ri {
				if len(keys) == 0 {
					t.Errorf("db %q table %q column %q: empty key index kept", db, tb, col)
				}
				for key, head := range keys {
					if head == nil || head.rowPrev != nil {
						t.Errorf("db %q row %s.%s=%s: list head nil or has a predecessor", db, tb, col, key)
					} else if unsafe.StringData(key) != unsafe.StringData(head.row.key) {
						// Any other entry's copy may be gone, and the map's
						// key would keep its value allocation alive.
						t.Errorf("db %q row %s.%s=%s: the index's key is not its head entry's", db, tb, col, key)
					}
					for e := head; e != nil; e = e.rowNext {
						if !inLRU[e] || e.row.orNil() == nil || e.tables[0] != tb || e.row.column != col || e.row.key != key {
							t.Errorf("db %q row %s.%s=%s lists removed or foreign entry %q", db, tb, col, key, e.key)
						}
						if e.rowNext != nil && e.rowNext.rowPrev != e {
							t.Errorf("row list of %q broken after %q", key, e.key)
						}
					}
				}
			}
		}
	}
	if len(inLRU) != s.lru.Len() {
		t.Errorf("LRU list holds %d entries, its map %d", len(inLRU), s.lru.Len())
	}
	if indexed != len(inLRU) {
		t.Errorf("index holds %d entries, LRU %d", indexed, len(inLRU))
	}
}

func TestGetCommitRoundtrip(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		value []byte
	}{
		{"plain", "k1", []byte("T\x00\x00\x00\x06\x00\x01")},
		{"empty value is a hit, not a miss", "k2", []byte{}},
		{"binary key", "\x00\xff\x00", []byte("v")},
		{"empty key", "", []byte("v")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{})
			if got := s.Get([]byte(tt.key)); got != nil {
				t.Fatalf("Get before Commit = %q, want nil", got)
			}
			f := s.Begin([]byte(tt.key), "SELECT 1", "db", []string{"t"}, 0)
			if ok, why := s.Commit(f, tt.value); !ok || why != ReasonStored {
				t.Fatalf("Commit = %v, %q", ok, why)
			}
			got := s.Get([]byte(tt.key))
			if got == nil {
				t.Fatal("Get after Commit = nil")
			}
			if !bytes.Equal(got, tt.value) {
				t.Errorf("Get = %q, want %q", got, tt.value)
			}
			if got := s.Get([]byte(tt.key + "x")); got != nil {
				t.Errorf("Get(other key) = %q, want nil", got)
			}
			checkInvariants(t, s)
		})
	}
}

func TestDefaults(t *testing.T) {
	s := New(Config{})
	if got := s.Stats(); got.MaxBytes != 256<<20 {
		t.Errorf("MaxBytes = %d, want 256 MiB", got.MaxBytes)
	}
	if s.maxEntryBytes != 1<<20 {
		t.Errorf("maxEntryBytes = %d, want 1 MiB", s.maxEntryBytes)
	}
}

func TestHashCollision(t *testing.T) {
	s := New(Config{})
	s.testHash = func(string) uint64 { return 42 } // every key collides

	put(t, s, item{key: "a", db: "db", tables: []string{"t"}, value: "A"})
	if got := s.Get([]byte("b")); got != nil {
		t.Fatalf("Get(b) with a stored under the same hash = %q, want nil", got)
	}
	if got := string(s.Get([]byte("a"))); got != "A" {
		t.Fatalf("Get(a) = %q, want A", got)
	}

	// Single flight goes by the full key: both lead.
	fb := s.Begin([]byte("b"), "", "db", []string{"u"}, 0)
	if !fb.Leader() {
		t.Error("fill of b not leader while only a, a different key, is stored")
	}
	fa := s.Begin([]byte("a"), "", "db", nil, 0)
	if !fa.Leader() {
		t.Error("fill of a not leader while only b's fill runs")
	}
	s.Abort(fa)

	// The newer answer displaces the colliding one, indexes included.
	if ok, why := s.Commit(fb, []byte("B")); !ok {
		t.Fatalf("Commit(b) = %v, %q", ok, why)
	}
	if got, want := present(s, "a", "b"), []string{"b"}; !cmp.Equal(got, want) {
		t.Errorf("present = %q, want %q", got, want)
	}
	if n := s.InvalidateTable("db", "t"); n != 0 {
		t.Errorf("InvalidateTable(t) removed %d, want 0: a's entry is gone", n)
	}
	if st := s.Stats(); st.Entries != 1 {
		t.Errorf("Entries = %d, want 1", st.Entries)
	}
	checkInvariants(t, s)
}

func TestValueIsCopied(t *testing.T) {
	s := New(Config{})
	buf := []byte("original")
	f := s.Begin([]byte("k"), "", "db", []string{"t"}, 0)
	s.Commit(f, buf)
	copy(buf, "XXXXXXXX")
	got := s.Get([]byte("k"))
	if string(got) != "original" {
		t.Fatalf("Get after mutating the committed buffer = %q, want original", got)
	}

	// The slice Get returned stays intact after the entry goes and the
	// key is filled again.
	s.InvalidateTable("db", "t")
	put(t, s, item{key: "k", db: "db", tables: []string{"t"}, value: "replaced"})
	if string(got) != "original" {
		t.Errorf("earlier Get result changed to %q", got)
	}
}

func TestBeginCopiesArguments(t *testing.T) {
	var clk clock
	s := New(Config{Now: clk.Now})
	key := []byte("key")
	tables := []string{"t1", "t2", "t1"}
	f := s.Begin(key, "label", "db", tables, 0)
	copy(key, "zzz")
	tables[0] = "other"
	s.Commit(f, []byte("v"))

	if got := string(s.Get([]byte("key"))); got != "v" {
		t.Errorf("Get(key) = %q, want v", got)
	}
	want := []EntryInfo{{Label: "label", DB: "db", Tables: []string{"t1", "t2"}, Hits: 1,
		Bytes: int(sizeOf("key", "label", "db", []string{"t1", "t2"}, 1))}}
	if diff := cmp.Diff(want, s.Top(10)); diff != "" {
		t.Errorf("Top (-want +got):\n%s", diff)
	}
	if n := s.InvalidateTable("db", "t1"); n != 1 {
		t.Errorf("InvalidateTable(t1) = %d, want 1", n)
	}
	checkInvariants(t, s)
}

// budgetFor returns a MaxBytes that holds exactly n entries like it.
func budgetFor(n int, it item) int64 {
	return int64(n) * sizeOf(it.key, "label "+it.key, it.db, it.tables, len(it.value))
}

func TestByteBudget(t *testing.T) {
	var log evictLog
	template := item{key: "k0", db: "db", tables: []string{"t"}, value: strings.Repeat("v", 100)}
	s := New(Config{MaxBytes: budgetFor(4, template), OnEvict: log.OnEvict})

	var keys []string
	for i := range 10 {
		it := template
		it.key = "k" + strconv.Itoa(i)
		keys = append(keys, it.key)
		put(t, s, it)
		if st := s.Stats(); st.Bytes > st.MaxBytes {
			t.Fatalf("after %d commits Bytes = %d > MaxBytes %d", i+1, st.Bytes, st.MaxBytes)
		}
	}
	if got, want := present(s, keys...), []string{"k6", "k7", "k8", "k9"}; !cmp.Equal(got, want) {
		t.Errorf("present = %q, want %q", got, want)
	}
	st := s.Stats()
	want := Stats{Entries: 4, Bytes: budgetFor(4, template), MaxBytes: budgetFor(4, template), Evictions: 6}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if got, want := log.take(), slices.Repeat([]string{EvictCapacity}, 6); !cmp.Equal(got, want) {
		t.Errorf("OnEvict reasons = %q, want %q", got, want)
	}
	checkInvariants(t, s)
}

func TestLRUOrder(t *testing.T) {
	tests := []struct {
		name string
		gets []string // after storing a, b, c and before storing d
		want []string // present after storing d
	}{
		{"no gets: oldest goes", nil, []string{"b", "c", "d"}},
		{"get a: b goes", []string{"a"}, []string{"a", "c", "d"}},
		{"get a then b: c goes", []string{"a", "b"}, []string{"a", "b", "d"}},
		{"miss bumps nothing", []string{"x"}, []string{"b", "c", "d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			template := item{key: "a", db: "db", value: "value"}
			s := New(Config{MaxBytes: budgetFor(3, template)})
			for _, k := range []string{"a", "b", "c"} {
				put(t, s, item{key: k, db: "db", value: "value"})
			}
			for _, k := range tt.gets {
				s.Get([]byte(k))
			}
			put(t, s, item{key: "d", db: "db", value: "value"})
			if got := present(s, "a", "b", "c", "d"); !cmp.Equal(got, tt.want) {
				t.Errorf("present = %q, want %q", got, tt.want)
			}
			checkInvariants(t, s)
		})
	}
}

func TestReplaceSameKey(t *testing.T) {
	s := New(Config{})
	put(t, s, item{key: "k", db: "db1", tables: []string{"t"}, value: "old"})
	put(t, s, item{key: "k", db: "db2", tables: []string{"u"}, value: "newer"})
	if got := string(s.Get([]byte("k"))); got != "newer" {
		t.Errorf("Get = %q, want newer", got)
	}
	if n := s.InvalidateTable("db1", "t"); n != 0 {
		t.Errorf("InvalidateTable on the replaced entry's table = %d, want 0", n)
	}
	if st := s.Stats(); st.Entries != 1 || st.Bytes != sizeOf("k", "label k", "db2", []string{"u"}, 5) {
		t.Errorf("Stats = %+v, want one entry of the new size", st)
	}
	checkInvariants(t, s)
}

func TestTooLarge(t *testing.T) {
	const maxEntry = 1000
	small := sizeOf("k", "", "db", nil, 0)
	tests := []struct {
		name     string
		maxBytes int64
		value    int
		want     string
	}{
		{"at MaxEntryBytes", 1 << 20, maxEntry, ReasonStored},
		{"over MaxEntryBytes", 1 << 20, maxEntry + 1, ReasonTooLarge},
		{"entry at MaxBytes/2", 2 * (small + 100), 100, ReasonStored},
		{"entry over MaxBytes/2", 2 * (small + 100), 101, ReasonTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{MaxBytes: tt.maxBytes, MaxEntryBytes: maxEntry})
			f := s.Begin([]byte("k"), "", "db", nil, 0)
			wait := s.Wait([]byte("k"))
			stored, why := s.Commit(f, make([]byte, tt.value))
			if why != tt.want || stored != (tt.want == ReasonStored) {
				t.Errorf("Commit = %v, %q, want %q", stored, why, tt.want)
			}
			if got := s.Get([]byte("k")) != nil; got != stored {
				t.Errorf("Get hit = %v, want %v", got, stored)
			}
			select {
			case <-wait:
			default:
				t.Error("a refused leader Commit left its waiters waiting")
			}
			checkInvariants(t, s)
		})
	}
}

func TestTTL(t *testing.T) {
	var clk clock
	var log evictLog
	s := New(Config{Now: clk.Now, OnEvict: log.OnEvict})
	put(t, s, item{key: "short", db: "db", ttl: 10 * time.Second, value: "v"})
	put(t, s, item{key: "forever", db: "db", ttl: 0, value: "v"})

	clk.Advance(10*time.Second - time.Nanosecond)
	if got, want := present(s, "short", "forever"), []string{"short", "forever"}; !cmp.Equal(got, want) {
		t.Fatalf("1ns before the TTL, present = %q, want %q", got, want)
	}
	if got := log.take(); got != nil {
		t.Errorf("OnEvict before the TTL: %q", got)
	}
	clk.Advance(time.Nanosecond)
	if got, want := present(s, "short", "forever"), []string{"forever"}; !cmp.Equal(got, want) {
		t.Fatalf("at the TTL, present = %q, want %q", got, want)
	}
	if got, want := log.take(), []string{EvictTTL}; !cmp.Equal(got, want) {
		t.Errorf("OnEvict = %q, want %q", got, want)
	}
	if st := s.Stats(); st.Entries != 1 || st.Expirations != 1 || st.Evictions != 0 {
		t.Errorf("Stats = %+v, want 1 entry, 1 expiration, 0 evictions", st)
	}

	clk.Advance(1000 * time.Hour)
	if got := present(s, "forever"); got == nil {
		t.Error("ttl 0 entry expired")
	}
	checkInvariants(t, s)
}

func TestTTLAgeStartsAtCommit(t *testing.T) {
	var clk clock
	s := New(Config{Now: clk.Now})
	f := s.Begin([]byte("k"), "", "db", nil, 10*time.Second)
	clk.Advance(time.Minute) // a slow query
	s.Commit(f, []byte("v"))
	clk.Advance(10*time.Second - time.Nanosecond)
	if s.Get([]byte("k")) == nil {
		t.Error("entry expired before ttl had passed since Commit")
	}
}

func TestCapacityEvictionOfExpiredCountsAsTTL(t *testing.T) {
	var clk clock
	var log evictLog
	template := item{key: "a", db: "db", value: "v"}
	s := New(Config{MaxBytes: budgetFor(2, template), Now: clk.Now, OnEvict: log.OnEvict})
	put(t, s, item{key: "a", db: "db", ttl: time.Second, value: "v"})
	put(t, s, item{key: "b", db: "db", value: "v"})
	clk.Advance(time.Second)
	put(t, s, item{key: "c", db: "db", value: "v"}) // pushes out a, expired
	put(t, s, item{key: "d", db: "db", value: "v"}) // pushes out b, live
	if got, want := log.take(), []string{EvictTTL, EvictCapacity}; !cmp.Equal(got, want) {
		t.Errorf("OnEvict = %q, want %q", got, want)
	}
	if st := s.Stats(); st.Expirations != 1 || st.Evictions != 1 {
		t.Errorf("Stats = %+v, want 1 expiration, 1 eviction", st)
	}
}

func TestTop(t *testing.T) {
	var clk clock
	s := New(Config{Now: clk.Now})
	put(t, s, item{key: "a", db: "db", tables: []string{"t"}, value: "v"})
	put(t, s, item{key: "b", db: "db", value: "v", ttl: time.Minute})
	put(t, s, item{key: "c", db: "db", value: "v"})
	put(t, s, item{key: "d", db: "db", value: "v", ttl: time.Second})
	clk.Advance(2 * time.Second)
	for _, k := range []string{"b", "a", "b", "c", "b"} {
		s.Get([]byte(k))
	}
	// d has expired: not listed. a and c tie; c was used last.
	got := s.Top(10)
	want := []EntryInfo{
		{Label: "label b", DB: "db", Hits: 3, Bytes: int(sizeOf("b", "label b", "db", nil, 1)), Age: 2 * time.Second, TTL: time.Minute},
		{Label: "label c", DB: "db", Hits: 1, Bytes: int(sizeOf("c", "label c", "db", nil, 1)), Age: 2 * time.Second},
		{Label: "label a", DB: "db", Tables: []string{"t"}, Hits: 1, Bytes: int(sizeOf("a", "label a", "db", []string{"t"}, 1)), Age: 2 * time.Second},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Top(10) (-want +got):\n%s", diff)
	}
	if got := s.Top(1); len(got) != 1 || got[0].Label != "label b" {
		t.Errorf("Top(1) = %+v, want b only", got)
	}
	if got := s.Top(0); got != nil {
		t.Errorf("Top(0) = %+v, want nil", got)
	}
	got[2].Tables[0] = "changed" // a's
	if top := s.Top(10); top[2].Tables[0] != "t" {
		t.Error("Top returned the entry's own table slice")
	}
}

// TestOverheadEstimate checks that the accounted size follows the heap:
// the per-entry constants should neither hide memory nor waste budget.
func TestOverheadEstimate(t *testing.T) {
	for _, tables := range [][]string{{"t1"}, {"t1", "t2", "t3", "t4", "t5"}} {
		const n = 20000
		s := New(Config{MaxBytes: 1 << 40})
		keys := make([][]byte, n)
		for i := range keys {
			keys[i] = fmt.Appendf(nil, "key-%012d", i)
		}
		value := []byte("0123456789abcdef")

		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, k := range keys {
			s.Commit(s.Begin(k, "", "db", tables, 0), value)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(s)

		heap := float64(after.HeapAlloc-before.HeapAlloc) / n
		accounted := float64(s.Stats().Bytes) / n
		t.Logf("%d tables: heap %.0f bytes/entry, accounted %.0f", len(tables), heap, accounted)
		if heap > 1.2*accounted || heap < 0.8*accounted {
			t.Errorf("%d tables: heap %.0f bytes/entry, accounted %.0f: off by more than 20%%", len(tables), heap, accounted)
		}
	}
}

// TestEntrySize: an entry stays in the 192-byte size class that
// entryOverhead and the memory figures in the README assume.
func TestEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n > 192 {
		t.Errorf("entry is %d bytes; want at most 192", n)
	}
}

// TestOneAllocationPerEntry: a committed answer costs the entry and one
// allocation for its key, value and row key, beside the Fill.
func TestOneAllocationPerEntry(t *testing.T) {
	s := New(Config{MaxBytes: 1 << 30})
	value := []byte("0123456789abcdef")
	keys := make([][]byte, 101) // AllocsPerRun runs once more to warm up
	for i := range keys {
		keys[i] = strconv.AppendInt([]byte("key-"), int64(i), 10)
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		f := s.BeginRow(keys[i], "label", "db", Row{"t", "id", "1"}, 0)
		if ok, why := s.Commit(f, value); !ok {
			t.Fatalf("Commit: %s", why)
		}
		i++
	})
	// The Fill and its key, the entry, its allocation; map growth
	// rounds up.
	if allocs > 4.5 {
		t.Errorf("%.1f allocations per row fill and commit; want 4", allocs)
	}
}

func TestGetAllocs(t *testing.T) {
	var clk clock
	s := New(Config{Now: clk.Now})
	put(t, s, item{key: "hit", db: "db", tables: []string{"t"}, ttl: time.Hour, value: "v"})
	hit, miss := []byte("hit"), []byte("miss")
	if n := testing.AllocsPerRun(100, func() { s.Get(hit) }); n != 0 {
		t.Errorf("Get hit: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { s.Get(miss) }); n != 0 {
		t.Errorf("Get miss: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { s.Wait(miss) }); n != 0 {
		t.Errorf("Wait: %v allocs, want 0", n)
	}
}

// TestOneTableListsShared: entries of one table share one list, not the
// caller's (TestBeginCopiesArguments covers longer lists).
func TestOneTableListsShared(t *testing.T) {
	s := New(Config{})
	tables := []string{"t"}
	put(t, s, item{key: "k1", db: "db", tables: tables, value: "v"})
	tables[0] = "reused"
	put(t, s, item{key: "k2", db: "db", tables: []string{"t"}, value: "v"})
	one, _ := s.lru.Peek(s.hashKey([]byte("k1")))
	two, _ := s.lru.Peek(s.hashKey([]byte("k2")))
	if !slices.Equal(one.tables, []string{"t"}) {
		t.Errorf("entry's tables %q after the caller's list changed; want [t]", one.tables)
	}
	if unsafe.SliceData(one.tables) != unsafe.SliceData(two.tables) {
		t.Errorf("two entries of table t hold lists of their own")
	}
	if n := s.InvalidateTable("db", "t"); n != 2 {
		t.Errorf("InvalidateTable(t) removed %d entries; want 2", n)
	}
	checkInvariants(t, s)
}
