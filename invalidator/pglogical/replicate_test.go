package pglogical

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlcache/sqlcache/invalidator"
)

// recorder is a Handler that records calls.
type recorder struct {
	resets  int
	applies [][]invalidator.Change
}

func (r *recorder) Reset(string)                            { r.resets++ }
func (r *recorder) Apply(_ string, ch []invalidator.Change) { r.applies = append(r.applies, ch) }

// newTestStream returns a Stream that is not running, for the parts that
// need no server.
func newTestStream(h Handler) *Stream {
	cfg := Config{Database: "db", Handler: h}.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Stream{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), notify: make(chan struct{}), dec: newDecoder()}
}

// sent is a status update sent.
type sent struct {
	Pos   uint64
	Reply bool
}

// The events of a session, as the replicate loop dispatches them.
type (
	keepalive struct {
		end   uint64
		reply bool
	}
	xlog struct {
		msg        []byte
		start, end uint64
	}
	measured struct {
		t0     time.Time
		target uint64
	}
	beatFailed struct{}
	tickEvent  struct{}
	kickEvent  struct{}                  // WaitFresh(now)
	kickFor    struct{ after time.Time } // WaitFresh(after)
)

func dispatch(r *replication, ev any) error {
	switch e := ev.(type) {
	case keepalive:
		return r.handle(decodeCopyData(keepaliveData(e.end, e.reply)))
	case xlog:
		return r.handle(decodeCopyData(xlogData(e.start, e.end, e.msg)))
	case measured:
		return r.beatDone(beatResult{kind: beatMeasure, t0: e.t0, target: e.target})
	case beatFailed:
		return r.beatDone(beatResult{kind: beatMeasure, err: context.DeadlineExceeded})
	case tickEvent:
		return r.tick()
	case kickEvent:
		return dispatch(r, kickFor{time.Now()})
	case kickFor:
		r.s.wantAfter.Store(e.after.UnixNano()) // as WaitFresh does
		r.kick()
		return nil
	}
	panic("unknown event")
}

// TestReplication drives the freshness protocol of a session with the
// messages a walsender sends and the heartbeat results, and checks
// FreshAsOf after each, the status updates sent and the heartbeat jobs
// requested.
func TestReplication(t *testing.T) {
	// Times in the past: a heartbeat pending since then is due a nudge.
	t1 := time.Now().Add(-time.Hour)
	t2 := t1.Add(time.Second)
	var zero time.Time
	type step struct {
		ev    any
		fresh time.Time // FreshAsOf after the event
	}
	tests := []struct {
		name    string
		steps   []step
		sends   []sent
		beats   []beatKind
		applies int
		wantErr string // from the last step
	}{
		{
			name:  "keepalive between transactions completes a heartbeat",
			steps: []step{{measured{t1, 150}, zero}, {keepalive{100, false}, zero}, {keepalive{150, false}, t1}},
			sends: []sent{{0, true}},
		},
		{
			name: "keepalive inside a transaction does not count, its commit does",
			steps: []step{
				{xlog{beginMsg(140, 7), 10, 10}, zero},
				{xlog{relationMsg(1, "public", "t", "id"), 11, 11}, zero},
				{xlog{insertMsg(1), 12, 12}, zero},
				{measured{t1, 150}, zero},
				{keepalive{500, false}, zero},
				{xlog{commitMsg(140, 160), 160, 160}, t1},
			},
			sends:   []sent{{10, true}},
			applies: 1,
		},
		{
			name:  "XLogData between transactions counts",
			steps: []step{{measured{t1, 150}, zero}, {xlog{beginMsg(300, 7), 200, 200}, t1}},
			sends: []sent{{0, true}},
		},
		{
			name:  "already applied: fresh at once, nothing to ask",
			steps: []step{{keepalive{200, false}, zero}, {measured{t1, 150}, t1}},
		},
		{
			name:  "the server asks for a reply",
			steps: []step{{keepalive{100, true}, zero}},
			sends: []sent{{100, false}},
		},
		{
			name:  "tick while pending asks again and nudges once",
			steps: []step{{measured{t1, 150}, zero}, {tickEvent{}, zero}, {tickEvent{}, zero}},
			sends: []sent{{0, true}, {0, true}, {0, true}},
			beats: []beatKind{beatNudge},
		},
		{
			name:  "tick starts a heartbeat, one at a time",
			steps: []step{{tickEvent{}, zero}, {tickEvent{}, zero}},
			beats: []beatKind{beatMeasure},
		},
		{
			name:  "kick when idle starts a heartbeat at once",
			steps: []step{{kickEvent{}, zero}},
			beats: []beatKind{beatMeasure},
		},
		{
			name:  "kick while pending starts another at once",
			steps: []step{{measured{t1, 150}, zero}, {kickEvent{}, zero}, {keepalive{150, false}, t1}},
			sends: []sent{{0, true}},
			beats: []beatKind{beatMeasure},
		},
		{
			name:  "kick covered by a heartbeat requested since",
			steps: []step{{tickEvent{}, zero}, {kickFor{t1}, zero}, {measured{t2, 150}, zero}},
			sends: []sent{{0, true}},
			beats: []beatKind{beatMeasure},
		},
		{
			name:  "kick while measuring starts another after",
			steps: []step{{tickEvent{}, zero}, {kickEvent{}, zero}, {measured{t1, 150}, zero}},
			sends: []sent{{0, true}},
			beats: []beatKind{beatMeasure, beatMeasure},
		},
		{
			name:  "FreshAsOf never goes back",
			steps: []step{{measured{t2, 100}, zero}, {keepalive{100, false}, t2}, {measured{t1, 100}, t2}},
			sends: []sent{{0, true}},
		},
		{
			name:  "a failed heartbeat pauses heartbeats",
			steps: []step{{beatFailed{}, zero}, {tickEvent{}, zero}, {kickEvent{}, zero}},
		},
		{
			name:    "a protocol error ends the session",
			steps:   []step{{xlog{beginMsg(140, 7), 10, 10}, zero}, {xlog{insertMsg(9), 12, 12}, zero}},
			wantErr: "before its Relation message",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			s := newTestStream(rec)
			defer s.cancel()
			beats := make(chan beatKind, 1)
			var sends []sent
			r := &replication{s: s, beats: beats, lastRecv: time.Now(), send: func(pos uint64, reply bool) error {
				sends = append(sends, sent{pos, reply})
				return nil
			}}
			var gotBeats []beatKind
			var err error
			for i, st := range tt.steps {
				if err = dispatch(r, st.ev); err != nil && i < len(tt.steps)-1 {
					t.Fatalf("step %d (%T): %v", i, st.ev, err)
				}
				select {
				case k := <-beats:
					gotBeats = append(gotBeats, k) // stays busy: no result comes back
				default:
				}
				if got := s.FreshAsOf(); !got.Equal(st.fresh) {
					t.Errorf("step %d (%T): FreshAsOf %v; want %v", i, st.ev, got, st.fresh)
				}
			}
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error %v; want %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.sends, sends); diff != "" {
				t.Errorf("status updates (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.beats, gotBeats); diff != "" {
				t.Errorf("heartbeat jobs (-want +got):\n%s", diff)
			}
			if len(rec.applies) != tt.applies {
				t.Errorf("%d Apply calls; want %d", len(rec.applies), tt.applies)
			}
		})
	}
}

// TestReplicationSilence: a server that sends nothing for silenceLimit
// ends the session.
func TestReplicationSilence(t *testing.T) {
	s := newTestStream(nil)
	defer s.cancel()
	r := &replication{s: s, beats: make(chan beatKind, 1), lastRecv: time.Now().Add(-silenceLimit - time.Second),
		send: func(uint64, bool) error { return nil }}
	if err := r.tick(); err == nil || !strings.Contains(err.Error(), "nothing from the server") {
		t.Errorf("tick: %v; want an error about the silence", err)
	}
}

// TestReplicationIdleAsksForKeepalive: on an idle server heartbeats are
// answered without the walsender, so before silence could be mistaken for
// a dead connection the stream asks the walsender for a keepalive.
func TestReplicationIdleAsksForKeepalive(t *testing.T) {
	for _, tt := range []struct {
		name   string
		silent time.Duration
		want   bool
	}{
		{"recent", time.Second, false},
		{"quiet", silenceLimit/4 + time.Second, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStream(nil)
			defer s.cancel()
			asked := false
			r := &replication{s: s, beats: make(chan beatKind, 1), lastRecv: time.Now().Add(-tt.silent),
				send: func(_ uint64, reply bool) error { asked = asked || reply; return nil }}
			if err := r.tick(); err != nil {
				t.Fatal(err)
			}
			if asked != tt.want {
				t.Errorf("asked for a keepalive = %v after %v of silence; want %v", asked, tt.silent, tt.want)
			}
		})
	}
}

// TestReplicationHeartbeatError: a failed heartbeat is reported in Status
// until the stream is fresh again.
func TestReplicationHeartbeatError(t *testing.T) {
	s := newTestStream(nil)
	defer s.cancel()
	r := &replication{s: s, beats: make(chan beatKind, 1), lastRecv: time.Now(), send: func(uint64, bool) error { return nil }}
	r.beatDone(beatResult{kind: beatMeasure, err: context.DeadlineExceeded})
	if got := s.Status().LastError; !strings.Contains(got, "heartbeat") {
		t.Errorf("LastError %q; want the heartbeat's error", got)
	}
	r.beatAfter = time.Time{}
	r.beatDone(beatResult{kind: beatMeasure, t0: time.Now(), target: 0})
	if got := s.Status().LastError; got != "" {
		t.Errorf("LastError %q once fresh; want none", got)
	}
}
