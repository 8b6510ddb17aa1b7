package cache

import (
	"slices"
	"time"
	"unsafe"
)

// Reasons returned by Commit.
const (
	ReasonStored      = "stored"
	ReasonInvalidated = "invalidated during fill"
	ReasonTooLarge    = "too large"
	// ReasonClosed: the Fill had already ended with Commit or Abort.
	ReasonClosed = "closed"
)

// A Fill is one attempt to put an answer in the store: Begin it before the
// query goes to the backend, then end it with exactly one Commit or Abort
// (extra calls are harmless, so `defer s.Abort(f)` is a safe cleanup).
// Its methods may be called from any goroutine.
type Fill struct {
	// Set by Begin, then read-only.
	key    string
	hash   uint64
	label  string
	db     string
	tables []string // deduplicated
	// row: the answer reads only this row of tables[0] (BeginRow), or
	// the zero rowRef.
	row    rowRef
	ttl    time.Duration
	leader bool
	// done is closed when a leader fill ends, made by the first Wait for
	// it (most fills have no waiters); nil until then. Guarded by the mu
	// of the Store that began it.
	done chan struct{}

	// Generations seen by Begin; tableGens[i] is for tables[i]. A row
	// fill snapshots, for its one table, Store.notByColumn instead, and
	// its row's slot in rowGen.
	allGen    uint64
	dbGen     uint64
	tableGens []uint64
	gensBuf   [2]uint64 // tableGens' storage for up to two tables
	rowGen    uint64

	ended bool // guarded by the mu of the Store that began it
}

// tableRef names one table of one database.
type tableRef struct{ db, table string }

// Begin starts a fill of key with an answer read from tables of database
// db. It snapshots their invalidation generations, so call it before the
// query goes to the backend: Commit then refuses the answer if any of them
// was invalidated meanwhile, since the answer may predate the change.
//
// label describes the entry in Top (the SQL text, truncated as the caller
// likes). ttl zero means the entry lives until invalidated or evicted. The
// key is copied; label, database and table names are kept as given, since
// callers pass the same few strings for many entries (so they must not be
// slices of something large). Duplicate tables are dropped. Names are compared exactly: the caller normalises them the
// same way here and in the Invalidate calls.
//
// The first fill of a key while none is running becomes its leader (see
// Leader and Wait).
func (s *Store) Begin(key []byte, label, db string, tables []string, ttl time.Duration) *Fill {
	f := s.newFill(key, label, db, ttl)
	if len(tables) > 1 {
		f.tables = make([]string, 0, len(tables))
		for _, t := range tables {
			if !slices.Contains(f.tables, t) {
				f.tables = append(f.tables, t)
			}
		}
	}
	f.tableGens = f.gensBuf[:0]
	if len(f.tables) > len(f.gensBuf) {
		f.tableGens = make([]uint64, 0, len(f.tables))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(tables) == 1 {
		f.tables = s.tableList(tables[0])
	}
	f.tableGens = f.tableGens[:len(f.tables)]
	for i, t := range f.tables {
		f.tableGens[i] = s.tableGen[tableRef{db, t}]
	}
	s.lead(f)
	return f
}

// newFill returns a Fill of key with what Begin and BeginRow share.
func (s *Store) newFill(key []byte, label, db string, ttl time.Duration) *Fill {
	return &Fill{key: string(key), hash: s.hashKey(key), label: label, db: db, ttl: max(ttl, 0)}
}

// lead takes f's snapshot of the store's and its database's generations
// and makes it its key's leader fill if none is running. s.mu must be held.
func (s *Store) lead(f *Fill) {
	f.allGen = s.allGen
	f.dbGen = s.dbGen[f.db]
	if _, running := s.flights[f.key]; !running {
		f.leader = true
		s.flights[f.key] = f
	}
}

// Row names one row of a table: the value of a column that identifies it
// (its primary key), in a form the caller makes canonical, so that the
// same row always gets the same Key here and in InvalidateRows.
type Row struct {
	Table, Column, Key string
}

// BeginRow is Begin for an answer that reads nothing but the row of
// row.Table whose row.Column equals row.Key (or its absence). Such an
// entry is dropped by InvalidateTable of its table, by InvalidateRows
// naming its row or naming another column of the table, and by database
// and store invalidations; but not by InvalidateRows of other rows. The
// column name is kept as given, the key copied by Commit. A row with no
// column is taken as the whole table (Begin).
func (s *Store) BeginRow(key []byte, label, db string, row Row, ttl time.Duration) *Fill {
	if row.Column == "" {
		return s.Begin(key, label, db, []string{row.Table}, ttl)
	}
	f := s.newFill(key, label, db, ttl)
	f.row = rowRef{column: row.Column, key: row.Key}
	f.tableGens = f.gensBuf[:1]
	s.mu.Lock()
	defer s.mu.Unlock()
	f.tables = s.tableList(row.Table)
	f.tableGens[0] = s.notByColumn(db, row.Table, row.Column)
	f.rowGen = s.rowGens[s.rowSlot(db, row.Table, row.Column, row.Key)]
	s.lead(f)
	return f
}

// tableList returns a list of the one table, shared by every entry that
// reads only that table: entries never change their lists, and most read
// one table. Like tableGen, tableLists is bounded by the schema. s.mu must
// be held.
func (s *Store) tableList(table string) []string {
	l, ok := s.tableLists[table]
	if !ok {
		l = []string{table}
		s.tableLists[table] = l
	}
	return l
}

// Leader reports whether f was the only fill of its key when it began.
// Other callers that miss on the key meanwhile should Wait for it rather
// than query the backend too.
func (f *Fill) Leader() bool { return f.leader }

// Wait returns a channel that is closed when the leader fill of key ends
// with Commit or Abort, or nil if no fill of key is running. A waiter then
// calls Get again and, on a miss, runs its own fill. A waiter that must
// give up sooner selects on its context too.
func (s *Store) Wait(key []byte) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flights[string(key)] // no allocation: the conversion is only a lookup
	if f == nil {
		return nil
	}
	if f.done == nil {
		f.done = make(chan struct{})
	}
	return f.done
}

// Abort ends f without storing anything. It is a no-op if f has ended.
func (s *Store) Abort(f *Fill) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.end(f)
}

// end marks f ended and, if it leads its key, releases its waiters. s.mu
// must be held.
func (s *Store) end(f *Fill) {
	if f.ended {
		return
	}
	f.ended = true
	if f.leader {
		delete(s.flights, f.key)
		if f.done != nil {
			close(f.done)
		}
	}
}

// unchanged reports whether every generation f depends on is still the one
// Begin saw. s.mu must be held.
func (s *Store) unchanged(f *Fill) bool {
	if s.allGen != f.allGen || s.dbGen[f.db] != f.dbGen {
		return false
	}
	if r := f.row.orNil(); r != nil {
		t := f.tables[0]
		return s.notByColumn(f.db, t, r.column) == f.tableGens[0] &&
			s.rowGens[s.rowSlot(f.db, t, r.column, r.key)] == f.rowGen
	}
	for i, t := range f.tables {
		if s.tableGen[tableRef{f.db, t}] != f.tableGens[i] {
			return false
		}
	}
	return true
}

// size is the accounted size of f's entry with a value of n bytes.
func (f *Fill) size(n int) int64 {
	size := int64(entryOverhead + len(f.key) + n + len(f.label) + len(f.db))
	for _, t := range f.tables {
		size += int64(tableOverhead + len(t))
	}
	return size + int64(len(f.row.key)) // zero without a row
}

// Commit ends f and stores a copy of value as the answer for f's key,
// unless an invalidation it depends on happened since Begin, the value is
// over MaxEntryBytes or the entry over MaxBytes/2, or f had already ended;
// it returns whether it stored and one of the Reason constants. It evicts
// least recently used entries to stay within MaxBytes, and replaces any
// entry already stored for the key (or colliding with its hash).
func (s *Store) Commit(f *Fill, value []byte) (stored bool, reason string) {
	size := f.size(len(value))
	if int64(len(value)) > s.maxEntryBytes || size > s.maxBytes/2 {
		s.mu.Lock()
		ended := f.ended
		s.end(f)
		s.mu.Unlock()
		if ended {
			return false, ReasonClosed
		}
		return false, ReasonTooLarge
	}
	// Copy without the lock, into one allocation with the key and the
	// row's key: no pointers in it for the collector to follow, and the
	// strings in it live exactly as long as the value. make, not
	// bytes.Clone, so that an empty answer is a non-nil slice: Get's nil
	// means a miss.
	buf := make([]byte, len(value)+len(f.key)+len(f.row.key))
	v := buf[:copy(buf, value):len(value)]
	key, rest := carve(buf[len(v):], f.key)
	row := rowRef{column: f.row.column}
	row.key, _ = carve(rest, f.row.key)
	at := s.clock(s.now())

	s.mu.Lock()
	if f.ended {
		s.mu.Unlock()
		return false, ReasonClosed
	}
	s.end(f)
	if !s.unchanged(f) {
		s.mu.Unlock()
		return false, ReasonInvalidated
	}
	e := &entry{
		key:    key,
		value:  v,
		label:  f.label,
		db:     f.db,
		tables: f.tables,
		row:    row,
		size:   size,
		stored: at,
		ttl:    f.ttl,
	}
	if old, ok := s.lru.Peek(f.hash); ok {
		s.unlink(old) // same key, or a hash collision: the newer answer wins
	}
	capacity, ttl := s.makeRoom(size, at)
	s.lru.Add(f.hash, e)
	s.bytes += size
	s.used.Store(s.bytes)
	s.index(e)
	s.mu.Unlock()

	s.report(capacity, ttl)
	return true, ReasonStored
}

// carve copies str to the start of buf and returns the copy, a string
// sharing buf's memory, and the rest of buf.
func carve(buf []byte, str string) (string, []byte) {
	n := copy(buf, str)
	if n == 0 {
		return "", buf
	}
	return unsafe.String(&buf[0], n), buf[n:]
}
