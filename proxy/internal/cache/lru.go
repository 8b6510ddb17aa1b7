package cache

// lruIndex holds entries by key hash in least-recently-used order, linked
// through the entries themselves (entry.lruPrev, entry.lruNext). A list
// of separate nodes (golang-lru's simplelru, used here before) costs an
// allocation and 80 bytes per entry, and one more object with pointers for
// the collector to trace; this costs only the map slot. Not safe for
// concurrent use: Store.mu guards it.
type lruIndex struct {
	m map[uint64]*entry
	// root is the sentinel of the ring: root.lruNext is the most recently
	// used entry, root.lruPrev the least.
	root entry
}

func newLRUIndex() *lruIndex {
	l := &lruIndex{m: make(map[uint64]*entry)}
	l.root.lruNext, l.root.lruPrev = &l.root, &l.root
	return l
}

// Len returns the number of entries.
func (l *lruIndex) Len() int { return len(l.m) }

// Peek returns the entry of hash h without marking it used.
func (l *lruIndex) Peek(h uint64) (*entry, bool) {
	e, ok := l.m[h]
	return e, ok
}

// Get returns the entry of hash h and marks it the most recently used.
func (l *lruIndex) Get(h uint64) (*entry, bool) {
	e, ok := l.m[h]
	if ok && l.root.lruNext != e {
		l.unlinkList(e)
		l.pushFront(e)
	}
	return e, ok
}

// Add makes e the entry of hash h, the most recently used, replacing any
// entry h had.
func (l *lruIndex) Add(h uint64, e *entry) {
	if old, ok := l.m[h]; ok {
		l.unlinkList(old)
	}
	l.m[h] = e
	l.pushFront(e)
}

// Remove removes the entry of hash h, if any.
func (l *lruIndex) Remove(h uint64) {
	if e, ok := l.m[h]; ok {
		delete(l.m, h)
		l.unlinkList(e)
	}
}

// Oldest returns the least recently used entry.
func (l *lruIndex) Oldest() (*entry, bool) {
	e := l.root.lruPrev
	if e == &l.root {
		return nil, false
	}
	return e, true
}

// Purge removes every entry.
func (l *lruIndex) Purge() {
	l.m = make(map[uint64]*entry) // not clear: release the old buckets
	l.root.lruNext, l.root.lruPrev = &l.root, &l.root
}

// Values returns the entries, least recently used first.
func (l *lruIndex) Values() []*entry {
	out := make([]*entry, 0, len(l.m))
	for e := l.root.lruPrev; e != &l.root; e = e.lruPrev {
		out = append(out, e)
	}
	return out
}

func (l *lruIndex) pushFront(e *entry) {
	e.lruPrev, e.lruNext = &l.root, l.root.lruNext
	l.root.lruNext.lruPrev = e
	l.root.lruNext = e
}

// unlinkList takes e out of the ring, and drops its links so that an
// entry still referenced elsewhere keeps no neighbours alive.
func (l *lruIndex) unlinkList(e *entry) {
	e.lruPrev.lruNext = e.lruNext
	e.lruNext.lruPrev = e.lruPrev
	e.lruPrev, e.lruNext = nil, nil
}
