package proxy

import (
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
)

// sizedLRU is an LRU cache bounded by the number of its entries and by
// the bytes they hold, as weighed when added. golang-lru bounds the
// count only, and a plan or a shape holds its SQL text, which a client
// may make as long as a message may be: 20,000 texts of 200 KiB would
// be 4 GiB outside the cache's budget.
type sizedLRU[K comparable, V any] struct {
	c     *lru.Cache[K, sized[V]] // safe for concurrent use
	addMu sync.Mutex              // serializes add, so that a replaced value's bytes are taken off once
	bytes atomic.Int64            // held by the values in c
	max   int64
}

type sized[V any] struct {
	v V
	n int64
}

// maxSizedShare: a value heavier than this share of a sizedLRU's bytes
// is not kept, rather than pushing out many others.
const maxSizedShare = 16

func newSizedLRU[K comparable, V any](count int, maxBytes int64) *sizedLRU[K, V] {
	l := &sizedLRU[K, V]{max: maxBytes}
	l.c, _ = lru.NewWithEvict(count, func(_ K, s sized[V]) { l.bytes.Add(-s.n) })
	return l
}

// get returns k's value and marks it used.
func (l *sizedLRU[K, V]) get(k K) (V, bool) {
	s, ok := l.c.Get(k)
	return s.v, ok
}

// add keeps v, which holds n bytes, under k, dropping the least recently
// used values while the bytes held exceed the bound.
func (l *sizedLRU[K, V]) add(k K, v V, n int) {
	if int64(n) > l.max/maxSizedShare {
		return
	}
	l.addMu.Lock()
	defer l.addMu.Unlock()
	if old, ok := l.c.Peek(k); ok {
		l.bytes.Add(-old.n) // Add replaces it without calling back
	}
	l.c.Add(k, sized[V]{v, int64(n)})
	l.bytes.Add(int64(n))
	for l.bytes.Load() > l.max {
		if _, _, ok := l.c.RemoveOldest(); !ok {
			break
		}
	}
}

// len returns the number of values kept.
func (l *sizedLRU[K, V]) len() int { return l.c.Len() }
