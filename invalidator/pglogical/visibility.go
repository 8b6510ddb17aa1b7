package pglogical

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sqlcache/sqlcache/invalidator"
)

// The walsender sends a transaction once its commit record is flushed,
// which comes before other sessions can see it: with synchronous
// replication, until a standby confirms it (for ever if none does and
// the wait is cancelled). A fill that begins after its changes were
// applied but reads before it is visible stores what it changed, and
// nothing would drop that again. So each applied transaction is kept
// until a heartbeat's snapshot shows it visible; then its changes are
// applied once more if it was applied before that snapshot was taken.
// Visibility does not go back: a transaction that a snapshot taken
// before its application already shows visible was visible to every fill
// that began after it, and is not kept at all.

// appliedTxn is a transaction applied before it was seen visible.
type appliedTxn struct {
	xid     uint32
	at      time.Time
	changes []invalidator.Change
}

// maxInvisible bounds Stream.invisible: past it the database's answers
// are all dropped (a Reset) rather than keeping more.
const maxInvisible = 100000

// txSnapshot is txid_current_snapshot(): transactions from xmin on are
// invisible if listed in xip or not before xmax. Transaction IDs are
// compared in 32 bits, as pgoutput sends them, modulo wraparound.
type txSnapshot struct {
	xmin, xmax uint32
	xip        []uint32
	ok         bool
}

// parseSnapshot reads "xmin:xmax:xip,xip,…" (64-bit IDs).
func parseSnapshot(s string) (txSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return txSnapshot{}, errors.New("malformed snapshot " + strconv.Quote(s))
	}
	id := func(v string) (uint32, error) {
		n, err := strconv.ParseUint(v, 10, 64)
		return uint32(n), err
	}
	var snap txSnapshot
	var err error
	if snap.xmin, err = id(parts[0]); err != nil {
		return txSnapshot{}, err
	}
	if snap.xmax, err = id(parts[1]); err != nil {
		return txSnapshot{}, err
	}
	if parts[2] != "" {
		for _, v := range strings.Split(parts[2], ",") {
			x, err := id(v)
			if err != nil {
				return txSnapshot{}, err
			}
			snap.xip = append(snap.xip, x)
		}
	}
	snap.ok = true
	return snap, nil
}

// precedes is PostgreSQL's TransactionIdPrecedes for normal IDs.
func precedes(a, b uint32) bool { return int32(a-b) < 0 }

// visibleIn reports whether transaction xid, committed, is visible in snap.
func (snap txSnapshot) visibleIn(xid uint32) bool {
	if precedes(xid, snap.xmin) {
		return true
	}
	return precedes(xid, snap.xmax) && !slices.Contains(snap.xip, xid)
}

// applied keeps a transaction just applied until it is seen visible.
func (s *Stream) applied(xid uint32, changes []invalidator.Change) {
	if xid == 0 || s.lastSnap.ok && s.lastSnap.visibleIn(xid) {
		return
	}
	if len(s.invisible) >= maxInvisible {
		s.invisible = nil
		s.cfg.Handler.Reset(s.cfg.Database)
		return
	}
	s.invisible = append(s.invisible, appliedTxn{xid: xid, at: time.Now(), changes: changes})
}

// visible forgets the transactions that snap, taken before taken, shows
// visible, applying again the changes of those applied before taken: a
// fill may have begun between their application and the snapshot, and
// read before they were visible.
func (s *Stream) visible(taken time.Time, snap txSnapshot) {
	if !snap.ok {
		return
	}
	s.lastSnap = snap
	kept := s.invisible[:0]
	for _, tx := range s.invisible {
		if !snap.visibleIn(tx.xid) {
			kept = append(kept, tx)
			continue
		}
		if tx.at.Before(taken) {
			s.cfg.Handler.Apply(s.cfg.Database, tx.changes)
		}
	}
	clear(s.invisible[len(kept):])
	s.invisible = kept
}
