// Package cache is sqlcache's in-memory store of cached query answers: a
// byte-bounded LRU of the backend's wire bytes, keyed by opaque keys that
// the proxy builds, with per-table and per-database invalidation and one
// backend fill per key at a time.
//
// It is not a general-purpose cache. Values are the backend's response
// bytes, replayed verbatim on a hit and never changed once stored; every
// entry knows the database and tables it was read from, so that a change
// stream can remove it. The package does no I/O, starts no goroutines and
// keeps no package-level state; time comes from Config.Now.
package cache

import (
	"cmp"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config fields left zero.
const (
	DefaultMaxBytes      = 256 << 20
	DefaultMaxEntryBytes = 1 << 20
)

// Reasons passed to Config.OnEvict.
const (
	// EvictCapacity: the entry was the least recently used one when a
	// Commit needed room under MaxBytes.
	EvictCapacity = "capacity"
	// EvictTTL: the entry had outlived its TTL when Get found it or when
	// Commit would have evicted it for room.
	EvictTTL = "ttl"
)

// Per-entry bookkeeping that Stats.Bytes counts on top of the lengths of
// the key, value, label, database and table names. Measured on amd64 with
// Go 1.26 (TestOverheadEstimate checks the total against heap growth,
// within 20%):
//
//   - entry struct, with its links in the LRU list and its row: 192
//     bytes, the 192-byte size class (TestEntrySize);
//   - the LRU's map slot (uint64 → pointer), with Swiss-table control
//     bytes and the head-room of a map between doublings: 10 to 30 bytes;
//   - rounding of the one allocation holding the key, the value and the
//     row's key up to its size class: about 10 bytes for short ones.
//
// The label, database and table names are shared between entries, not
// copied (see Begin), yet counted for every entry: a safe overestimate.
// Each table name adds tableOverhead: its string header in the entry's
// table list (16 bytes; entries of one table share a list, tableList, so
// for them this overestimates) and its slot in the table's index set. A
// row entry (BeginRow) counts its row key's length too; its slot in its
// column's index (a string and a pointer) takes the place of the table's
// index slot.
const (
	entryOverhead = 200
	tableOverhead = 40
)

// Config configures a Store. A zero field means its default.
type Config struct {
	// MaxBytes is the budget over keys, values and bookkeeping (see
	// Stats.Bytes). If zero or negative, DefaultMaxBytes (256 MiB).
	MaxBytes int64

	// MaxEntryBytes is the largest value Commit stores; larger values are
	// refused with "too large". If zero or negative, DefaultMaxEntryBytes
	// (1 MiB). Independently, an entry whose accounted size exceeds
	// MaxBytes/2 is refused too, so that one answer cannot flush the cache.
	MaxEntryBytes int64

	// Now is the clock for TTLs and ages. If nil, time.Now.
	Now func() time.Time

	// OnEvict, if set, is called once for each entry that the store removes
	// on its own, with EvictCapacity or EvictTTL, for metrics.
	// Invalidations do not call it: their methods return a count instead.
	// It is called after the store's lock is released, from the goroutine
	// whose Get or Commit removed the entry, so it may be called from
	// several goroutines at once and may call back into the Store.
	OnEvict func(reason string)
}

// A Store holds cached answers. All its methods are safe for concurrent
// use.
type Store struct {
	// Set by New, then read-only.
	maxBytes      int64
	maxEntryBytes int64
	now           func() time.Time
	born          time.Time // Store.clock's zero
	onEvict       func(reason string)
	seed          maphash.Seed
	testHash      func(key string) uint64 // if set, replaces maphash; tests use it to force collisions
	// betweenChunks, if set, runs between the chunks of an invalidation,
	// without the lock (pause); tests use it to act in those gaps.
	betweenChunks func()

	mu sync.Mutex // guards every field below, and Fill.ended of the fills this Store began

	// lru holds the entries by key hash, least recently used at the back.
	// Its count limit is never reached: room is made by bytes, in Commit.
	lru   *lruIndex
	bytes int64 // sum of entry.size over lru

	// byDB indexes the entries of lru by database and by table. An entry
	// is in lru exactly when it is in its database's index.
	byDB map[string]*dbIndex

	// Invalidation generations. A Fill snapshots them in Begin and stores
	// only if they are unchanged at Commit. Absent means zero. tableGen
	// keeps one counter per (database, table) ever invalidated: bounded by
	// the schema, not by traffic.
	allGen   uint64
	dbGen    map[string]uint64
	tableGen map[tableRef]uint64 // InvalidateTable and InvalidateRows calls
	// rowsBy counts InvalidateRows calls per table and column. A row fill
	// depends on the changes of its table other than rows reported by its
	// own column (notByColumn), which may be its row, and on its row's
	// slot in rowGens, a fixed array of counters that InvalidateRows
	// bumps: two rows sharing a slot only make a fill of one refuse to
	// store after a change of the other.
	rowsBy  map[columnRef]uint64
	rowGens *[rowSlots]uint64

	// tableLists holds the one-table lists entries share (tableList).
	tableLists map[string][]string

	// flights maps a key to its leader fill while it runs.
	flights map[string]*Fill

	rowEntries  int // entries with a row, in lru
	evictions   uint64
	expirations uint64

	admission
}

// entry is one cached answer. Every field but hits is set before the entry
// is published in lru and never changes, so Top reads them without the
// lock.
//
// The struct stays within the 192-byte size class (TestEntrySize): its key,
// value and row key share one pointer-free allocation (Commit), and its
// row is held in place, so an entry is two objects for the collector to
// trace. Its key's hash is not kept: it is computed again on removal.
type entry struct {
	key   string // in the allocation of value
	value []byte
	label string
	db    string
	// tables are the tables the answer reads; for a row entry, tables[0]
	// is the row's.
	tables []string
	// row is the one row of tables[0] the answer reads (its key in the
	// allocation of value), or the zero rowRef: any rows.
	row rowRef
	// rowPrev and rowNext link the entries of the same row (under s.mu).
	rowPrev, rowNext *entry
	// lruPrev and lruNext link the entries in Store.lru (under s.mu).
	lruPrev, lruNext *entry
	size             int64         // accounted bytes, see entryOverhead
	stored           time.Duration // when committed, on Store.clock
	ttl              time.Duration // zero: never expires
	hits             atomic.Uint64
}

// expired reports whether e has outlived its TTL at time at (Store.clock).
func (e *entry) expired(at time.Duration) bool {
	return e.ttl > 0 && at-e.stored >= e.ttl // not stored+ttl: a huge TTL would overflow
}

// New returns an empty Store.
func New(cfg Config) *Store {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxEntryBytes <= 0 {
		cfg.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{
		maxBytes:      cfg.MaxBytes,
		maxEntryBytes: cfg.MaxEntryBytes,
		now:           cfg.Now,
		born:          cfg.Now(),
		onEvict:       cfg.OnEvict,
		seed:          maphash.MakeSeed(),
		lru:           newLRUIndex(),
		byDB:          make(map[string]*dbIndex),
		dbGen:         make(map[string]uint64),
		tableGen:      make(map[tableRef]uint64),
		rowsBy:        make(map[columnRef]uint64),
		rowGens:       new([rowSlots]uint64),
		flights:       make(map[string]*Fill),
		tableLists:    make(map[string][]string),
		admission: admission{
			fullBytes: int64(float64(cfg.MaxBytes) * fullAt),
			seen:      new([admitSlots]atomic.Uint64),
		},
	}
}

// rowRef is the row an answer reads. A row's column is never empty
// (BeginRow), so the zero rowRef stands for none: the answer may read any
// rows.
type rowRef struct{ column, key string }

// orNil returns r, or nil if it is the zero rowRef.
func (r *rowRef) orNil() *rowRef {
	if r.column == "" {
		return nil
	}
	return r
}

// columnRef names a column of a table of a database.
type columnRef struct{ db, table, column string }

// notByColumn returns how many changes of table were recorded other than
// rows reported by column: whole-table ones and rows by other columns.
// s.mu must be held.
func (s *Store) notByColumn(db, table, column string) uint64 {
	return s.tableGen[tableRef{db, table}] - s.rowsBy[columnRef{db, table, column}]
}

// rowSlots is the number of row generation counters.
const rowSlots = 1 << 14

// rowSlot returns the index in rowGens of a row.
func (s *Store) rowSlot(db, table, column, key string) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	for _, part := range [...]string{db, table, column, key} {
		h.WriteString(part)
		h.WriteByte(0)
	}
	return h.Sum64() % rowSlots
}

func (s *Store) hashKey(key []byte) uint64 {
	if s.testHash != nil {
		return s.testHash(string(key))
	}
	return maphash.Bytes(s.seed, key)
}

// hashOf returns the hash of e's key, by which lru holds it.
func (s *Store) hashOf(e *entry) uint64 {
	if s.testHash != nil {
		return s.testHash(e.key)
	}
	return maphash.String(s.seed, e.key)
}

// clock returns now as the time since the store was made: entries keep
// their commit time in 8 bytes, and a monotonic reading stays monotonic.
func (s *Store) clock(now time.Time) time.Duration { return now.Sub(s.born) }

// Get returns the value stored for key, or nil on a miss. An expired entry
// is removed and is a miss. The full key is compared, so a hash collision
// is a miss, never another key's answer.
//
// The returned slice must not be modified. It stays valid after the entry
// is evicted or invalidated: stored values are never written again.
func (s *Store) Get(key []byte) []byte {
	h := s.hashKey(key)
	s.mu.Lock()
	// One lookup that also moves the entry to the front. On a collision or
	// an expired entry the move is harmless: the first leaves another key's
	// entry a little fresher, the second is removed below.
	e, ok := s.lru.Get(h)
	if !ok || e.key != string(key) {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	// Read the clock without the lock: it can cost more than the lookup.
	if e.ttl > 0 && e.expired(s.clock(s.now())) {
		s.expire(e)
		return nil
	}
	e.hits.Add(1)
	return e.value
}

// expire removes e, which Get found expired, unless another call removed
// it meanwhile.
func (s *Store) expire(e *entry) {
	s.mu.Lock()
	cur, ok := s.lru.Peek(s.hashOf(e))
	if !ok || cur != e {
		s.mu.Unlock()
		return
	}
	s.unlink(e)
	s.expirations++
	s.mu.Unlock()
	s.report(0, 1)
}

// unlink removes e, which must be in the store, from lru, the byte count
// and the indexes. s.mu must be held.
func (s *Store) unlink(e *entry) {
	s.lru.Remove(s.hashOf(e))
	s.bytes -= e.size
	s.used.Store(s.bytes)
	s.unindex(e)
}

// makeRoom evicts least recently used entries until size more bytes fit in
// the budget. It returns how many it removed for capacity and how many had
// expired anyway. s.mu must be held.
func (s *Store) makeRoom(size int64, at time.Duration) (capacity, ttl int) {
	for s.bytes+size > s.maxBytes {
		e, ok := s.lru.Oldest()
		if !ok {
			break
		}
		s.unlink(e)
		if e.expired(at) {
			s.expirations++
			ttl++
		} else {
			s.evictions++
			capacity++
		}
	}
	return capacity, ttl
}

// report calls OnEvict for removals made under the lock. s.mu must not be
// held.
func (s *Store) report(capacity, ttl int) {
	if s.onEvict == nil {
		return
	}
	for range capacity {
		s.onEvict(EvictCapacity)
	}
	for range ttl {
		s.onEvict(EvictTTL)
	}
}

// Stats describes a Store at one moment.
type Stats struct {
	// Entries counts stored answers, including expired ones that no Get
	// has found yet.
	Entries int
	// RowEntries counts those of them that answer about one row
	// (BeginRow).
	RowEntries int
	// Bytes is the accounted size of the entries: key, value, label,
	// database and table name lengths plus a fixed bookkeeping estimate
	// per entry and per table. It never exceeds MaxBytes.
	Bytes    int64
	MaxBytes int64
	// Evictions counts entries removed for capacity, Expirations entries
	// removed for TTL, since New. Invalidations are not counted here.
	Evictions   uint64
	Expirations uint64
	// Unadmitted counts misses that Admit said not to fill, since New.
	Unadmitted uint64
}

// Stats returns the store's current counts.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Entries:     s.lru.Len(),
		RowEntries:  s.rowEntries,
		Bytes:       s.bytes,
		MaxBytes:    s.maxBytes,
		Evictions:   s.evictions,
		Expirations: s.expirations,
		Unadmitted:  s.unadmitted.Load(),
	}
}

// EntryInfo describes one entry for diagnostics.
type EntryInfo struct {
	Label  string // as given to Begin
	DB     string
	Tables []string
	Hits   uint64
	Bytes  int           // accounted size, as in Stats.Bytes
	Age    time.Duration // since Commit
	TTL    time.Duration // zero: no TTL
}

// Top returns up to n unexpired entries with the most hits, most first;
// among equal hits, the most recently used first. It holds the lock only
// to copy the entry pointers; the sort runs without it.
func (s *Store) Top(n int) []EntryInfo {
	if n <= 0 {
		return nil
	}
	s.mu.Lock()
	es := s.lru.Values() // least recently used first
	s.mu.Unlock()
	at := s.clock(s.now())

	// Snapshot the counters: they keep moving while we sort.
	type ranked struct {
		e    *entry
		hits uint64
	}
	rs := make([]ranked, 0, len(es))
	for _, e := range slices.Backward(es) {
		if !e.expired(at) {
			rs = append(rs, ranked{e, e.hits.Load()})
		}
	}
	slices.SortStableFunc(rs, func(a, b ranked) int { return cmp.Compare(b.hits, a.hits) })

	out := make([]EntryInfo, 0, min(n, len(rs)))
	for _, r := range rs[:min(n, len(rs))] {
		out = append(out, EntryInfo{
			Label:  r.e.label,
			DB:     r.e.db,
			Tables: slices.Clone(r.e.tables),
			Hits:   r.hits,
			Bytes:  int(r.e.size),
			Age:    at - r.e.stored,
			TTL:    r.e.ttl,
		})
	}
	return out
}
