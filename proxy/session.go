package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqlcache/sqlcache/cachepolicy"
	"github.com/sqlcache/sqlcache/invalidator/pglogical"
	"github.com/sqlcache/sqlcache/proxy/internal/cache"
	"github.com/sqlcache/sqlcache/wire/pgwire"
)

const writeBufferSize = 32 << 10

// errClientTerminated means the client sent Terminate.
var errClientTerminated = errors.New("client terminated")

// maxInFlight bounds the requests a session has sent and not yet had
// answered (session.push).
const maxInFlight = 4096

// smallMessageLimit is PostgreSQL's PQ_SMALL_MESSAGE_LIMIT, the longest
// body it reads for a Sync or a Flush.
const smallMessageLimit = 10000

// session is one client connection and its backend connection.
//
// Two goroutines move messages: the client loop (client → backend, the
// handler's goroutine) and the backend loop (backend → client). Each flushes
// its writer only when its reader has no complete message buffered, so a
// pipelined batch goes out in one write.
//
// The client loop queues a request for everything the backend will answer
// with a ReadyForQuery; the backend loop pops it then, and applies what the
// request did (invalidations, session settings, a cache fill). The client
// loop answers from the cache only when the queue is empty, so a cached
// answer never overtakes one still coming from the backend.
type session struct {
	p   *Proxy
	id  uint64
	log *slog.Logger

	// client and backend are written under mu (the handshake replaces
	// client with its TLS conn and sets backend); the two loops read them
	// freely, other goroutines only under mu.
	client   net.Conn
	backend  net.Conn
	params   map[string]string // StartupMessage parameters
	reported [][2]string       // ParameterStatus during the handshake
	db       string            // database name, for invalidation
	epoch    *atomic.Uint64    // the planner's epoch counter of db
	checks   *atomic.Uint64    // the planner's count of db's access checks begun
	changes  *atomic.Uint64    // the planner's count of db's catalog changes

	cr *pgwire.Reader // client reader: client loop only
	br *pgwire.Reader // backend reader: backend loop only
	bw *bufio.Writer  // to backend: client loop only

	wmu sync.Mutex    // serializes writes to the client; protects cw and nToClient
	cw  *bufio.Writer // to client

	cancelKey string // guarded by p.mu

	mu    sync.Mutex // protects the fields below, and request fields marked (mu)
	queue []*request // sent, not yet answered by ReadyForQuery
	// queueBuf is queue's array from its start, to which an emptied queue
	// returns, so that a session does not allocate one per request.
	queueBuf []*request
	// queueRoom is signalled when a push waits for room in queue
	// (maxInFlight) and the backend loop pops, or the session closes.
	queueRoom   sync.Cond
	pushWaiting bool
	backendDone bool // the backend loop has ended
	txStatus    pgwire.TxStatus
	state       *sessionState
	// rywAfter: the session committed something that may have written;
	// its next cache hit waits until the change stream has applied
	// everything committed before this time (effects of triggers and
	// cascades included).
	rywAfter time.Time
	// block: what is known of the open transaction block, for answering
	// its reads; txDefaults: how the session's next BEGIN runs (block.go).
	block      blockState
	txDefaults txDefaults
	draining   bool // close as soon as idle
	closed     bool // connections are being closed on purpose
	// terminated: the client sent Terminate, which was relayed
	terminated bool

	// Client loop only.
	batch   batch
	stmts   map[string]*stmtInfo // prepared statements by name
	portals map[string]*stmtInfo // portals by name → their statement
	// portalRows: the row a portal's statement writes, when it writes one
	// row picked by its primary key.
	portalRows map[string]cache.Row
	// portalEffects: a portal's session effects with its parameters in,
	// when they take one (boundEffects).
	portalEffects map[string][]cachepolicy.SessionEffect
	plans         map[string]**plan // plans of the SQL texts this session used
	planBytes     int               // bytes of the texts in plans
	spare         *plan             // holds a simple Query's plan when plans is full
	keyBuf        []byte
	cur           *request // the extended batch being relayed, until its Sync (or Query)
	// unnamedStale: the backend holds an unnamed statement that the
	// client has seen destroyed (a Query answered from the cache);
	// backendUnnamed: it may hold one. Client loop only.
	unnamedStale, backendUnnamed bool
	// undo: (mu) Parses PostgreSQL did not carry out, for the client
	// loop to undo (failedParses); undoPending says there are some.
	undo        []parseUndo
	undoPending atomic.Bool
	// copyReq: the request of an extended-protocol COPY FROM STDIN whose
	// copy may be under way; copyEnded: the client ended it since.
	// Client loop only (copyEnds).
	copyReq   *request
	copyEnded bool
	// cancelWait takes a CancelRequest for this session (forwardCancel),
	// which ends a wait for another session's fill.
	cancelWait chan struct{}
	// nonStandardStrings: the backend reports standard_conforming_strings
	// off (unreadable).
	nonStandardStrings atomic.Bool
	// cacheOn: the cache is enabled and this session may use it (not a
	// replication connection, not a template database: relayOnly). Set
	// before the loops start.
	cacheOn bool
	// encoding: the backend reports a client_encoding other than UTF8 or
	// SQL_ASCII (unreadable, serverText); nil for those.
	encoding atomic.Pointer[clientEncoding]

	stream *pglogical.Stream // the database's change stream; nil without one

	loginAt time.Time // (mu) when the session's backend was ready
	// lastReady: (mu) the backend's last ReadyForQuery, which restarts
	// its idle_session_timeout (sessionIdleLocked).
	lastReady time.Time
	// loginSuspect: (mu) the settings sessions log in with changed while
	// this one logged in (Proxy.loginDefaultsSeen).
	loginSuspect bool
	parsedAtBuf  [8]byte // tryBatch's scratch; client loop only

	// Backend loop only.
	sawFatal   bool
	txMayWrite bool // the open transaction ran something that may write
	txCatalog  bool // the open transaction ran DDL
	// txRoleDefaults: the open transaction changed the settings sessions
	// log in with.
	txRoleDefaults bool
	txWrites       map[string]struct{}    // tables written in the open transaction
	txRows         map[cache.Row]struct{} // rows written in the open transaction
	txAll          bool                   // the open transaction may have changed anything
	txScratchW     []string               // txWrites as a slice, reused
	txScratchR     []cache.Row            // txRows as a slice, reused
	// Logged once: that the session's settings became unknown, that
	// reading them back failed (backend loop only).
	settingsLostLogged   bool
	readBackFailedLogged bool

	nToBackend int // bytes since the last metrics update; client loop only
	nToClient  int // guarded by wmu
}

func newSession(p *Proxy, conn net.Conn) *session {
	id := p.nextID.Add(1)
	s := &session{
		p:             p,
		id:            id,
		log:           p.log.With("session", id, "client", conn.RemoteAddr().String()),
		client:        conn,
		cr:            pgwire.NewReader(conn, p.cfg.MaxMessageBytes),
		cw:            bufio.NewWriterSize(conn, writeBufferSize),
		stmts:         make(map[string]*stmtInfo),
		portals:       make(map[string]*stmtInfo),
		portalRows:    make(map[string]cache.Row),
		portalEffects: make(map[string][]cachepolicy.SessionEffect),
		plans:         make(map[string]**plan),
		txWrites:      make(map[string]struct{}),
		txRows:        make(map[cache.Row]struct{}),
	}
	s.queueRoom.L = &s.mu
	s.cancelWait = make(chan struct{}, 1)
	return s
}

// run relays until either side ends, then closes both.
func (s *session) run() error {
	s.mu.Lock()
	s.state = newSessionState(s.params, s.p.loginGen.Load())
	s.state.loginUnknown = s.loginSuspect
	s.loginAt = time.Now()
	s.db = s.state.startup["database"]
	s.cacheOn = s.p.cacheEnabled && !relayOnly(s.params)
	s.mu.Unlock()
	for _, kv := range s.reported {
		s.state.parameterStatus(kv[0], kv[1])
	}
	s.epoch = s.p.planner.epoch(s.db)
	s.changes = s.p.planner.catalogChanges(s.db)
	s.checks = s.p.planner.checkSeq(s.db)
	if s.cacheOn {
		// Keeps the database's stream and catalog connection (dbLeave).
		s.p.dbJoin(s.db)
		defer s.p.dbLeave(s.db)
	}
	if s.p.streams != nil && s.cacheOn {
		s.stream = s.p.streams.get(s.db)
	}
	done := make(chan error, 1)
	go func() {
		err := s.backendLoop()
		// A push waiting for room would wait for ever.
		s.mu.Lock()
		s.backendDone = true
		s.queueRoom.Broadcast()
		s.mu.Unlock()
		done <- err
	}()
	err := s.clientLoop()
	s.close()
	berr := <-done
	s.abortFills()
	if err == nil || isDisconnect(err) {
		err = berr
	}
	return err
}

// batchPause is how long a client may pause in the middle of an
// extended-protocol batch before what it sent is relayed without waiting
// for the rest.
const batchPause = time.Millisecond

// nextClient is s.cr.Next, except that a batch held for its Sync is not
// held while the client pauses. PostgreSQL starts on each message as it
// arrives (statement_timeout runs from the first), so holding a Parse
// until a Describe that comes 200 ms later would change what the client
// sees (pgx's TestPrepareHandlesTimeoutBetweenParseAndDescribe does just
// that). Past batchPause the held messages go out as after a Flush, and
// the batch is relayed, not cached. A batch that arrives whole, as
// drivers send them, never waits here.
func (s *session) nextClient() (pgwire.Message, error) {
	if s.cr.Ready() || len(s.batch.msgs) == 0 {
		return s.cr.Next()
	}
	s.client.SetReadDeadline(time.Now().Add(batchPause))
	msg, err := s.cr.Next()
	s.client.SetReadDeadline(time.Time{})
	if !isTimeout(err) {
		return msg, err
	}
	s.batch.open = true
	if err := s.forwardBatch(); err != nil {
		return pgwire.Message{}, err
	}
	if err := s.flushBackend(); err != nil {
		return pgwire.Message{}, err
	}
	return s.cr.Next()
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
		msg, err := s.nextClient()
		if err != nil {
			return s.clientReadFailed(err)
		}
		if s.undoPending.Load() {
			s.undoParses()
		}
		if msg.Len > smallMessageLimit && (msg.Type == pgwire.MsgSync || msg.Type == pgwire.MsgFlush) {
			// Bodiless messages: PostgreSQL allows them PQ_SMALL_MESSAGE_LIMIT
			// and closes the connection past it.
			s.p.metrics.clientsRejected.WithLabelValues("bad_message").Inc()
			s.sendFatal(codeProtocolViolation, fmt.Sprintf("invalid message length %d for message type %q", msg.Len, msg.Type))
			return errHandled
		}
		switch msg.Type {
		case pgwire.MsgQuery:
			m.querySimple.Inc()
			if err := s.query(msg); err != nil {
				return err
			}
			continue
		case pgwire.MsgParse, pgwire.MsgBind, pgwire.MsgDescribe, pgwire.MsgExecute, pgwire.MsgClose:
			if msg.Type == pgwire.MsgExecute {
				m.queryExtended.Inc()
			}
			if err := s.batchMessage(msg); err != nil {
				return err
			}
			continue
		case pgwire.MsgFlush:
			if err := s.batchFlush(msg); err != nil {
				return err
			}
			continue
		case pgwire.MsgSync:
			if err := s.batchSync(msg); err != nil {
				return err
			}
			continue
		}
		// Anything else goes out after what is batched, as sent.
		if err := s.forwardBatch(); err != nil {
			return err
		}
		switch msg.Type {
		case pgwire.MsgCopyDone, pgwire.MsgCopyFail:
			s.copyEnded = s.copyReq != nil
		case pgwire.MsgFunctionCall:
			m.queryFunction.Inc()
			// A function call may write anything. After extended
			// messages with no Sync it joins their request, as a Query
			// does (queryInBatch).
			if r := s.cur; r != nil {
				s.cur = nil
				s.mu.Lock()
				r.unreadable()
				s.mu.Unlock()
			} else if !s.readBackIfNeeded() || !s.push(unreadableRequest()) {
				return errHandled
			}
		case pgwire.MsgTerminate:
			// The backend may close before run gets to s.close; that
			// is the goodbye asked for, not a lost backend.
			s.mu.Lock()
			s.terminated = true
			s.mu.Unlock()
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

// tagCommit is the CommandComplete tag of COMMIT and END.
var tagCommit = []byte("COMMIT")

// backendLoop relays backend messages to the client and completes requests
// at each ReadyForQuery.
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
		r := s.front()
		switch msg.Type {
		case pgwire.MsgReadyForQuery:
			st, ok := pgwire.ReadyStatus(msg.Body)
			if !ok {
				return s.backendLost(errors.New("malformed ReadyForQuery"))
			}
			// Invalidate before the client can see the answer.
			s.complete(r, st)
			drainNow, err := s.ready(r, st, msg)
			if err != nil {
				return err
			}
			if drainNow {
				s.terminate(codeAdminShutdown, "terminating connection due to administrator command")
				return errHandled
			}
			continue
		case pgwire.MsgErrorResponse:
			if !msg.Streamed() && pgwire.IsFatal(msg.Body) {
				s.sawFatal = true
			}
			if r != nil {
				r.failed = true
			}
		case pgwire.MsgCommandComplete:
			// In autocommit the statement is committed before its
			// CommandComplete, and a transaction before its COMMIT's; a
			// client may act on it before the ReadyForQuery.
			commit := !msg.Streamed() && bytes.Equal(pgwire.CommandTag(msg.Body), tagCommit)
			s.invalidate(r, false, commit, false)
		case pgwire.MsgParameterStatus:
			s.parameterStatus(msg)
		case pgwire.MsgNoticeResponse:
			if r != nil && !r.swallow {
				s.noticed(r)
			}
		}
		if r != nil && msg.Type == pgwire.MsgParseComplete {
			r.parsed++
			if r.reparsed {
				// The reply to sqlcache's own Parse ahead of the batch.
				r.reparsed = false
				continue
			}
		}
		if r != nil && r.closedUnnamed && msg.Type == pgwire.MsgCloseComplete {
			// The reply to sqlcache's own Close ahead of the batch.
			r.closedUnnamed = false
			continue
		}
		if r != nil && r.fill != nil {
			r.fill.capture(msg.Type, msg.Raw)
		}
		if r != nil && r.own != nil && msg.Type == pgwire.MsgDataRow {
			r.own.row(msg)
		}
		if r != nil && r.swallow && msg.Type != pgwire.MsgNotification && msg.Type != pgwire.MsgParameterStatus {
			continue
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
	closed := s.closed || s.terminated
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
	return s.flushClientLocked()
}

func (s *session) flushClientLocked() error {
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

// push queues a request the backend will answer with ReadyForQuery. It
// returns false when the session is draining and idle, after closing it.
func (s *session) push(r *request) bool {
	r.start = time.Now()
	s.mu.Lock()
	if len(s.queue) >= maxInFlight && !s.closed {
		// What the backend is to answer must reach it first. A write
		// error surfaces at the next flush.
		s.mu.Unlock()
		s.flushBackend()
		s.mu.Lock()
	}
	for len(s.queue) >= maxInFlight && !s.closed && !s.backendDone {
		// A client that pipelines without reading: it waits, as its
		// writes would for PostgreSQL's socket buffers, rather than
		// sqlcache holding a request per message without bound.
		s.pushWaiting = true
		s.queueRoom.Wait()
	}
	if s.closed || s.backendDone {
		s.mu.Unlock()
		return false
	}
	if s.draining && len(s.queue) == 0 && s.txStatus == pgwire.TxIdle {
		s.mu.Unlock()
		s.terminate(codeAdminShutdown, "terminating connection due to administrator command")
		return false
	}
	// A request still queued may open a transaction; sqlcache's own
	// (a Parse, a read-back) do not.
	r.inTx = s.txStatus != pgwire.TxIdle || slices.ContainsFunc(s.queue, func(q *request) bool { return !q.swallow })
	s.queue = append(s.queue, r)
	if len(s.queue) == 1 {
		// It was empty, so it starts at its array's start.
		s.queueBuf = s.queue[:0]
	}
	s.mu.Unlock()
	return true
}

// front returns the oldest unanswered request, or nil.
func (s *session) front() *request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil
	}
	return s.queue[0]
}

// ready relays a ReadyForQuery and retires its request. The request
// leaves the queue while the client writer is held, and the writer is
// flushed before it is released when nothing else is pending: the client
// loop answers from the cache only with an empty queue and under the same
// lock, so a cached answer can neither overtake this one nor be held back
// by a request that is already answered.
func (s *session) ready(r *request, st pgwire.TxStatus, msg pgwire.Message) (drainNow bool, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if r == nil || !r.swallow {
		s.nToClient += msg.Len + 5
		if err := s.relay(s.cw, s.br, msg); err != nil {
			return false, err
		}
	}
	drainNow, idle := s.pop(st)
	if idle {
		err = s.flushClientLocked()
	}
	return drainNow, err
}

// pop removes the answered request and reports whether the session must
// now close because it is draining and idle, and whether nothing is
// pending.
func (s *session) pop(st pgwire.TxStatus) (drainNow, idle bool) {
	s.mu.Lock()
	var r *request
	if len(s.queue) > 0 {
		r = s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		if len(s.queue) == 0 {
			s.queue = s.queueBuf[:0]
		}
	}
	s.txStatus = st
	s.lastReady = time.Now()
	idle = len(s.queue) == 0
	drainNow = s.draining && idle && st == pgwire.TxIdle
	if s.pushWaiting {
		s.pushWaiting = false
		s.queueRoom.Signal()
	}
	s.mu.Unlock()
	if r != nil && !r.swallow {
		s.p.metrics.relayLatency.Observe(time.Since(r.start).Seconds())
	}
	return drainNow, idle
}

// drain asks the session to close once it is idle: at once if it is now.
func (s *session) drain() {
	s.mu.Lock()
	s.draining = true
	idle := len(s.queue) == 0 && s.txStatus == pgwire.TxIdle
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
	s.queueRoom.Broadcast()
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

// abortFills ends the fills of requests that will never be answered.
func (s *session) abortFills() {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, r := range q {
		if r.fill != nil {
			r.fill.abort() // both loops are done: nothing captures into it
		}
	}
}

// relayOnly reports whether a session with these startup parameters is
// only relayed, neither looked up, tracked nor followed by a change
// stream: a replication connection (replication=true for physical
// replication, whose "database" is no database; replication=database for
// logical decoding, whose replication commands sqlcache cannot parse),
// and a session in template0 or template1, where a change stream's slot
// and connections would keep CREATE DATABASE from copying it. Writes
// over such a session reach other sessions' answers through the change
// stream only.
func relayOnly(params map[string]string) bool {
	switch strings.ToLower(params["replication"]) {
	case "", "false", "off", "no", "0":
	default:
		return true
	}
	switch params["database"] {
	case "template0", "template1":
		return true
	}
	return false
}

// noticed marks the texts request r parses or runs as candidates noisy
// (planner.markNoisy): PostgreSQL sent a notice during it. Whether it
// sends one can depend on the backend (a collation's first use in a
// session, a plan-time warning of a function, a Parse that truncates an
// identifier), so an answer stored from a quiet run could be replayed to
// a session that would have had the notice. Backend loop only.
func (s *session) noticed(r *request) {
	var digests [][cachepolicy.DigestSize]byte
	s.mu.Lock()
	if r.candidate != nil {
		digests = append(digests, r.candidate.digest)
	}
	for _, u := range r.parses {
		if u.st != nil {
			if p := *u.st.plan; p.analysis.Candidate {
				digests = append(digests, p.digest)
			}
		}
	}
	s.mu.Unlock()
	for _, d := range digests {
		s.p.planner.markNoisy(s.db, d)
	}
}
