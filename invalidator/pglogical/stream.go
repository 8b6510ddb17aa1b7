package pglogical

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Stream follows one database's changes. Its methods are safe for
// concurrent use.
type Stream struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the run goroutine

	// wake (capacity 1) asks for a heartbeat now, for WaitFresh.
	wake chan struct{}
	// wantAfter is the latest time a WaitFresh has waited for, in Unix
	// nanoseconds: a heartbeat requested after it serves all of them.
	wantAfter atomic.Int64
	// fresh is FreshAsOf; nil means zero.
	fresh atomic.Pointer[time.Time]

	notifyMu sync.Mutex    // protects notify
	notify   chan struct{} // closed and replaced when fresh advances

	mu     sync.Mutex // protects status
	status Status

	// Owned by the run goroutine, and the heartbeat goroutine of the
	// current session for hb.
	dec         *decoder
	hb          *pgconn.PgConn // the heartbeat connection; nil until needed
	hbBlockSize uint64         // the server's wal_block_size
	// pubVersion is the publication's version (publication.version) when
	// the session began; set by setup, then read by heartbeats, one after
	// the other.
	pubVersion string
	// resetNext: the last session ended because the publication changed
	// under it; the next begins with a Reset. Run goroutine only.
	resetNext    bool
	streamed     bool   // a session has streamed before
	slotApplied  uint64 // permanent slot: applied when the last session ended
	recreateSlot bool   // permanent slot: drop and create it anew
	lastLogged   string // the last error logged, to log each once
	// invisible are transactions applied before a heartbeat saw them
	// visible to other sessions (visibility.go). Run goroutine only.
	invisible []appliedTxn
	// lastSnap is the last heartbeat's snapshot, taken before every
	// transaction applied since; cleared when a session begins, since the
	// server may not be the one it came from. Run goroutine only.
	lastSnap txSnapshot
}

// Status is a Stream's state, for metrics and health checks.
type Status struct {
	Connected bool   // streaming
	Slot      string // the current or last replication slot
	Temporary bool   // Slot is temporary
	// AppliedLSN: every commit ending at or before it has been applied.
	AppliedLSN uint64
	// ServerLSN is the server's WAL position at the last heartbeat.
	ServerLSN uint64
	// LastError is why the stream is not fresh: the last failure since it
	// last was; "" once it is fresh again.
	LastError string
	// Resets counts Handler.Reset calls, Reconnects the times the stream
	// streamed again after losing its connection, and Changes the changes
	// passed to Handler.Apply.
	Resets, Reconnects, Changes uint64
	FreshAsOf                   time.Time
}

// Start starts following cfg's database and returns at once. Failures are
// retried with backoff until Close, and reported by Status and the logs.
func Start(cfg Config) *Stream {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stream{
		cfg:    cfg,
		log:    cfg.Logger.With("database", cfg.Database),
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		notify: make(chan struct{}),
		dec:    newDecoder(),
	}
	s.status.Slot = cfg.Slot
	s.status.Temporary = cfg.Slot == ""
	s.wg.Add(1)
	go s.run()
	return s
}

// Close stops the stream and waits for its goroutines. Closing the
// replication connection makes PostgreSQL drop a temporary slot. Close may
// be called more than once.
func (s *Stream) Close() {
	s.cancel()
	s.wg.Wait()
}

// FreshAsOf returns a time T such that every transaction that committed on
// the server before T has been passed to Handler.Apply (and any needed
// Reset done). It is zero when the stream is not connected or not yet
// caught up. It is one atomic load.
func (s *Stream) FreshAsOf() time.Time {
	if t := s.fresh.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// WaitFresh asks for a heartbeat now (at after, if that is later) and
// waits until FreshAsOf is not zero and not before after, or ctx ends, or
// the stream is closed. It reports whether FreshAsOf got there. Waiters
// share heartbeats: one started after the time they wait for serves all.
func (s *Stream) WaitFresh(ctx context.Context, after time.Time) bool {
	if d := time.Until(after); d > 0 {
		// Heartbeats before after cannot help.
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return false
		case <-s.ctx.Done():
			return false
		}
	}
	for want := after.UnixNano(); !after.IsZero(); {
		cur := s.wantAfter.Load()
		if cur >= want || s.wantAfter.CompareAndSwap(cur, want) {
			break
		}
	}
	for {
		s.notifyMu.Lock()
		advanced := s.notify
		s.notifyMu.Unlock()
		if t := s.fresh.Load(); t != nil && !t.Before(after) {
			return true
		}
		select {
		case s.wake <- struct{}{}:
		default: // already asked
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return false
		case <-s.ctx.Done():
			return false
		}
	}
}

// Status returns the stream's state.
func (s *Stream) Status() Status {
	s.mu.Lock()
	st := s.status
	s.mu.Unlock()
	st.FreshAsOf = s.FreshAsOf()
	return st
}

// setFresh moves FreshAsOf forward to t and wakes WaitFresh callers.
func (s *Stream) setFresh(t time.Time) {
	if cur := s.fresh.Load(); cur != nil && !t.After(*cur) {
		return
	}
	s.fresh.Store(&t)
	s.notifyMu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.notifyMu.Unlock()
}

// updateStatus changes the status under its lock.
func (s *Stream) updateStatus(f func(st *Status)) {
	s.mu.Lock()
	f(&s.status)
	s.mu.Unlock()
}

// run connects, streams until failure, and retries with backoff, until
// Close.
func (s *Stream) run() {
	defer s.wg.Done()
	defer s.closeHeartbeatConn()
	backoff := s.cfg.MinBackoff
	for {
		wasFresh, err := s.session()
		s.fresh.Store(nil)
		s.updateStatus(func(st *Status) { st.Connected = false })
		if s.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("replication stopped") // not expected without Close
		}
		s.failed(err)
		if wasFresh {
			backoff = s.cfg.MinBackoff
		}
		timer := time.NewTimer(backoff)
		select {
		case <-s.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// failed logs err, each distinct error once: at Error level if an operator
// must act, else Warn; then records it. Logging first means that whoever sees
// the error in Status finds it, with its fix, in the log too.
func (s *Stream) failed(err error) {
	msg := err.Error()
	if msg != s.lastLogged {
		s.lastLogged = msg
		s.logFailure(err)
	}
	s.updateStatus(func(st *Status) { st.LastError = msg })
}

func (s *Stream) logFailure(err error) {
	var setup *SetupError
	if errors.As(err, &setup) {
		args := []any{"problem", setup.Problem, "fix", setup.Fix}
		if setup.Err != nil {
			args = append(args, "err", setup.Err)
		}
		s.log.Error("change stream cannot run until an operator acts; nothing is fresh meanwhile", args...)
		return
	}
	s.log.Warn("change stream failed; retrying", "err", err)
}

// caughtUp records that the stream is fresh, and so clears the last error.
func (s *Stream) caughtUp() {
	if s.lastLogged == "" { // no error since the last time
		return
	}
	s.updateStatus(func(st *Status) { st.LastError = "" })
	s.log.Info("change stream fresh again")
	s.lastLogged = ""
}
