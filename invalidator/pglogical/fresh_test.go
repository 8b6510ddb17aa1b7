package pglogical

import (
	"testing"
	"time"
)

func TestTracker(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	// op is one call: start a heartbeat (t0, target) or advance to lsn.
	type op struct {
		start     bool
		t0        time.Time
		lsn       uint64 // target for start, position for advance
		wantFresh time.Time
		wantOK    bool
	}
	advance := func(lsn uint64) op { return op{lsn: lsn} }
	start := func(t0 time.Time, target uint64) op { return op{start: true, t0: t0, lsn: target} }
	fresh := func(o op, t0 time.Time) op { o.wantFresh, o.wantOK = t0, true; return o }
	tests := []struct {
		name string
		ops  []op
	}{
		{"no heartbeat, no freshness", []op{advance(100), advance(200)}},
		{"reached later", []op{start(at(1), 150), advance(100), fresh(advance(150), at(1))}},
		{"reached past", []op{start(at(1), 150), fresh(advance(400), at(1))}},
		{"reached at once", []op{advance(200), fresh(start(at(1), 150), at(1))}},
		{"target equal to applied", []op{advance(150), fresh(start(at(1), 150), at(1))}},
		{"completed only once", []op{start(at(1), 150), fresh(advance(150), at(1)), advance(300)}},
		{"applied never goes back", []op{advance(300), advance(100), fresh(start(at(1), 250), at(1))}},
		{"two pending, completed in turn", []op{start(at(1), 150), start(at(2), 300), fresh(advance(200), at(1)), fresh(advance(300), at(2))}},
		{"two pending, completed at once", []op{start(at(1), 150), start(at(2), 300), fresh(advance(300), at(2)), advance(400)}},
		{"a third replaces the second", []op{start(at(1), 150), start(at(2), 300), start(at(3), 400), fresh(advance(300), at(1)), fresh(advance(400), at(3))}},
		{"completed one by one", []op{start(at(1), 150), fresh(advance(200), at(1)), fresh(start(at(2), 200), at(2))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr tracker
			for i, o := range tt.ops {
				var got time.Time
				var ok bool
				if o.start {
					got, ok = tr.start(o.t0, o.lsn)
				} else {
					got, ok = tr.advance(o.lsn)
				}
				if ok != o.wantOK || !got.Equal(o.wantFresh) {
					t.Errorf("op %d: got %v, %v; want %v, %v", i, got, ok, o.wantFresh, o.wantOK)
				}
			}
		})
	}
}

func TestLastRecordEnd(t *testing.T) {
	const page = 8192
	const segment = 16 << 20
	tests := []struct {
		name          string
		insert, block uint64
		want          uint64
	}{
		{"mid page", 0x1946600, page, 0x1946600},
		{"after a short page header", 5*page + 24, page, 5 * page},
		{"after a long page header (segment start, pg_switch_wal)", 3*segment + 40, page, 3 * segment},
		{"a record continued from the previous page", 5*page + 32, page, 5 * page},
		{"first record after a page header", 5*page + 48, page, 5*page + 48},
		{"block size unknown", 5*page + 24, 0, 5*page + 24},
		{"other block size", 7*32768 + 24, 32768, 7 * 32768},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lastRecordEnd(tt.insert, tt.block); got != tt.want {
				t.Errorf("lastRecordEnd(%#x, %d) = %#x; want %#x", tt.insert, tt.block, got, tt.want)
			}
		})
	}
}
