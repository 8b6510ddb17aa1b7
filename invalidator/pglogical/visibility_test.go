package pglogical

import (
	"testing"
	"time"

	"github.com/sqlcache/sqlcache/invalidator"
)

func TestSnapshotVisibility(t *testing.T) {
	snap, err := parseSnapshot("4294967396:4294967405:4294967398,4294967400")
	if err != nil {
		t.Fatal(err)
	}
	// In 32 bits: xmin 100, xmax 109, running 102 and 104.
	for xid, want := range map[uint32]bool{99: true, 100: true, 101: true, 102: false, 104: false, 108: true, 109: false, 200: false} {
		if got := snap.visibleIn(xid); got != want {
			t.Errorf("xid %d visible %v; want %v", xid, got, want)
		}
	}
	if snap.visibleIn(100) != true { // xmin not listed running here
		t.Error("xmin not in xip should be visible")
	}
	for _, bad := range []string{"", "1:2", "x:2:", "1:2:y"} {
		if _, err := parseSnapshot(bad); err == nil {
			t.Errorf("parseSnapshot(%q) accepted it", bad)
		}
	}
	if s, err := parseSnapshot("5:5:"); err != nil || len(s.xip) != 0 {
		t.Errorf("parseSnapshot(5:5:) = %+v, %v", s, err)
	}
}

type recordingHandler struct{ applied [][]invalidator.Change }

func (h *recordingHandler) Reset(string) {}
func (h *recordingHandler) Apply(_ string, c []invalidator.Change) {
	h.applied = append(h.applied, c)
}

// TestVisibleAppliesAgain: a transaction applied while invisible to other
// sessions is applied again once a heartbeat whose snapshot was read after
// its application sees it visible, and only then.
func TestVisibleAppliesAgain(t *testing.T) {
	h := &recordingHandler{}
	s := &Stream{cfg: Config{Database: "db", Handler: h}}
	change := []invalidator.Change{{Table: "t"}}
	s.applied(102, change)
	after := time.Now().Add(time.Millisecond)
	s.visible(after, txSnapshot{xmin: 100, xmax: 109, xip: []uint32{102}, ok: true})
	if len(h.applied) != 0 || len(s.invisible) != 1 {
		t.Fatalf("still running: applied %d times, %d kept", len(h.applied), len(s.invisible))
	}
	s.visible(after, txSnapshot{xmin: 110, xmax: 110, ok: true})
	if len(h.applied) != 1 || len(s.invisible) != 0 {
		t.Fatalf("visible: applied %d times, %d kept; want 1 and 0", len(h.applied), len(s.invisible))
	}
}

// TestVisibleBeforeApplied: a transaction that a snapshot read before its
// application already shows visible was visible to every fill that began
// after it: it is not applied again, and once such a snapshot is the last
// one, not even kept.
func TestVisibleBeforeApplied(t *testing.T) {
	h := &recordingHandler{}
	s := &Stream{cfg: Config{Database: "db", Handler: h}}
	change := []invalidator.Change{{Table: "t"}}
	s.applied(102, change)
	s.visible(time.Now().Add(-time.Hour), txSnapshot{xmin: 110, xmax: 110, ok: true})
	if len(h.applied) != 0 || len(s.invisible) != 0 {
		t.Fatalf("snapshot read before the application: applied again %d times, %d kept; want 0 and 0", len(h.applied), len(s.invisible))
	}
	s.applied(105, change) // visible in the last snapshot
	s.applied(111, change) // not yet
	if len(s.invisible) != 1 || s.invisible[0].xid != 111 {
		t.Fatalf("kept %+v; want only 111, which the last snapshot does not show visible", s.invisible)
	}
	s.lastSnap = txSnapshot{} // a new session: nothing known
	s.applied(106, change)
	if len(s.invisible) != 2 {
		t.Fatalf("after a new session kept %d; want 2", len(s.invisible))
	}
}
