package pglogical

import "time"

// tracker is the freshness bookkeeping of one replication session: the
// position up to which every commit has been applied, and the heartbeats
// waiting for that position to reach their targets. It is not safe for
// concurrent use; the clock is the caller's (t0 comes in, never time.Now).
type tracker struct {
	// applied: every transaction whose commit record ends at or before it
	// has been passed to Handler.Apply.
	applied uint64
	// pending heartbeats, oldest first. Heartbeats are measured one after
	// the other, so their t0s and targets increase.
	pending []beat
}

// beat is a heartbeat: every transaction that committed before t0 ends at
// or before target.
type beat struct {
	t0     time.Time
	target uint64
}

// maxPending bounds the pending heartbeats. Two let a heartbeat asked for
// by WaitFresh start while an older one waits for the server (whose WAL
// writer may take a few hundred milliseconds to flush an asynchronous
// commit), instead of after it; a third replaces the second, so the oldest
// always completes.
const maxPending = 2

// advance raises applied to lsn. If that completes pending heartbeats, it
// returns the t0 of the newest of them and true.
func (t *tracker) advance(lsn uint64) (time.Time, bool) {
	t.applied = max(t.applied, lsn)
	return t.check()
}

// start adds a pending heartbeat. It may be complete at once: then it
// returns t0 and true.
func (t *tracker) start(t0 time.Time, target uint64) (time.Time, bool) {
	b := beat{t0, target}
	if len(t.pending) == maxPending {
		t.pending[maxPending-1] = b
	} else {
		t.pending = append(t.pending, b)
	}
	return t.check()
}

// oldest returns the oldest pending heartbeat, if any.
func (t *tracker) oldest() (beat, bool) {
	if len(t.pending) == 0 {
		return beat{}, false
	}
	return t.pending[0], true
}

func (t *tracker) check() (time.Time, bool) {
	n := 0
	for n < len(t.pending) && t.pending[n].target <= t.applied {
		n++
	}
	if n == 0 {
		return time.Time{}, false
	}
	fresh := t.pending[n-1].t0
	t.pending = t.pending[:copy(t.pending, t.pending[n:])]
	return fresh, true
}

// maxPageHeader is the longest WAL page header: SizeOfXLogLongPHD, 40 bytes
// on 64-bit builds, at the start of each segment; other pages have a short
// one (24 bytes).
const maxPageHeader = 40

// lastRecordEnd converts the server's WAL insert position into the end of
// the last record, as the walsender reports it.
//
// When the last record ends exactly at a page boundary, the insert
// position points past the next page's header, while the walsender, having
// decoded that record, reports the boundary (likewise after
// pg_switch_wal(), at the start of a segment). Without this, an idle server
// would leave the heartbeat short of its target until something else is
// written.
//
// Rounding an offset within the first maxPageHeader bytes of a page down to
// the page boundary is exact: positions compared with the target are ends
// of records (or starts, for a Begin), and no record starts or ends between
// the boundary and such an offset, since the smallest record (24 bytes)
// does not fit there after the page header. Either the last record ended at
// the boundary, or it ends at the offset, continued from the previous page:
// then any position at or past the boundary is at or past its end.
func lastRecordEnd(insert, blockSize uint64) uint64 {
	if blockSize == 0 {
		return insert
	}
	if off := insert % blockSize; off > 0 && off <= maxPageHeader {
		return insert - off
	}
	return insert
}
