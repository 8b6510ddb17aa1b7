package proxy

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/sqlcache/sqlcache/cachepolicy"
	"github.com/sqlcache/sqlcache/proxy/internal/cache"
	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// stmtInfo is a prepared statement the client created.
type stmtInfo struct {
	sql  string
	sqlb []byte // sql, for building keys without converting
	oids []byte // parameter type count and OIDs, as in the Parse
	plan **plan // shared with the session's plan map
	// onBackend is false for an unnamed statement whose Parse was
	// answered from the cache: it must be parsed on the backend before a
	// later message uses it.
	onBackend bool
	// changes and checkSeq are the database's counts of catalog changes
	// (session.changes) and of access checks begun (session.checks) when
	// the backend parsed it; stale and ambiguous say whether a name it
	// reads changed since, as of staleAt changes (session.statementStale).
	changes, checkSeq uint64
	stale, ambiguous  bool
	staleAt           uint64
	// pathGen is the session's search path generation
	// (sessionState.pathGen) when it was parsed.
	pathGen uint64
}

// maxSessionPlans and maxSessionPlanBytes bound a session's own plan map,
// by count and by the bytes of its texts; a text longer than
// maxSessionText is not kept in it (it is found in the shared plans).
const (
	maxSessionPlans     = 1000
	maxSessionPlanBytes = 256 << 10
	maxSessionText      = 16 << 10
)

// sqlPlan returns where this session holds the plan of a SQL text, so
// that a decision made once is found again without a lookup.
func (s *session) sqlPlan(sql []byte) **plan {
	if p := s.unreadable(sql); p != nil {
		return p
	}
	sql = s.serverText(sql)
	if p, ok := s.plans[string(sql)]; ok {
		return p
	}
	return s.keepPlan(s.p.planner.lookup(s.db, sql))
}

// unreadableAnalysis and unreadableEncoding are what sqlcache knows of a
// text it cannot read: it may do anything, to the data and to the
// session.
var (
	unreadableAnalysis = unreadableAs(errNonStandardStrings, "backslash in a string with standard_conforming_strings off",
		"a statement read with standard_conforming_strings off")
	unreadableEncoding = unreadableAs(errClientEncoding, "non-ASCII text in a client encoding sqlcache does not read",
		"a statement in a client encoding sqlcache does not read")
)

var (
	errNonStandardStrings = errors.New("standard_conforming_strings is off and the text has a backslash")
	errClientEncoding     = errors.New("the client encoding is multibyte, not UTF8, and the text has a non-ASCII byte")
)

func unreadableAs(err error, reason, effect string) *cachepolicy.Analysis {
	return &cachepolicy.Analysis{ParseError: err, Reason: reason, InvalidateAll: true,
		Session: []cachepolicy.SessionEffect{{Kind: cachepolicy.Unknown, Value: effect}}}
}

// unreadable returns a plan that runs anything, for a text that a session
// with standard_conforming_strings off sends with a backslash in it: the
// parser sqlcache uses reads 'a\' as PostgreSQL does with it on, so
// where a string ends, and what follows as statements, may differ
// ('a\' ; UPDATE …; SELECT ' is one SELECT to it). Else nil.
//
// So is a text with a non-ASCII byte in a multibyte client encoding other
// than UTF8 (SJIS, BIG5, GBK…): PostgreSQL converts it to UTF-8 before
// parsing, and a character's second byte may be a quote or a backslash.
func (s *session) unreadable(sql []byte) **plan {
	a := unreadableAnalysis
	if !s.nonStandardStrings.Load() || bytes.IndexByte(sql, '\\') < 0 {
		enc := s.encoding.Load()
		if enc == nil || enc.charmap != nil || !nonASCII(sql) {
			return nil
		}
		a = unreadableEncoding
	}
	p := &plan{sql: string(sql), analysis: a}
	return &p
}

// serverText returns sql as PostgreSQL parses it: converted to UTF-8 from
// a single-byte client encoding (LATIN1, WIN1252…), else as it is. Sessions
// in UTF8 or SQL_ASCII pay one atomic load.
func (s *session) serverText(sql []byte) []byte {
	enc := s.encoding.Load()
	if enc == nil || enc.charmap == nil || !nonASCII(sql) {
		return sql
	}
	text, err := enc.charmap.NewDecoder().Bytes(sql)
	if err != nil {
		return sql // charmaps decode every byte; not reached
	}
	return text
}

func nonASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// keepPlan adds p to the session's plan map, emptying it when full.
func (s *session) keepPlan(p *plan) **plan {
	held := &p
	if len(p.sql) > maxSessionText {
		return held
	}
	if !s.roomForPlan(p) {
		clear(s.plans)
		s.planBytes = 0
	}
	s.plans[p.sql] = held
	s.planBytes += len(p.sql)
	return held
}

// roomForPlan reports whether the session's plan map can take p without
// emptying it.
func (s *session) roomForPlan(p *plan) bool {
	return len(s.plans) < maxSessionPlans && s.planBytes+len(p.sql) <= maxSessionPlanBytes
}

// queryPlan is sqlPlan for a simple Query, whose plan is not kept past the
// call. Once the session's own map is full (a client that inlines its
// constants sends many texts), the plan is held in s.spare rather than
// making room: a hit on the shared plans then allocates nothing.
func (s *session) queryPlan(sql []byte) **plan {
	if p := s.unreadable(sql); p != nil {
		return p
	}
	sql = s.serverText(sql)
	if p, ok := s.plans[string(sql)]; ok {
		return p
	}
	p := s.p.planner.lookup(s.db, sql)
	if len(p.sql) <= maxSessionText && s.roomForPlan(p) {
		return s.keepPlan(p)
	}
	s.spare = p
	return &s.spare
}

// query handles a simple Query: answered from the cache, or relayed (and
// perhaps filled).
func (s *session) query(msg pgwire.Message) error {
	if err := s.forwardBatch(); err != nil {
		return err
	}
	s.copyReq = nil
	if s.cur != nil {
		return s.queryInBatch(msg)
	}
	var held **plan
	var fill *fillState
	if !s.cacheOn {
		// Nothing cached, nothing to invalidate: relay as is.
		if !s.push(&request{}) {
			return errHandled
		}
		s.nToBackend += msg.Len + 5
		return s.relay(s.bw, s.cr, msg)
	}
	if !msg.Streamed() {
		if sql, err := pgwire.QueryBody(msg.Body); err == nil {
			held = s.queryPlan(sql)
			if (*held).analysis.Candidate {
				var hs hitState
				s.keyBuf, hs = s.appendKeyPrefix(s.keyBuf[:0], 'Q')
				s.keyBuf = cachepolicy.AppendKey(s.keyBuf, (*held).digest[:])
				var hit bool
				if hit, fill = s.lookup(held, s.keyBuf, hs, nil, nil); hit {
					s.queryDropsUnnamed()
					return nil
				}
			}
		}
	}
	r := &request{fill: fill}
	if held != nil {
		// After the lookup, which may have decided the plan.
		s.decideEffects(held)
		var row *cache.Row
		if wr := (*held).writeRow; wr != nil {
			if rw, ok := paramRow(*wr, nil, nil); ok {
				row = &rw
			}
		}
		r.classify(*held, row, nil)
		s.forgetPrepared((*held).analysis)
	} else {
		// A query too large to look into (or malformed) may do anything.
		r.unreadable()
	}
	opens := func() bool { return held != nil && (*held).analysis.OpensBlock }
	if held != nil && !s.snapshotIfHits((*held).analysis) || !s.readBackIfNeeded() || !s.readDefaultsIfNeeded(opens) || !s.push(r) {
		if fill != nil {
			s.p.store.Abort(fill.f)
		}
		return errHandled
	}
	return s.relayQuery(msg)
}

// relayQuery relays a Query. Every Query destroys the unnamed statement,
// even an empty one or one that fails to parse.
func (s *session) relayQuery(msg pgwire.Message) error {
	delete(s.stmts, "")
	s.unnamedStale, s.backendUnnamed = false, false
	if err := s.relay(s.bw, s.cr, msg); err != nil {
		return err
	}
	s.nToBackend += msg.Len + 5
	return nil
}

// forgetPrepared forgets the prepared statements that a's PREPARE,
// DEALLOCATE or DISCARD ALL make or drop: they share the namespace of the
// protocol's, and a Bind of a name sqlcache does not know is relayed.
// Client loop only.
func (s *session) forgetPrepared(a *cachepolicy.Analysis) {
	for _, name := range a.Prepared {
		delete(s.stmts, name)
	}
	if a.AllPrepared {
		for name := range s.stmts {
			if name != "" {
				delete(s.stmts, name)
			}
		}
	}
}

// queryDropsUnnamed records that a Query answered from the cache has, for
// the client, destroyed the unnamed statement, which the backend still
// holds if it had one: before a later batch could use it, sqlcache closes
// it there (ensureRequest).
func (s *session) queryDropsUnnamed() {
	delete(s.stmts, "")
	s.unnamedStale = s.backendUnnamed
}

// queryInBatch relays a Query that follows extended-protocol messages
// with no Sync between: PostgreSQL runs it in their implicit transaction
// and its ReadyForQuery ends both, so it joins their request. Client loop
// only; s.cur is set.
func (s *session) queryInBatch(msg pgwire.Message) error {
	r := s.cur
	s.cur = nil
	if s.cacheOn {
		var held **plan
		if sql, err := pgwire.QueryBody(msg.Body); err == nil && !msg.Streamed() {
			held = s.queryPlan(sql)
			s.decideEffects(held)
		}
		s.mu.Lock()
		if held != nil {
			r.classify(*held, nil, nil)
		} else {
			r.unreadable()
		}
		s.mu.Unlock()
		if held != nil {
			s.forgetPrepared((*held).analysis)
		}
	}
	return s.relayQuery(msg)
}

// decideEffects decides, once per plan, what running a statement that
// calls functions or writes does besides its own result (a candidate's
// lookup may have decided it already, or not, when the session could not
// use the cache): whether invalidating the tables it names is all its
// writes take (plan.writesOnly: if so the session's next read need not
// wait for the change stream), and whether a function it calls or its
// writes run may change the session's settings (plan.setsSettings), which
// the session must know before its next read from the cache.
func (s *session) decideEffects(held **plan) {
	// A read may run user code through its views and policies, which
	// matters when the change stream follows writes (plan.writesOnly).
	if a := (*held).analysis; len(a.Calls) == 0 && len(a.Writes) == 0 && !(a.Candidate && s.stream != nil) {
		return
	}
	*held = s.p.planner.decideIn(context.Background(), s.db, s.epoch, *held)
}

// hitState is what a lookup needs of the session, read under one lock:
// why it may not use the cache ("" if it may), and the session's own
// last write.
type hitState struct {
	why string
	// idle: the backend must hear from the session (sessionIdleLocked):
	// a cached answer is not used, but a miss may still be stored.
	idle     string
	pathGen  uint64 // sessionState.pathGen
	rywAfter time.Time
	status   pgwire.TxStatus // for the ReadyForQuery of a hit
}

// appendKeyPrefix appends what every key of this session starts with: the
// protocol, backend, and the digest of the session's settings (database
// and role among them). It also returns the state lookup needs, read in
// the same critical section.
func (s *session) appendKeyPrefix(dst []byte, proto byte) ([]byte, hitState) {
	s.mu.Lock()
	digest := s.state.digest
	hs := hitState{why: s.cacheableLocked(), rywAfter: s.rywAfter, status: s.txStatus, pathGen: s.state.pathGen}
	if hs.why == "" && s.txStatus == pgwire.TxIdle {
		hs.idle = s.sessionIdleLocked()
	}
	s.mu.Unlock()
	return cachepolicy.AppendKey(dst, protoKey[proto], s.p.backendKey, digest[:]), hs
}

// protoKey distinguishes answers to a simple Query from those to an
// extended batch, which differ in the messages stored.
var protoKey = map[byte][]byte{'Q': {'Q'}, 'E': {'E'}, 'S': {'S'}}

// cacheableLocked returns why the session may not use the cache now, or
// "". s.mu must be held.
func (s *session) cacheableLocked() string {
	if s.state.fromReadBack && s.changes.Load() != s.state.readBackGen {
		// A row security policy may read a setting the read-back did
		// not ask about: read them back again.
		s.state.unknown, s.state.recheck, s.state.fromReadBack = true, true, false
	}
	switch {
	case !s.cacheOn:
		return "disabled"
	case len(s.queue) > 0, len(s.undo) > 0:
		// Undo: a request failed whose Parses the client loop has not
		// undone yet (undoParses).
		return "pipelined"
	case s.state.loginUnknown:
		return "session_state_unknown"
	}
	if s.txStatus != pgwire.TxIdle {
		if why := s.blockWhyLocked(); why != "" {
			return why
		}
	}
	switch {
	case s.state.unknown:
		return "session_state_unknown"
	case s.state.temp:
		return "temp_tables"
	}
	return ""
}

// lookup answers a candidate from the cache when it can. On a hit it has
// written the answer (prefix, the stored messages, ReadyForQuery) and
// returns true. On a miss it may return a fill to capture the answer.
func (s *session) lookup(held **plan, key []byte, hs hitState, prefix []byte, params *bindParams) (bool, *fillState) {
	m := s.p.metrics
	if hs.why != "" {
		m.bypasses.WithLabelValues(hs.why).Inc()
		return false, nil
	}
	// No hits without the stream: spare the catalog the lookup.
	fresh, why := s.streamUp()
	if why != "" {
		m.bypasses.WithLabelValues(why).Inc()
		return false, nil
	}
	p := s.p.planner.decideIn(context.Background(), s.db, s.epoch, *held)
	*held = p
	if !p.decision.Cacheable {
		m.bypasses.WithLabelValues("uncacheable").Inc()
		return false, nil
	}
	if why := s.streamFresh(fresh, hs.rywAfter); why != "" {
		m.bypasses.WithLabelValues(why).Inc()
		return false, nil
	}
	store := s.p.store
	for waited := false; ; waited = true {
		if v := store.Get(key); v != nil {
			if hs.idle != "" {
				m.bypasses.WithLabelValues(hs.idle).Inc()
				return false, nil
			}
			if hs.status == pgwire.TxActive {
				// Waits since hs was read (the catalog, the change
				// stream, another session's fill) may have taken the
				// block past half its idle timeout.
				if why := s.blockHit(); why != "" {
					m.bypasses.WithLabelValues(why).Inc()
					return false, nil
				}
			}
			m.hits.Inc()
			if waited {
				m.stampedeWaits.Inc()
			}
			if hs.status == pgwire.TxActive {
				m.hitsInBlock.Inc()
			}
			s.answer(prefix, v, hs.status)
			return true, nil
		}
		if !store.Admit(key) {
			m.misses.Inc()
			return false, nil
		}
		if s.p.planner.isNoisy(s.db, p.digest) {
			// PostgreSQL sent a notice while running it once: what it
			// sends may depend on the backend (session.noticed).
			m.misses.Inc()
			m.bypasses.WithLabelValues("notice").Inc()
			return false, nil
		}
		f := s.begin(p, key, params)
		if f.Leader() && p.changes != s.changes.Load() {
			// The catalog changed since the decision (DDL through
			// sqlcache forgets its facts before it drops answers): the
			// tables it names may not be what the query reads now, and a
			// fill begun after the drop would pass its check. Not the
			// epoch, which the periodic refresh (forgetAll) moves too: a
			// first read that looked its tables up behind an access check
			// would never fill, since the refresh follows each check.
			store.Abort(f)
			m.misses.Inc()
			return false, nil
		}
		if !f.Leader() && hs.status == pgwire.TxActive {
			// Another session is fetching it, but this one is in a
			// block, whose locks may be what that fill waits behind:
			// relayed, as PostgreSQL would answer it at once.
			store.Abort(f)
			m.misses.Inc()
			return false, nil
		}
		if !f.Leader() && !waited {
			// Another session is fetching this very answer: wait for
			// it rather than ask the backend twice.
			store.Abort(f)
			if wait := store.Wait(key); wait != nil {
				select {
				case <-s.cancelWait: // one sent before this read began
				default:
				}
				select {
				case <-wait:
				case <-time.After(fillWaitLimit):
				case <-s.cancelWait:
					s.answerCancelled(prefix, hs.status)
					return true, nil
				}
			}
			continue
		}
		m.misses.Inc()
		return false, &fillState{f: f, store: store, max: s.p.maxEntryBytes, budget: &s.p.captures, begun: time.Now()}
	}
}

// bindParams are the parameters of a Bind and the parameter types of its
// statement, as in the Parse.
type bindParams struct{ args, oids []byte }

// begin starts the fill of a miss: of one row when the decision ties the
// answer to one and the parameters say which.
func (s *session) begin(p *plan, key []byte, params *bindParams) *cache.Fill {
	d := p.decision
	if d.Row != nil {
		var args, oids []byte
		if params != nil {
			args, oids = params.args, params.oids
		}
		if row, ok := paramRow(*d.Row, args, oids); ok {
			return s.p.store.BeginRow(key, p.label, s.db, row, d.TTL)
		}
	}
	return s.p.store.Begin(key, p.label, s.db, d.Tables, d.TTL)
}

// streamUp returns how fresh the database's change stream is, or
// "stream_down" if the cache is kept current by one and it is not running.
// Without change streams it returns the zero time and "".
func (s *session) streamUp() (time.Time, string) {
	if s.p.streams == nil {
		return time.Time{}, ""
	}
	if s.stream == nil {
		return time.Time{}, "stream_down"
	}
	fresh := s.stream.FreshAsOf()
	if fresh.IsZero() {
		return fresh, "stream_down"
	}
	return fresh, ""
}

// streamFresh checks that the running change stream (fresh from streamUp)
// is current enough to serve from the cache, waiting (boundedly) for it to
// catch up with this session's own last write (after, zero if none). It
// returns why not, or "".
func (s *session) streamFresh(fresh, after time.Time) string {
	if s.p.streams == nil {
		return ""
	}
	if !after.IsZero() && fresh.Before(after) {
		s.p.metrics.ownWriteWaits.Inc()
		ctx, cancel := context.WithTimeout(context.Background(), s.p.maxLag)
		ok := s.stream.WaitFresh(ctx, after)
		cancel()
		if !ok {
			return "stream_behind_own_write"
		}
		s.mu.Lock()
		if s.rywAfter.Equal(after) {
			s.rywAfter = time.Time{}
		}
		s.mu.Unlock()
		return ""
	}
	if time.Since(fresh) > s.p.maxLag {
		return "stream_lag"
	}
	return ""
}

// fillWaitLimit bounds how long a miss waits for another session's fill of
// the same key before asking the backend itself.
const fillWaitLimit = 10 * time.Second

var (
	readyIdle    = pgwire.AppendReadyForQuery(nil, pgwire.TxIdle)
	readyInBlock = pgwire.AppendReadyForQuery(nil, pgwire.TxActive)
)

// cancelledMsg is the ErrorResponse of a statement cancelled by the client.
var cancelledMsg = pgwire.AppendError(nil, "ERROR", "57014", "canceling statement due to user request")

// answerCancelled answers a request whose wait for another session's fill
// the client cancelled, as PostgreSQL answers a cancelled statement: what
// the batch had done before it (prefix), the error and ReadyForQuery.
func (s *session) answerCancelled(prefix []byte, st pgwire.TxStatus) {
	s.p.metrics.bypasses.WithLabelValues("cancelled").Inc()
	s.answer(prefix, cancelledMsg, st)
}

// answer writes a cached answer, ending with the ReadyForQuery of status
// st. A write error is not returned: the answer counts as given (relaying
// the request too would answer it twice), and the next read from the
// client ends the session.
func (s *session) answer(prefix, value []byte, st pgwire.TxStatus) {
	ready := readyIdle
	if st == pgwire.TxActive {
		ready = readyInBlock
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.cw.Write(prefix)
	s.cw.Write(value)
	s.cw.Write(ready)
	s.nToClient += len(prefix) + len(value) + len(ready)
	s.cw.Flush()
}
