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
	if r := e.rowOf(); r != nil {
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
	if r := e.rowOf(); r != nil {
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

// InvalidateTable records a change to table of database db: it bumps the
// table's generation, so that fills reading it that are running now will
// not store, and removes every entry that depends on it. It returns the
// number of entries removed.
func (s *Store) InvalidateTable(db, table string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bump(db, table)

	d := s.byDB[db]
	if d == nil {
		return 0
	}
	n := s.unlinkAll(d.tables[table])
	for _, byKey := range d.rows[table] {
		n += s.unlinkColumn(byKey)
	}
	return n
}

// InvalidateRows records a change to the rows of table whose column has
// one of keys: it removes every entry of the table but the row entries
// (BeginRow) of other rows by the same column, and makes running fills
// of the same entries refuse to store. It returns the number removed.
func (s *Store) InvalidateRows(db, table, column string, keys []string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.bump(db, table)
	if n, ok := s.rowsBy[columnRef{db, table, column}]; ok {
		s.rowsBy[columnRef{db, table, column}] = n + 1
	} else {
		s.rowsBy[columnRef{k.db, k.table, strings.Clone(column)}] = 1
	}
	for _, key := range keys {
		s.rowGens[s.rowSlot(db, table, column, key)]++
	}

	d := s.byDB[db]
	if d == nil {
		return 0
	}
	n := s.unlinkAll(d.tables[table])
	for c, byKey := range d.rows[table] {
		if c != column {
			n += s.unlinkColumn(byKey)
			continue
		}
		for _, key := range keys {
			n += s.unlinkRow(byKey[key])
		}
	}
	return n
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
// rows' first entries by key) and returns how many. s.mu must be held.
func (s *Store) unlinkColumn(byKey map[string]*entry) int {
	n := 0
	for _, head := range byKey {
		n += s.unlinkRow(head)
	}
	return n
}

// unlinkAll unlinks the entries of set and returns how many. unlink
// deletes from the set as we range over it, which Go allows. s.mu must be
// held.
func (s *Store) unlinkAll(set map[*entry]struct{}) int {
	n := 0
	for e := range set {
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
	defer s.mu.Unlock()
	g, ok := s.dbGen[db]
	if !ok {
		db = strings.Clone(db)
	}
	s.dbGen[db] = g + 1

	d := s.byDB[db]
	if d == nil {
		return 0
	}
	// unlink deletes from the maps as we range over them, which Go
	// allows: an entry of several tables goes with the first, and is not
	// met again under the others.
	n := s.unlinkAll(d.bare)
	for _, set := range d.tables {
		n += s.unlinkAll(set)
	}
	for _, byColumn := range d.rows {
		for _, byKey := range byColumn {
			n += s.unlinkColumn(byKey)
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
