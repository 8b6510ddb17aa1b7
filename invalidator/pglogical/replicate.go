package pglogical

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	// statusInterval is how often the applied position is confirmed even
	// without heartbeats, so that a permanent slot releases WAL (and the
	// server, whose wal_sender_timeout is 60s by default, sees us alive).
	statusInterval = 10 * time.Second
	// silenceLimit ends a session whose server sent nothing for that long,
	// although heartbeats ask it for keepalives: the connection is dead
	// without the socket knowing.
	silenceLimit = 30 * time.Second
	// nudgeAfter is how long a heartbeat waits before nudging the server to
	// flush its WAL (see heartbeat).
	nudgeAfter = 500 * time.Millisecond
	// beatRetry is the pause after a failed heartbeat.
	beatRetry = time.Second
)

// errStreamEnded is the server ending the replication stream (CopyDone),
// as it does when shutting down.
var errStreamEnded = errors.New("the server ended the replication stream")

// inbound is one message from the server, decoded by the receive goroutine.
type inbound struct {
	err            error
	keepalive      bool // a primary keepalive, else XLogData
	replyRequested bool // keepalive: the server wants a status update now
	// walStart and walEnd are the XLogData's WAL start and the server's
	// WAL end (for a keepalive, what the walsender has decoded up to).
	walStart, walEnd uint64
	msg              pglogrepl.Message // XLogData's pgoutput message
}

// replication is the state of one streaming session, owned by the run
// goroutine.
type replication struct {
	s     *Stream
	sl    slot // the session's
	track tracker
	beats chan<- beatKind // to the heartbeat goroutine, capacity 1
	// send sends a status update confirming pos; reply asks for a
	// keepalive. A field so that tests can do without a server.
	send func(pos uint64, reply bool) error

	beatBusy  bool      // a request is with the heartbeat goroutine
	beatAfter time.Time // no heartbeat before, after a failure
	requested time.Time // when the latest measure was requested (its t0 is later); zero if it failed
	kicked    bool      // WaitFresh asked for a heartbeat while one was being measured
	nudged    time.Time // the t0 of the pending heartbeat that nudged the server last
	lastRecv  time.Time // when the server last sent anything
	wasFresh  bool
}

// replicate streams until an error or Close. Two goroutines help: one
// receives and decodes the server's messages (pgconn returns messages that
// are only valid until the next receive, so decoding happens there), one
// runs heartbeat queries on the normal connection. Everything else,
// including sending status updates and calling the Handler, happens here.
func (s *Stream) replicate(conn *pgconn.PgConn, sl slot) (wasFresh bool, err error) {
	ctx, cancel := context.WithCancel(s.ctx)
	in := make(chan inbound, 64)
	beats := make(chan beatKind, 1)
	results := make(chan beatResult, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); receive(ctx, conn, in) }()
	go func() { defer wg.Done(); s.heartbeats(ctx, beats, results) }()
	r := &replication{s: s, sl: sl, beats: beats, lastRecv: time.Now(), send: statusSender(conn)}
	r.track.applied = sl.start
	s.updateStatus(func(st *Status) { st.AppliedLSN = sl.start })
	defer func() {
		// Not fresh from the moment anything goes wrong, not once the
		// goroutines are done.
		s.fresh.Store(nil)
		s.updateStatus(func(st *Status) { st.Connected = false })
		cancel()
		wg.Wait() // the receiver must be done with conn before it is closed
		s.dec.endSession()
		if !sl.temporary {
			s.slotApplied = r.track.applied
		}
	}()

	beatTick := time.NewTicker(s.cfg.Heartbeat)
	defer beatTick.Stop()
	statusTick := time.NewTicker(statusInterval)
	defer statusTick.Stop()
	r.request(beatMeasure)
	for {
		var err error
		select {
		case <-ctx.Done():
			return r.wasFresh, nil
		case ev := <-in:
			err = r.handle(ev)
		case res := <-results:
			err = r.beatDone(res)
		case <-beatTick.C:
			err = r.tick()
		case <-s.wake:
			r.kick()
		case <-statusTick.C:
			err = r.sendStatus(false)
		}
		if err != nil {
			return r.wasFresh, err
		}
	}
}

// receive sends the server's messages to out until an error, which it
// sends too, or until ctx ends.
func receive(ctx context.Context, conn *pgconn.PgConn, out chan<- inbound) {
	for {
		ev := receiveOne(ctx, conn)
		select {
		case out <- ev:
		case <-ctx.Done():
			return
		}
		if ev.err != nil {
			return
		}
	}
}

func receiveOne(ctx context.Context, conn *pgconn.PgConn) inbound {
	for {
		raw, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return inbound{err: err}
		}
		switch m := raw.(type) {
		case *pgproto3.CopyData:
			return decodeCopyData(m.Data)
		case *pgproto3.ErrorResponse:
			return inbound{err: pgconn.ErrorResponseToPgError(m)}
		case *pgproto3.CopyDone:
			return inbound{err: errStreamEnded}
		}
		// NoticeResponse, ParameterStatus: nothing to do.
	}
}

// decodeCopyData decodes one CopyData message of the replication stream.
// It keeps no reference to data.
func decodeCopyData(data []byte) inbound {
	if len(data) == 0 {
		return inbound{err: fmt.Errorf("%w: empty CopyData", errProtocol)}
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return inbound{err: fmt.Errorf("%w: %w", errProtocol, err)}
		}
		return inbound{keepalive: true, walEnd: uint64(k.ServerWALEnd), replyRequested: k.ReplyRequested}
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return inbound{err: fmt.Errorf("%w: %w", errProtocol, err)}
		}
		msg, err := parseMessage(x.WALData)
		if err != nil {
			return inbound{err: err}
		}
		if m, ok := msg.(*pglogrepl.LogicalDecodingMessage); ok {
			m.Content = nil // points into data, which pgconn reuses
		}
		return inbound{walStart: uint64(x.WALStart), walEnd: uint64(x.ServerWALEnd), msg: msg}
	}
	return inbound{err: fmt.Errorf("%w: CopyData %q", errProtocol, data[0])}
}

// handle applies one message from the server.
func (r *replication) handle(ev inbound) error {
	if ev.err != nil {
		var pgErr *pgconn.PgError
		if errors.As(ev.err, &pgErr) && pgErr.Code == "42704" && strings.HasPrefix(pgErr.Message, "publication") && r.s.cfg.Slot != "" {
			// "publication ... does not exist": the publication was
			// dropped. Decoding resumes with the catalog as it was at the
			// slot's position, so a permanent slot keeps failing even
			// once the publication is back; the next setup recreates it
			// if so.
			r.s.recreateSlot = true
		}
		return fmt.Errorf("replication: %w", ev.err)
	}
	r.lastRecv = time.Now()
	if !r.s.dec.inTxn {
		// Between transactions, the walsender has sent every transaction
		// committed before the position it reports.
		r.advance(ev.walEnd)
	}
	if ev.keepalive {
		if ev.replyRequested {
			return r.sendStatus(false)
		}
		return nil
	}
	st, err := r.s.dec.decode(ev.msg, ev.walStart)
	if err != nil {
		return err
	}
	if len(st.apply) > 0 {
		r.s.cfg.Handler.Apply(r.s.cfg.Database, st.apply)
		r.s.updateStatus(func(s *Status) { s.Changes += uint64(len(st.apply)) })
		r.s.applied(st.xid, st.apply)
	}
	if st.commitEnd != 0 {
		r.advance(st.commitEnd)
	}
	return nil
}

// advance raises the applied position, which may complete a heartbeat.
func (r *replication) advance(lsn uint64) {
	if lsn <= r.track.applied {
		return
	}
	t0, ok := r.track.advance(lsn)
	r.s.updateStatus(func(s *Status) { s.AppliedLSN = r.track.applied })
	if ok {
		r.reached(t0)
	}
}

// reached publishes a completed heartbeat. The last error is cleared
// first, so that whoever sees the stream fresh sees no error with it.
func (r *replication) reached(t0 time.Time) {
	if r.s.resetNext {
		// The session began after the publication changed under the
		// last one; it streams now, so the Reset is not repeated by a
		// session that fails to start.
		r.s.reset("reset: changes while the publication was altered may have been left out", r.sl)
	}
	r.s.caughtUp()
	r.s.setFresh(t0)
	r.wasFresh = true
}

// tick is the periodic heartbeat: start one, or if some are pending, ask
// the walsender again (and after a while nudge the server to flush).
func (r *replication) tick() error {
	since := time.Since(r.lastRecv)
	if since > silenceLimit {
		return fmt.Errorf("replication: nothing from the server for %v", since.Round(time.Second))
	}
	oldest, ok := r.track.oldest()
	if !ok {
		r.request(beatMeasure)
		if since > silenceLimit/4 {
			// An idle server may owe us nothing while heartbeats are
			// answered without it: ask for a keepalive so that
			// silence keeps meaning a dead connection.
			return r.sendStatus(true)
		}
		return nil
	}
	if !oldest.t0.Equal(r.nudged) && time.Since(oldest.t0) >= nudgeAfter && r.request(beatNudge) {
		r.nudged = oldest.t0
	}
	return r.sendStatus(true)
}

// kick starts a heartbeat for WaitFresh, even if others are pending, unless
// one requested after the time WaitFresh waits for is under way; or as
// soon as the one being measured is done.
func (r *replication) kick() {
	if !r.requested.IsZero() && r.requested.UnixNano() >= r.s.wantAfter.Load() {
		return
	}
	if !r.request(beatMeasure) {
		r.kicked = true
	}
}

// request hands a heartbeat job to the heartbeat goroutine if it is idle.
func (r *replication) request(kind beatKind) bool {
	if r.beatBusy || time.Now().Before(r.beatAfter) {
		return false
	}
	r.beatBusy = true
	if kind == beatMeasure {
		r.requested = time.Now()
	}
	r.beats <- kind // capacity 1 and nothing else under way: never blocks
	return true
}

// beatDone takes a heartbeat job's result.
func (r *replication) beatDone(res beatResult) error {
	r.beatBusy = false
	if res.err != nil {
		var setup *SetupError
		if errors.As(res.err, &setup) || errors.Is(res.err, errPublicationAltered) {
			// The publication changed under the stream: what it sends
			// can no longer be trusted. End the session; the next one's
			// setup reports the problem until an operator fixes it, and
			// it starts with a Reset, even on a permanent slot, whose
			// changes meanwhile were decoded by the altered publication.
			r.s.resetNext = true
			return res.err
		}
		if res.kind == beatMeasure {
			r.requested = time.Time{}
		}
		r.beatAfter = time.Now().Add(beatRetry)
		r.s.failed(fmt.Errorf("heartbeat: %w", res.err))
		return nil
	}
	if res.kind == beatMeasure {
		r.s.visible(res.snapshotRead, res.snapshot)
		r.s.updateStatus(func(s *Status) { s.ServerLSN = res.target })
		if t0, ok := r.track.start(res.t0, res.target); ok {
			r.reached(t0)
		} else if err := r.sendStatus(true); err != nil {
			return err
		}
	}
	if r.kicked {
		r.kicked = false
		r.kick()
	}
	return nil
}

// sendStatus confirms the applied position as written and flushed, so that
// the slot may release WAL before it; reply asks for a keepalive.
func (r *replication) sendStatus(reply bool) error {
	if err := r.send(r.track.applied, reply); err != nil {
		return fmt.Errorf("sending status update: %w", err)
	}
	return nil
}

// statusSender returns replication.send for conn. It may run while the
// receive goroutine waits in conn.ReceiveMessage: it writes whole
// messages straight to the socket, sharing no state with the reading side.
func statusSender(conn *pgconn.PgConn) func(pos uint64, reply bool) error {
	return func(pos uint64, reply bool) error {
		lsn := pglogrepl.LSN(pos)
		return pglogrepl.SendStandbyStatusUpdate(context.Background(), conn, pglogrepl.StandbyStatusUpdate{
			WALWritePosition: lsn,
			WALFlushPosition: lsn,
			WALApplyPosition: lsn,
			ReplyRequested:   reply,
		})
	}
}
