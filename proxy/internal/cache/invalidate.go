package cache

import "strings"

// dbIndex lists the entries of one database, all of them and by table.
// Empty sets and empty indexes are deleted, so the index is bounded by the
// entries, not by history.
type dbIndex struct {
	entries map[*entry]struct{}
	tables  map[string]map[*entry]struct{}
}

// index adds e to the indexes. s.mu must be held.
func (s *Store) index(e *entry) {
	d := s.byDB[e.db]
	if d == nil {
		d = &dbIndex{
			entries: make(map[*entry]struct{}),
			tables:  make(map[string]map[*entry]struct{}),
		}
		s.byDB[e.db] = d
	}
	d.entries[e] = struct{}{}
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
	delete(d.entries, e)
	for _, t := range e.tables {
		set := d.tables[t]
		delete(set, e)
		if len(set) == 0 {
			delete(d.tables, t)
		}
	}
	if len(d.entries) == 0 {
		delete(s.byDB, e.db)
	}
}

// InvalidateTable records a change to table of database db: it bumps the
// table's generation, so that fills reading it that are running now will
// not store, and removes every entry that depends on it. It returns the
// number of entries removed.
func (s *Store) InvalidateTable(db, table string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := tableRef{db, table}
	g, ok := s.tableGen[k]
	if !ok {
		// Don't keep the caller's string alive; it may point into a
		// larger buffer.
		k = tableRef{strings.Clone(db), strings.Clone(table)}
	}
	s.tableGen[k] = g + 1

	d := s.byDB[db]
	if d == nil {
		return 0
	}
	n := 0
	// unlink deletes from the set as we range over it, which Go allows.
	for e := range d.tables[table] {
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
	n := 0
	for e := range d.entries {
		s.unlink(e)
		n++
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
	s.bytes = 0
	s.byDB = make(map[string]*dbIndex) // not clear: release the old buckets
	return n
}

// Generation returns the invalidation generation of table in database db:
// the number of InvalidateTable calls for it. Invalidations of the whole
// database or store are not included. For tests and diagnostics.
func (s *Store) Generation(db, table string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tableGen[tableRef{db, table}]
}
