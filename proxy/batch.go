package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"

	"github.com/sqlcache/sqlcache/cachepolicy"
	"github.com/sqlcache/sqlcache/proxy/internal/cache"
	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// batch holds the extended-protocol messages a client has sent since its
// last Sync, copied, so that a whole Parse/Bind/Describe/Execute/Sync can be
// judged (and answered from the cache) before any of it is relayed.
type batch struct {
	buf  []byte
	msgs []batchMsg
	// open: part of this batch already went to the backend (after a
	// Flush, or because it grew too large): it is relayed, not cached.
	open bool
}

type batchMsg struct {
	typ    byte
	off, n int // raw message at buf[off:off+n]
}

// batchLimit is the most a batch buffers before it is relayed as it goes.
const batchLimit = 256 << 10

func (b *batch) add(raw []byte) {
	b.msgs = append(b.msgs, batchMsg{typ: raw[0], off: len(b.buf), n: len(raw)})
	b.buf = append(b.buf, raw...)
}

func (b *batch) raw(i int) []byte  { m := b.msgs[i]; return b.buf[m.off : m.off+m.n] }
func (b *batch) body(i int) []byte { m := b.msgs[i]; return b.buf[m.off+5 : m.off+m.n] }

func (b *batch) clear() {
	if cap(b.buf) > 4*batchLimit {
		b.buf = nil
	}
	b.buf, b.msgs = b.buf[:0], b.msgs[:0]
}

var (
	describedKey  = [2][]byte{{0}, {1}}
	parseComplete = []byte{'1', 0, 0, 0, 4}
	bindComplete  = []byte{'2', 0, 0, 0, 4}
	parseBind     = append(append([]byte(nil), parseComplete...), bindComplete...)
)

// batchMessage takes Parse, Bind, Describe, Execute or Close.
func (s *session) batchMessage(msg pgwire.Message) error {
	s.copyReq = nil // no COPY is under way: the client goes on
	if msg.Streamed() || len(s.batch.buf)+len(msg.Raw) > batchLimit {
		// Too big to hold: relay what is held, then this one as it
		// streams.
		if err := s.forwardBatch(); err != nil {
			return err
		}
		s.batch.open = true
		if !s.ensureRequest(nil) {
			return errHandled
		}
		if !msg.Streamed() {
			s.track(msg.Type, msg.Body)
		} else {
			s.trackUnknown(msg.Type)
		}
		s.nToBackend += msg.Len + 5
		return s.relay(s.bw, s.cr, msg)
	}
	s.batch.add(msg.Raw)
	return nil
}

// batchFlush takes a Flush: the client waits for what it sent so far.
func (s *session) batchFlush(msg pgwire.Message) error {
	s.batch.add(msg.Raw)
	if s.copyReq != nil && !s.copyEnded && len(s.batch.msgs) == 1 {
		return s.relayIgnored()
	}
	s.batch.open = true
	return s.forwardBatch()
}

// batchSync takes a Sync: the batch is complete. A batch of the one shape
// a cache can answer is looked up; anything else is relayed.
func (s *session) batchSync(msg pgwire.Message) error {
	s.batch.add(msg.Raw)
	if s.copyReq != nil && len(s.batch.msgs) == 1 {
		if !s.copyEnded {
			// Sent during the copy: PostgreSQL ignores it.
			return s.relayIgnored()
		}
		if r := s.copyEnds(); r != nil {
			// The Sync that ends an extended-protocol COPY FROM STDIN:
			// its ReadyForQuery answers the request of the COPY.
			s.cur = r
		}
	}
	s.copyReq, s.copyEnded = nil, false
	var fill *fillState
	if !s.batch.open && s.cacheOn {
		hit, f := s.tryBatch()
		if !hit && f == nil {
			hit, f = s.tryDescribe()
		}
		if hit {
			s.batch.clear()
			return nil
		}
		fill = f
	}
	s.batch.open = false
	err := s.forwardBatchFill(fill)
	s.cur = nil
	return err
}

// copyEnds returns the request of the extended-protocol COPY FROM STDIN
// that the Sync just held ends, if it still awaits its ReadyForQuery (a
// COPY that failed before its data had it at its own Sync). Client loop
// only.
func (s *session) copyEnds() *request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil || !slices.Contains(s.queue, s.copyReq) {
		return nil
	}
	return s.copyReq
}

// relayIgnored relays the one message held, a Sync or Flush sent during
// an extended-protocol COPY FROM STDIN, which PostgreSQL ignores: no
// request awaits a reply to it.
func (s *session) relayIgnored() error {
	b := &s.batch
	_, err := s.bw.Write(b.buf)
	s.nToBackend += len(b.buf)
	b.clear()
	return err
}

// tryBatch looks up a batch of the form [Parse ""] Bind "" [Describe P ""]
// Execute "" (no row limit) Sync. On a hit it answers and returns true.
func (s *session) tryBatch() (bool, *fillState) {
	b := &s.batch
	i := 0
	var parse pgwire.ParseBody
	hasParse := false
	if b.msgs[i].typ == pgwire.MsgParse {
		p, err := pgwire.ParseParse(b.body(i))
		if err != nil || len(p.Name) != 0 {
			return false, nil
		}
		parse, hasParse = p, true
		i++
	}
	if i >= len(b.msgs) || b.msgs[i].typ != pgwire.MsgBind {
		return false, nil
	}
	bind, err := pgwire.ParseBind(b.body(i))
	if err != nil || len(bind.Portal) != 0 || (hasParse && len(bind.Statement) != 0) {
		return false, nil
	}
	i++
	described := 0
	if i < len(b.msgs) && b.msgs[i].typ == pgwire.MsgDescribe {
		kind, name, err := pgwire.ParseTarget(b.body(i))
		if err != nil || kind != 'P' || len(name) != 0 {
			return false, nil
		}
		described = 1
		i++
	}
	if i+2 != len(b.msgs) || b.msgs[i].typ != pgwire.MsgExecute {
		return false, nil
	}
	if portal, maxRows, err := pgwire.ParseExecute(b.body(i)); err != nil || len(portal) != 0 || maxRows != 0 {
		if err == nil && maxRows != 0 {
			s.p.metrics.bypasses.WithLabelValues("row_limit").Inc()
		}
		return false, nil
	}

	var sql, oids []byte
	var p **plan
	var parsedAt []byte   // of a statement parsed before the catalog changed
	var parsedPath uint64 // the search path a named statement was parsed under
	if hasParse {
		sql, oids = parse.Query, parse.OIDs
		p = s.sqlPlan(sql)
	} else {
		st := s.stmts[string(bind.Statement)]
		if st == nil {
			return false, nil
		}
		sql, oids, p, parsedPath = st.sqlb, st.oids, st.plan, st.pathGen
		switch stale, ambiguous := s.statementStale(st); {
		case ambiguous:
			s.p.metrics.bypasses.WithLabelValues("statement_stale").Inc()
			return false, nil
		case stale:
			parsedAt = binary.BigEndian.AppendUint64(s.parsedAtBuf[:0], st.changes)
		}
	}
	if !(*p).analysis.Candidate {
		return false, nil
	}
	if clock, err := pgwire.AnyParam(bind.Args, paramReadsClock); err != nil || clock {
		// 'now' bound to a timestamp parameter reads the clock.
		s.p.metrics.bypasses.WithLabelValues("uncacheable").Inc()
		return false, nil
	}
	var hs hitState
	s.keyBuf, hs = s.appendKeyPrefix(s.keyBuf[:0], 'E')
	if !hasParse && parsedPath != hs.pathGen {
		// PostgreSQL analyzes it again under the new search path, and
		// refuses it (0A000) if its result columns changed: it decides.
		s.p.metrics.bypasses.WithLabelValues("statement_stale").Inc()
		return false, nil
	}
	s.keyBuf = cachepolicy.AppendKey(s.keyBuf, (*p).digest[:], oids, bind.Args, describedKey[described])
	if parsedAt != nil {
		// PostgreSQL keeps what the statement's names meant when it was
		// parsed (a table made since under one of them, earlier on the
		// search path, does not count for it), and its result columns:
		// it shares answers only with statements parsed as long ago.
		s.keyBuf = cachepolicy.AppendKey(s.keyBuf, parsedAt)
	}
	prefix := bindComplete
	if hasParse {
		prefix = parseBind
	}
	hit, fill := s.lookup(p, s.keyBuf, hs, prefix, &bindParams{bind.Args, oids})
	if hit && hasParse {
		// The client now has an unnamed statement the backend has not
		// seen; it is parsed there before anything else uses it.
		s.setStatement(parse, p, false)
	}
	return hit, fill
}

// tryDescribe looks up a batch Parse "" Describe S "" Sync, which drivers
// send to learn a statement's parameter and result types before binding it
// (pgx's describe_exec mode, libpq's PQprepare + PQdescribePrepared). Its
// answer depends on the catalog as the query's does, so it is cached with
// the query's dependencies.
func (s *session) tryDescribe() (bool, *fillState) {
	b := &s.batch
	if len(b.msgs) != 3 || b.msgs[0].typ != pgwire.MsgParse || b.msgs[1].typ != pgwire.MsgDescribe {
		return false, nil
	}
	parse, err := pgwire.ParseParse(b.body(0))
	if err != nil || len(parse.Name) != 0 {
		return false, nil
	}
	if kind, name, err := pgwire.ParseTarget(b.body(1)); err != nil || kind != 'S' || len(name) != 0 {
		return false, nil
	}
	p := s.sqlPlan(parse.Query)
	if !(*p).analysis.Candidate {
		return false, nil
	}
	var hs hitState
	s.keyBuf, hs = s.appendKeyPrefix(s.keyBuf[:0], 'S')
	s.keyBuf = cachepolicy.AppendKey(s.keyBuf, (*p).digest[:], parse.OIDs)
	hit, fill := s.lookup(p, s.keyBuf, hs, parseComplete, nil)
	if hit {
		s.setStatement(parse, p, false)
	}
	if fill != nil {
		fill.describe = true
	}
	return hit, fill
}

// statementStale reports whether a prepared statement may mean something
// else than a fresh parse of its text: a relation of a name it reads
// changed since the backend parsed it. If ambiguous, the change was made
// elsewhere and seen by an access check, and the statement may have been
// parsed before it or after: it does not use the cache. Worked out once
// per statement and change.
func (s *session) statementStale(st *stmtInfo) (stale, ambiguous bool) {
	cur := s.changes.Load()
	if st.changes == cur {
		return false, false
	}
	if st.staleAt != cur {
		var tables []string // nil: not decided, any change counts
		if p := *st.plan; p.decided {
			tables = p.decision.Tables
			if tables == nil {
				tables = []string{}
			}
		}
		st.stale, st.ambiguous = s.p.planner.statementStale(s.db, tables, st.changes, st.checkSeq)
		st.staleAt = cur
	}
	return st.stale, st.ambiguous
}

// forwardBatch relays the held messages, if any.
func (s *session) forwardBatch() error { return s.forwardBatchFill(nil) }

// forwardBatchFill relays the held messages, tracking statements and what
// each Execute does; fill, if set, captures the answer of this batch.
func (s *session) forwardBatchFill(fill *fillState) error {
	b := &s.batch
	if len(b.msgs) == 0 {
		return nil
	}
	if !s.ensureRequest(fill) {
		return errHandled
	}
	for i := range b.msgs {
		s.track(b.msgs[i].typ, b.body(i))
	}
	if _, err := s.bw.Write(b.buf); err != nil {
		return err
	}
	s.nToBackend += len(b.buf)
	b.clear()
	return nil
}

// ensureRequest queues the request of the batch being relayed, once. It
// returns false if the session closed instead (draining).
func (s *session) ensureRequest(fill *fillState) bool {
	if s.cur != nil {
		return true
	}
	if !s.snapshotIfHits(nil) || !s.readBackIfNeeded() || !s.readDefaultsIfNeeded(s.batchOpensBlock) {
		return false
	}
	uses, parses := s.batchUsesUnnamed()
	var reparse *stmtInfo
	if st := s.stmts[""]; uses && st != nil && !st.onBackend {
		reparse = st
	}
	closeStale := uses && s.unnamedStale
	if uses || parses {
		s.unnamedStale = false
	}
	r := &request{fill: fill, reparsed: reparse != nil, closedUnnamed: closeStale}
	if !s.push(r) {
		if fill != nil {
			s.p.store.Abort(fill.f)
		}
		return false
	}
	s.cur = r
	switch {
	case closeStale:
		// The client saw a Query answered from the cache destroy it.
		s.bw.Write(closeUnnamed)
		s.backendUnnamed = false
	case reparse != nil:
		// Part of the batch, not a request of its own: if it fails (the
		// table was dropped since the hit, which took no lock), the
		// client's batch gets that error, and a transaction block it is
		// in is not aborted behind its back. In a failed block it fails
		// as the client's Bind would (25P02), but reported from
		// exec_parse_message; then it is not on the backend
		// (failedParses). A write error surfaces at the next flush.
		s.bw.Write(pgwire.AppendParse(nil, nil, reparse.sqlb, reparse.oids))
		s.parsing(r, parseUndo{st: reparse, prev: reparse, was: *reparse, reparse: true})
		reparse.onBackend, reparse.changes, reparse.checkSeq = true, s.changes.Load(), s.checks.Load()
		s.backendUnnamed = true
	}
	return true
}

// closeUnnamed is Close S "".
var closeUnnamed = []byte{pgwire.MsgClose, 0, 0, 0, 6, 'S', 0}

// parseUndo is a Parse sent in a request, with what it replaced: the
// statement of that name before, and a copy of it as it was, in case the
// Parse reused it (setStatement).
type parseUndo struct {
	name     string
	st, prev *stmtInfo
	was      stmtInfo
	// reparse: sqlcache's own Parse of a statement whose Parse the cache
	// answered; streamed: a Parse too large to look into, which replaced
	// nobody knows what (all statements are forgotten).
	reparse, streamed bool
}

// parsing records, in request r, that Parse u goes out. Client loop only.
func (s *session) parsing(r *request, u parseUndo) {
	s.mu.Lock()
	if r.parses == nil {
		r.parses = r.parsesBuf[:0]
	}
	r.parses = append(r.parses, u)
	s.mu.Unlock()
}

// failedParses takes note, at the ReadyForQuery of request r that
// failed, of its Parses that PostgreSQL did not carry out: the one that
// failed and those after it, skipped until the Sync. The backend keeps
// what it had under those names; the client loop restores sqlcache's
// record of it (undoParses) before its next message. Requests already
// sent after r may have used a name as sqlcache took it to be, so they
// are taken to change anything. Backend loop only; s.mu is held.
func (s *session) failedParses(r *request) {
	if r.parsed >= len(r.parses) {
		return
	}
	s.undo = append(s.undo, r.parses[r.parsed:]...)
	s.undoPending.Store(true)
	for _, q := range s.queue {
		if q != r && !q.swallow {
			q.unreadable()
		}
	}
}

// undoParses restores the statements of Parses PostgreSQL did not carry
// out (failedParses), latest first, unless a later Parse or Close has
// replaced them since. Client loop only.
func (s *session) undoParses() {
	s.mu.Lock()
	undo := s.undo
	s.undo = nil
	s.undoPending.Store(false)
	s.mu.Unlock()
	for _, u := range slices.Backward(undo) {
		switch {
		case u.streamed:
		case u.reparse:
			// It is known, but not on the backend: parsed again before
			// a batch uses it.
			if s.stmts[""] == u.st {
				u.st.onBackend = false
			}
			s.backendUnnamed = true
		case u.name == "":
			// PostgreSQL drops the unnamed statement before it parses a
			// new one: after a Parse that failed there is none, after
			// one skipped the old one stays. Which is not known: Binds
			// are relayed, and a Query answered from the cache closes
			// whichever it is.
			if s.stmts[""] == u.st {
				delete(s.stmts, "")
			}
			s.backendUnnamed = true
		case s.stmts[u.name] != u.st:
		case u.prev == nil:
			delete(s.stmts, u.name)
		case u.prev == u.st:
			*u.st = u.was
		default:
			s.stmts[u.name] = u.prev
		}
	}
}

// batchUsesUnnamed reports whether the batch about to go out may use the
// unnamed statement (Bind or Describe of statement "") before parsing its
// own, and whether it parses one first. A batch that goes out before its
// Sync (after a Flush, or with a message too large to hold) may use it
// later.
func (s *session) batchUsesUnnamed() (uses, parses bool) {
	b := &s.batch
	for i := range b.msgs {
		switch b.msgs[i].typ {
		case pgwire.MsgParse:
			if bytes.HasPrefix(b.body(i), []byte{0}) {
				return false, true
			}
		case pgwire.MsgBind:
			if bind, err := pgwire.ParseBind(b.body(i)); err != nil || len(bind.Statement) == 0 {
				return true, false
			}
		case pgwire.MsgDescribe:
			if kind, name, err := pgwire.ParseTarget(b.body(i)); err != nil || kind == 'S' && len(name) == 0 {
				return true, false
			}
		case pgwire.MsgSync:
			return false, false
		}
	}
	return true, false
}

// track follows the statement and portal lifecycle and classifies what
// each Execute runs into the current request.
func (s *session) track(typ byte, body []byte) {
	if !s.cacheOn {
		return
	}
	switch typ {
	case pgwire.MsgParse:
		p, err := pgwire.ParseParse(body)
		if err != nil {
			return
		}
		prev := s.stmts[string(p.Name)]
		var was stmtInfo
		if prev != nil {
			was = *prev
		}
		s.setStatement(p, s.sqlPlan(p.Query), true)
		s.parsing(s.cur, parseUndo{name: string(p.Name), st: s.stmts[string(p.Name)], prev: prev, was: was})
		if len(p.Name) == 0 {
			s.backendUnnamed = true
		}
	case pgwire.MsgBind:
		bind, err := pgwire.ParseBind(body)
		if err != nil {
			return
		}
		st := s.stmts[string(bind.Statement)]
		if cur, ok := s.portals[string(bind.Portal)]; !ok || cur != st {
			s.portals[string(bind.Portal)] = st
		}
		s.bindRow(st, bind)
		s.bindEffects(st, bind)
	case pgwire.MsgExecute:
		portal, _, err := pgwire.ParseExecute(body)
		st := s.portals[string(portal)]
		var row *cache.Row
		if err == nil && st != nil {
			s.decideEffects(st.plan)
			if (*st.plan).analysis.Candidate && !(*st.plan).decided && s.blockMayStayAnswerable() {
				// A read in the batch of the BEGIN (pgjdbc's), or one of
				// several in a batch in the block (pgx's SendBatch):
				// decided here, it can leave the block answerable.
				*st.plan = s.p.planner.decideIn(context.Background(), s.db, s.epoch, *st.plan)
			}
			if r, ok := s.portalRows[string(portal)]; ok && (*st.plan).writeRow != nil {
				row = &r
			}
		}
		if st != nil && (*st.plan).analysis.CopyIn {
			// PostgreSQL ignores the Syncs the client sends during the
			// copy: the ReadyForQuery after it ends this request.
			s.copyReq = s.cur
		}
		s.mu.Lock()
		if err != nil || st == nil {
			// Not knowing what runs, assume it may change anything,
			// the session's settings too.
			s.cur.unreadable()
		} else {
			s.cur.classify(*st.plan, row, s.portalEffects[string(portal)])
		}
		s.mu.Unlock()
		if st != nil {
			s.forgetPrepared((*st.plan).analysis)
		}
	case pgwire.MsgClose:
		kind, name, err := pgwire.ParseTarget(body)
		if err != nil {
			return
		}
		if kind == 'S' {
			// backendUnnamed stays: PostgreSQL skips a Close after an
			// error in its batch, and a spare Close S "" ahead of a later
			// batch costs nothing.
			delete(s.stmts, string(name))
		} else {
			delete(s.portals, string(name))
			delete(s.portalRows, string(name))
			delete(s.portalEffects, string(name))
		}
	}
}

// bindRow records, for a portal whose statement writes one row picked by
// its primary key, which row its parameters pick.
func (s *session) bindRow(st *stmtInfo, bind pgwire.BindBody) {
	if st != nil {
		s.decideEffects(st.plan)
		if wr := (*st.plan).writeRow; wr != nil {
			if row, ok := paramRow(*wr, bind.Args, st.oids); ok {
				s.portalRows[string(bind.Portal)] = row
				return
			}
		}
	}
	if len(s.portalRows) > 0 {
		delete(s.portalRows, string(bind.Portal))
	}
}

// bindEffects records, for a portal whose statement's session effects
// take a value from its parameters (SELECT set_config('x', $1, false)),
// those effects with the Bind's values in.
func (s *session) bindEffects(st *stmtInfo, bind pgwire.BindBody) {
	if st != nil {
		if effects := boundEffects((*st.plan).analysis.Session, bind.Args, st.oids); effects != nil {
			s.portalEffects[string(bind.Portal)] = effects
			return
		}
	}
	if len(s.portalEffects) > 0 {
		delete(s.portalEffects, string(bind.Portal))
	}
}

// boundEffects returns session with the values of a Bind's parameters
// (args, of a statement parsed with oids) in the effects that take one
// (SessionEffect.Param), or nil if none does. An effect whose value is
// NULL, missing, or declared a type other than text keeps its Param,
// which appendEffects turns into an unknown change of settings.
func boundEffects(session []cachepolicy.SessionEffect, args, oids []byte) []cachepolicy.SessionEffect {
	if !slices.ContainsFunc(session, func(e cachepolicy.SessionEffect) bool { return e.Param > 0 }) {
		return nil
	}
	out := slices.Clone(session)
	for i, e := range out {
		if e.Param == 0 {
			continue
		}
		value, _, null, err := pgwire.Param(args, e.Param-1)
		// Only a value PostgreSQL reads as text is the value set: one
		// declared int4 ('007' → 7) or bpchar (trailing spaces) is not.
		if err != nil || null || !textParam(oids, e.Param) {
			continue
		}
		out[i].Value, out[i].Param = string(value), 0
	}
	return out
}

// textParam reports whether parameter n (from 1) of a statement parsed
// with oids is text in binary format too: declared text or varchar, or
// not declared (set_config's own argument type, text, is inferred).
func textParam(oids []byte, n int) bool {
	declared := declaredOID(oids, n)
	return declared == 0 || declared == pgtypeText || declared == pgtypeVarchar
}

// declaredOID returns the type a Parse's oids declare for parameter n
// (from 1), or 0 if they leave it to the server.
func declaredOID(oids []byte, n int) uint32 {
	if len(oids) >= 2+4*n && int(binary.BigEndian.Uint16(oids)) >= n {
		return binary.BigEndian.Uint32(oids[2+4*(n-1):])
	}
	return 0
}

// OIDs of the text types.
const (
	pgtypeText    = 25
	pgtypeVarchar = 1043
)

// paramRow returns the row a RowRead picks with the parameters of a Bind
// (args) of a statement parsed with oids, or with the statement's own
// constant.
func paramRow(r cachepolicy.RowRead, args, oids []byte) (cache.Row, bool) {
	if key, ok := r.Key(); ok {
		return cache.Row{Table: r.Table, Column: r.Column, Key: key}, true
	}
	value, bin, null, err := pgwire.Param(args, r.Param-1)
	if err != nil || null {
		return cache.Row{}, false
	}
	key, ok := cachepolicy.RowKey(r, value, bin, declaredOID(oids, r.Param))
	return cache.Row{Table: r.Table, Column: r.Column, Key: key}, ok
}

// trackUnknown records a message too large to look into.
func (s *session) trackUnknown(typ byte) {
	if !s.cacheOn {
		return
	}
	switch typ {
	case pgwire.MsgParse:
		// Which statement it replaced is unknown: forget them all, so a
		// later Execute of any is treated as unknown. Its ParseComplete
		// counts (failedParses).
		clear(s.stmts)
		clear(s.portals)
		s.backendUnnamed = true
		s.parsing(s.cur, parseUndo{streamed: true})
	case pgwire.MsgBind:
		// Which portal it bound, and to which statement, is unknown (a
		// write with a large parameter): forget the portals, so that an
		// Execute of any is treated as unknown rather than as what the
		// portal ran before.
		clear(s.portals)
		clear(s.portalRows)
		clear(s.portalEffects)
	case pgwire.MsgExecute:
		s.mu.Lock()
		s.cur.unreadable()
		s.mu.Unlock()
	}
}

// setStatement records a Parse, reusing the record of an unnamed statement
// parsed again with the same text (the common case, without allocating).
func (s *session) setStatement(p pgwire.ParseBody, pl **plan, onBackend bool) {
	if len(p.Name) == 0 {
		// It replaces any statement the backend kept (unnamedStale).
		s.unnamedStale = false
	}
	s.mu.Lock()
	path := s.state.pathGen
	s.mu.Unlock()
	if st := s.stmts[string(p.Name)]; st != nil && st.sql == string(p.Query) && bytes.Equal(st.oids, p.OIDs) {
		st.onBackend, st.plan, st.changes, st.checkSeq, st.pathGen = onBackend, pl, s.changes.Load(), s.checks.Load(), path
		return
	}
	s.stmts[string(p.Name)] = &stmtInfo{
		sql:       (*pl).sql,
		sqlb:      []byte((*pl).sql),
		oids:      append([]byte(nil), p.OIDs...),
		plan:      pl,
		onBackend: onBackend,
		changes:   s.changes.Load(),
		checkSeq:  s.checks.Load(),
		pathGen:   path,
	}
}

// paramReadsClock reports a text parameter such as 'now' or 'today' that
// PostgreSQL turns into the current time when it is a date or time. Date
// and time input is short; longer values are not looked into.
func paramReadsClock(v []byte) bool {
	return len(v) <= 128 && cachepolicy.ReadsClock(string(v))
}
