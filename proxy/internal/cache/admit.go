package cache

import "sync/atomic"

// admitSlots sizes Store.seen: 512 KiB, outside the byte budget. At 30,000
// one-off misses a second, a key's fingerprint stays about two seconds
// before another takes its slot.
const admitSlots = 1 << 16

// fullAt is the share of MaxBytes past which the store is full for Admit:
// storing more means evicting.
const fullAt = 7.0 / 8

// Admit reports whether the answer to key, which just missed, should be
// filled. While the budget has room, every answer is. Once it is nearly
// spent, so that each answer stored evicts another, only an answer whose
// key missed before (as far as a small table of fingerprints remembers)
// is: an answer asked for once would push out one that may be asked for
// again, and would cost a copy, an eviction and garbage to collect for
// nothing. A client reading a large table at random (most keys asked for
// once) then costs about what a relay costs, while a key that repeats is
// stored at its second miss. It is TinyLFU's doorkeeper without the
// frequency sketch.
//
// Admit takes no lock; concurrent calls may both admit a key.
func (s *Store) Admit(key []byte) bool {
	if s.used.Load() < s.fullBytes {
		return true
	}
	fp := s.hashKey(key) | 1 // never 0, the empty slot
	slot := &s.seen[fp%admitSlots]
	if slot.Load() == fp {
		return true
	}
	slot.Store(fp)
	s.unadmitted.Add(1)
	return false
}

// admission is Store state for Admit.
type admission struct {
	fullBytes  int64        // s.used at or past this: full
	used       atomic.Int64 // s.bytes, readable without s.mu
	seen       *[admitSlots]atomic.Uint64
	unadmitted atomic.Uint64 // misses Admit refused
}
