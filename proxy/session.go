package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/sqlcache/sqlcache/wire/pgwire"
)

const writeBufferSize = 32 << 10

// errClientTerminated means the client sent Terminate.
var errClientTerminated = errors.New("client terminated")

// session is one client connection and its backend connection.
//
// Two goroutines move messages: the client loop (client → backend, the
// handler's goroutine) and the backend loop (backend → client). Each flushes
// its writer only when its reader has no complete message buffered, so a
// pipelined batch goes out in one write. The backend loop tracks
// ReadyForQuery, so the session always knows how many requests are in
// flight and the transaction status once they are answered: the state a
// cache needs to answer a request itself.
type session struct {
	p   *Proxy
	id  uint64
	log *slog.Logger

	// client and backend are written under mu (the handshake replaces
	// client with its TLS conn and sets backend); the two loops read them
	// freely, other goroutines only under mu.
	client  net.Conn
	backend net.Conn
	params  map[string]string // StartupMessage parameters

	cr *pgwire.Reader // client reader: client loop only
	br *pgwire.Reader // backend reader: backend loop only
	bw *bufio.Writer  // to backend: client loop only

	wmu sync.Mutex    // serializes writes to the client; protects cw
	cw  *bufio.Writer // to client

	cancelKey string // guarded by p.mu

	mu       sync.Mutex // protects the fields below
	pending  int        // requests (Query, Sync, FunctionCall) not yet answered by ReadyForQuery
	txStatus pgwire.TxStatus
	draining bool // close as soon as idle
	closed   bool // connections are being closed on purpose
	sent     latencyQueue

	// Only the backend loop touches these.
	sawFatal bool

	nToBackend int // bytes since the last metrics update; client loop only
	nToClient  int // bytes since the last metrics update; guarded by wmu
}

func newSession(p *Proxy, conn net.Conn) *session {
	id := p.nextID.Add(1)
	return &session{
		p:      p,
		id:     id,
		log:    p.log.With("session", id, "client", conn.RemoteAddr().String()),
		client: conn,
		cr:     pgwire.NewReader(conn, p.cfg.MaxMessageBytes),
		cw:     bufio.NewWriterSize(conn, writeBufferSize),
	}
}

// run relays until either side ends, then closes both.
func (s *session) run() error {
	done := make(chan error, 1)
	go func() { done <- s.backendLoop() }()
	err := s.clientLoop()
	s.close()
	berr := <-done
	if err == nil || isDisconnect(err) {
		err = berr
	}
	return err
}

// clientLoop relays client messages to the backend.
func (s *session) clientLoop() error {
	m := s.p.metrics
	for {
		if !s.cr.Ready() {
			if err := s.flushBackend(); err != nil {
				return err
			}
		}
		msg, err := s.cr.Next()
		if err != nil {
			return s.clientReadFailed(err)
		}
		switch msg.Type {
		case pgwire.MsgQuery:
			m.querySimple.Inc()
			if !s.beginRequest() {
				return errHandled
			}
		case pgwire.MsgSync:
			if !s.beginRequest() {
				return errHandled
			}
		case pgwire.MsgFunctionCall:
			m.queryFunction.Inc()
			if !s.beginRequest() {
				return errHandled
			}
		case pgwire.MsgExecute:
			m.queryExtended.Inc()
		case pgwire.MsgTerminate:
			s.relay(s.bw, s.cr, msg)
			s.flushBackend()
			return errClientTerminated
		}
		if err := s.relay(s.bw, s.cr, msg); err != nil {
			return err
		}
		s.nToBackend += msg.Len + 5
	}
}

// clientReadFailed turns a client read error into the session's end,
// telling the client why when it broke the protocol.
func (s *session) clientReadFailed(err error) error {
	var tooLarge *pgwire.TooLargeError
	var badLen *pgwire.InvalidLengthError
	switch {
	case errors.As(err, &tooLarge):
		s.p.metrics.clientsRejected.WithLabelValues("message_too_large").Inc()
		s.sendFatal(codeProtocolViolation, fmt.Sprintf(
			"message of type %q claims %d bytes, over the limit of %d (postgres.max_message_bytes)",
			tooLarge.Type, tooLarge.Len, tooLarge.Limit))
	case errors.As(err, &badLen):
		s.p.metrics.clientsRejected.WithLabelValues("bad_message").Inc()
		s.sendFatal(codeProtocolViolation, fmt.Sprintf("invalid message length %d for message type %q", badLen.Len, badLen.Type))
	}
	return err
}

// backendLoop relays backend messages to the client and tracks
// ReadyForQuery.
func (s *session) backendLoop() error {
	for {
		if !s.br.Ready() {
			if err := s.flushClient(); err != nil {
				return err
			}
		}
		msg, err := s.br.Next()
		if err != nil {
			return s.backendLost(err)
		}
		switch msg.Type {
		case pgwire.MsgReadyForQuery:
			if err := s.toClient(msg); err != nil {
				return err
			}
			st, ok := pgwire.ReadyStatus(msg.Body)
			if !ok {
				return s.backendLost(errors.New("malformed ReadyForQuery"))
			}
			if s.lastPending() {
				// Flush before the request counts as answered, so
				// anything written to the client once nothing is
				// pending comes after these bytes.
				if err := s.flushClient(); err != nil {
					return err
				}
			}
			if s.endRequest(st) {
				s.terminate(codeAdminShutdown, "terminating connection due to administrator command")
				return errHandled
			}
			continue
		case pgwire.MsgErrorResponse:
			if !msg.Streamed() && pgwire.IsFatal(msg.Body) {
				s.sawFatal = true
			}
		}
		if err := s.toClient(msg); err != nil {
			return err
		}
	}
}

// backendLost reports the loss of the backend to the client, unless the
// backend said goodbye itself or the session is closing anyway.
func (s *session) backendLost(err error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return err
	}
	if !s.sawFatal {
		s.log.Warn("backend connection lost", "err", err)
		s.sendFatal(codeConnectionFailure, fmt.Sprintf("sqlcache: lost connection to the PostgreSQL backend: %v", err))
	}
	s.close()
	return err
}

// relay writes msg to w, streaming a body too large to have been buffered.
func (s *session) relay(w *bufio.Writer, r *pgwire.Reader, msg pgwire.Message) error {
	if !msg.Streamed() {
		_, err := w.Write(msg.Raw)
		return err
	}
	h := msg.Header()
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	return r.CopyBody(w)
}

// toClient relays a backend message to the client.
func (s *session) toClient(msg pgwire.Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.nToClient += msg.Len + 5
	return s.relay(s.cw, s.br, msg)
}

func (s *session) flushClient() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.nToClient > 0 {
		s.p.metrics.bytesToClient.Add(float64(s.nToClient))
		s.nToClient = 0
	}
	return s.cw.Flush()
}

func (s *session) flushBackend() error {
	if s.nToBackend > 0 {
		s.p.metrics.bytesToBackend.Add(float64(s.nToBackend))
		s.nToBackend = 0
	}
	return s.bw.Flush()
}

// sendFatal writes a FATAL ErrorResponse of sqlcache's own to the client,
// after anything already buffered for it.
func (s *session) sendFatal(code, message string) {
	buf := pgwire.AppendError(nil, "FATAL", code, message)
	client, _ := s.conns()
	// A client that stopped reading must not hold this up.
	client.SetWriteDeadline(time.Now().Add(time.Second))
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.cw.Write(buf)
	s.cw.Flush()
}

// beginRequest counts a request that the backend will answer with
// ReadyForQuery. It returns false when the session is draining and idle,
// after closing it.
func (s *session) beginRequest() bool {
	s.mu.Lock()
	if s.draining && s.pending == 0 && s.txStatus == pgwire.TxIdle {
		s.mu.Unlock()
		s.terminate(codeAdminShutdown, "terminating connection due to administrator command")
		return false
	}
	s.pending++
	s.sent.push(time.Now())
	s.mu.Unlock()
	return true
}

func (s *session) lastPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending == 1
}

// endRequest records a ReadyForQuery and reports whether the session must
// now close because it is draining and idle.
func (s *session) endRequest(st pgwire.TxStatus) bool {
	s.mu.Lock()
	if s.pending > 0 {
		s.pending--
	}
	s.txStatus = st
	start, ok := s.sent.pop()
	drainNow := s.draining && s.pending == 0 && st == pgwire.TxIdle
	s.mu.Unlock()
	if ok {
		s.p.metrics.relayLatency.Observe(time.Since(start).Seconds())
	}
	return drainNow
}

// drain asks the session to close once it is idle: at once if it is now.
func (s *session) drain() {
	s.mu.Lock()
	s.draining = true
	idle := s.pending == 0 && s.txStatus == pgwire.TxIdle
	s.mu.Unlock()
	if idle {
		s.terminate(codeAdminShutdown, "terminating connection due to administrator command")
	}
}

// terminate tells the client why and closes the session.
func (s *session) terminate(code, message string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.sendFatal(code, message)
	s.close()
}

// close closes both connections, telling the backend goodbye.
func (s *session) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	client := s.client
	s.mu.Unlock()
	client.Close()
	s.closeBackend()
}

func (s *session) closeBackend() {
	_, backend := s.conns()
	if backend == nil {
		return
	}
	// Terminate lets the backend end without logging an unexpected EOF;
	// a plain write is enough, the connection is closing.
	backend.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	backend.Write([]byte{pgwire.MsgTerminate, 0, 0, 0, 4})
	backend.Close()
}

func (s *session) conns() (client, backend net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client, s.backend
}

// latencyQueue holds the send times of the oldest in-flight requests, up to
// a fixed number so that a client pipelining without reading costs no
// memory; requests beyond that are not timed.
type latencyQueue struct {
	times      [64]time.Time
	head, n    int
	unrecorded int // untimed requests queued behind the timed ones
}

func (q *latencyQueue) push(t time.Time) {
	if q.unrecorded > 0 || q.n == len(q.times) {
		q.unrecorded++
		return
	}
	q.times[(q.head+q.n)%len(q.times)] = t
	q.n++
}

func (q *latencyQueue) pop() (time.Time, bool) {
	if q.n == 0 {
		if q.unrecorded > 0 {
			q.unrecorded--
		}
		return time.Time{}, false
	}
	t := q.times[q.head]
	q.head = (q.head + 1) % len(q.times)
	q.n--
	return t, true
}
