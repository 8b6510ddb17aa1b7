package cache

import "strings"

// dbIndex lists the entries of one database by table: each entry is in
// exactly one of bare, tables (under every table it reads) and rows.
// Empty sets and empty indexes are deleted, so the index is bounded by the
// entries, not by history.
type dbIndex struct {
	n      int                            // entries of the database
	bare   map[*entry]struct{}            // entries reading no table; nil if none
	tables map[string]map[*entry]struct{} // entries reading any rows, by table
	rows   map[string]rowIndex            // row entries, by table
}

// rowIndex holds one table's row entries by column, then by key: the
// first entry of the row, the others linked from it (entry.rowNext).
type rowIndex map[string]map[string]*entry

// index adds e to the indexes. s.mu must be held.
func (s *Store) index(e *entry) {
	d := s.byDB[e.db]
	if d == nil {
		d = &dbIndex{
			tables: make(map[string]map[*entry]struct{}),
			rows:   make(map[string]rowIndex),
		}
		s.byDB[e.db] = d
	}
	d.n++
	if len(e.tables) == 0 {
		if d.bare == nil {
			d.bare = make(map[*entry]struct{})
		}
		d.bare[e] = struct{}{}
		return
	}
	if r := e.row.orNil(); r != nil {
		s.rowEntries++
		t := e.tables[0]
		ri := d.rows[t]
		if ri == nil {
			ri = make(rowIndex)
			d.rows[t] = ri
		}
		keys := ri[r.column]
		if keys == nil {
			keys = make(map[string]*entry)
			ri[r.column] = keys
		}
		if head := keys[r.key]; head != nil {
			e.rowNext, head.rowPrev = head, e
		}
		keys[r.key] = e // the map now holds e's key, not head's (see unindex)
		return
	}
	for _, t := range e.tables {
		set := d.tables[t]
		if set == nil {
			set = make(map[*entry]struct{})
			d.tables[t] = set
		}
		set[e] = struct{}{}
	}
}

// unindex removes e from the indexes. Every path that takes an entry out
// of lru comes through here, via unlink. s.mu must be held.
func (s *Store) unindex(e *entry) {
	d := s.byDB[e.db]
	d.n--
	if d.n == 0 {
		delete(s.byDB, e.db)
	}
	if len(e.tables) == 0 {
		delete(d.bare, e)
		if len(d.bare) == 0 {
			d.bare = nil
		}
		return
	}
	if r := e.row.orNil(); r != nil {
		s.rowEntries--
		t := e.tables[0]
		ri := d.rows[t]
		keys := ri[r.column]
		if e.rowNext != nil {
			e.rowNext.rowPrev = e.rowPrev
		}
		if e.rowPrev != nil {
			e.rowPrev.rowNext = e.rowNext
		} else if e.rowNext != nil {
			// By the next head's own key: assigning replaces the map's
			// copy of the key, which must not be the one in e's value
			// allocation (that would keep it alive).
			keys[e.rowNext.row.key] = e.rowNext
		} else {
			delete(keys, r.key)
			if len(keys) == 0 {
				delete(ri, r.column)
				if len(ri) == 0 {
					delete(d.rows, t)
				}
			}
		}
	} else {
		for _, t := range e.tables {
			set := d.tables[t]
			delete(set, e)
			if len(set) == 0 {
				delete(d.tables, t)
			}
		}
	}
}

// Invalidating a table, a database or many rows of a table can remove a
// million entries, which takes a second: the store's lock is released
// after every invalidateChunk entries (or row keys) so that hits and fills
// of everything else go on meanwhile. That is safe because the
// generations are bumped first (row keys': with their chunk), so that a
// fill begun before the change never stores after its entries' removal,
// and because the call returns only once every entry that may predate the
// change is gone: a reader may still find such an entry while the call
// runs, as it could have just before the call, but not after it returns.
const invalidateChunk = 1024

// pause ends a chunk of an invalidation, which holds s.mu: it releases
// the lock and, unless done, takes it again for the next chunk. It
// reports done.
func (s *Store) pause(done bool) bool {
	s.mu.Unlock()
	if done {
		return true
	}
	if s.betweenChunks != nil {
		s.betweenChunks()
	}
	s.mu.Lock()
	return false
}

// InvalidateTable records a change to table of database db: it bumps the
// table's generation, so that fills reading it that are running now will
// not store, and removes every entry that depends on it. It returns the
// number of entries removed.
func (s *Store) InvalidateTable(db, table string) int {
	s.mu.Lock()
	s.bump(db, table)
	total := 0
	for done := false; !done; {
		total += s.unlinkTable(db, table, "")
		done = s.pause(s.tableEmpty(db, table, ""))
	}
	return total
}

// unlinkTable unlinks up to about invalidateChunk entries of table in
// database db, not counting row entries by column except (if it is not
// ""), and returns how many. s.mu must be held.
func (s *Store) unlinkTable(db, table, except string) int {
	d := s.byDB[db]
	if d == nil {
		return 0
	}
	n := s.unlinkSome(d.tables[table], invalidateChunk)
	for c, byKey := range d.rows[table] {
		if n >= invalidateChunk {
			break
		}
		if c != except {
			n += s.unlinkColumn(byKey, invalidateChunk-n)
		}
	}
	return n
}

// tableEmpty reports whether database db holds no entry of table, not
// counting row entries by column except (if it is not ""). s.mu must be
// held.
func (s *Store) tableEmpty(db, table, except string) bool {
	d := s.byDB[db]
	if d == nil {
		return true
	}
	if len(d.tables[table]) > 0 {
		return false
	}
	for c := range d.rows[table] {
		if c != except {
			return false
		}
	}
	return true
}

// InvalidateRows records a change to the rows of table whose column has
// one of keys: it removes every entry of the table but the row entries
// (BeginRow) of other rows by the same column, and makes running fills
// of the same entries refuse to store. It returns the number removed.
func (s *Store) InvalidateRows(db, table, column string, keys []string) int {
	s.mu.Lock()
	k := s.bump(db, table)
	if n, ok := s.rowsBy[columnRef{db, table, column}]; ok {
		s.rowsBy[columnRef{db, table, column}] = n + 1
	} else {
		s.rowsBy[columnRef{k.db, k.table, strings.Clone(column)}] = 1
	}
	total := 0
	for done := false; !done; {
		n := s.unlinkTable(db, table, column)
		if n < invalidateChunk && len(keys) > 0 {
			// The rows' generations go up with their chunk, before
			// their entries go: see invalidateChunk.
			chunk := keys[:min(len(keys), invalidateChunk-n)]
			keys = keys[len(chunk):]
			for _, key := range chunk {
				s.rowGens[s.rowSlot(db, table, column, key)]++
			}
			if d := s.byDB[db]; d != nil {
				if byKey := d.rows[table][column]; byKey != nil {
					for _, key := range chunk {
						n += s.unlinkRow(byKey[key])
					}
				}
			}
		}
		total += n
		done = s.pause(len(keys) == 0 && s.tableEmpty(db, table, column))
	}
	return total
}

// bump increments the generation of a table and returns its map key.
// s.mu must be held.
func (s *Store) bump(db, table string) tableRef {
	k := tableRef{db, table}
	g, ok := s.tableGen[k]
	if !ok {
		// Don't keep the caller's string alive; it may point into a
		// larger buffer.
		k = tableRef{strings.Clone(db), strings.Clone(table)}
	}
	s.tableGen[k] = g + 1
	return k
}

// unlinkRow unlinks the entries of a row, from its first one (nil for
// none), and returns how many. s.mu must be held.
func (s *Store) unlinkRow(e *entry) int {
	n := 0
	for e != nil {
		next := e.rowNext
		s.unlink(e)
		e = next
		n++
	}
	return n
}

// unlinkColumn unlinks the row entries of a table by one column (its
// rows' first entries by key), a row at a time until at least max are
// gone, and returns how many. s.mu must be held.
func (s *Store) unlinkColumn(byKey map[string]*entry, max int) int {
	n := 0
	for _, head := range byKey {
		if n >= max {
			break
		}
		n += s.unlinkRow(head)
	}
	return n
}

// unlinkSome unlinks up to max entries of set and returns how many.
// unlink deletes from the set as we range over it, which Go allows. s.mu
// must be held.
func (s *Store) unlinkSome(set map[*entry]struct{}, max int) int {
	n := 0
	for e := range set {
		if n >= max {
			break
		}
		s.unlink(e)
		n++
	}
	return n
}

// InvalidateDB records a change to database db as a whole (DDL, TRUNCATE
// of unknown tables, a lost change stream): it bumps the database's
// generation and removes every entry of db. It returns the number removed.
func (s *Store) InvalidateDB(db string) int {
	s.mu.Lock()
	g, ok := s.dbGen[db]
	if !ok {
		db = strings.Clone(db)
	}
	s.dbGen[db] = g + 1

	// unlink deletes from the maps as we range over them, which Go
	// allows: an entry of several tables goes with the first, and is not
	// met again under the others.
	total := 0
	for done := false; !done; {
		total += s.unlinkDB(db)
		done = s.pause(s.byDB[db] == nil)
	}
	return total
}

// unlinkDB unlinks up to about invalidateChunk entries of database db and
// returns how many. s.mu must be held.
func (s *Store) unlinkDB(db string) int {
	d := s.byDB[db]
	if d == nil {
		return 0
	}
	n := s.unlinkSome(d.bare, invalidateChunk)
	for _, set := range d.tables {
		if n >= invalidateChunk {
			return n
		}
		n += s.unlinkSome(set, invalidateChunk-n)
	}
	for _, byColumn := range d.rows {
		for _, byKey := range byColumn {
			if n >= invalidateChunk {
				return n
			}
			n += s.unlinkColumn(byKey, invalidateChunk-n)
		}
	}
	return n
}

// InvalidateAll bumps a store-wide generation, so that no running fill
// will store, and removes every entry. It returns the number removed.
func (s *Store) InvalidateAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.allGen++
	n := s.lru.Len()
	s.lru.Purge()
	s.bytes, s.rowEntries = 0, 0
	s.used.Store(0)
	s.byDB = make(map[string]*dbIndex) // not clear: release the old buckets
	return n
}

// Generation returns the invalidation generation of table in database db:
// the number of InvalidateTable and InvalidateRows calls for it.
// Invalidations of the whole database or store are not included. For tests and diagnostics.
func (s *Store) Generation(db, table string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tableGen[tableRef{db, table}]
}
