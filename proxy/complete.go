package proxy

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/sqlcache/sqlcache/cachepolicy"
	"github.com/sqlcache/sqlcache/proxy/internal/cache"
	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// invalidate drops the cached answers that r's writes, and those of the
// open transaction, may have made stale. It runs at each CommandComplete
// (ready false; commit if its tag is COMMIT) and at each ReadyForQuery
// (ready true; txEnded if the transaction block is over).
//
// Other sessions see a write only once it commits, and this session does
// not use the cache inside a transaction, so a transaction's writes are
// dropped when it commits, before the client sees the COMMIT's
// CommandComplete: every fill that began before that sees the bumped
// generations and is refused, and one that begins after reads the
// committed rows. A transaction that ends otherwise (ROLLBACK, an error,
// PREPARE TRANSACTION) is dropped at the ReadyForQuery that ends it. A
// statement sent outside a transaction is also dropped at its
// CommandComplete, because a simple Query commits before it and a client
// may act on it before the ReadyForQuery. Backend loop only.
func (s *session) invalidate(r *request, ready, commit, txEnded bool) {
	if !ready && r != nil && !r.inTx {
		s.mu.Lock()
		writes, rows := r.writes, r.rows
		all := r.invalidateAll || r.unparsed && !r.failed
		catalog := r.catalogChange
		s.mu.Unlock()
		if catalog {
			// Before the drop, as at a COMMIT below: a fill that begins
			// after it must not use facts from before the DDL.
			s.p.planner.forget(s.db)
		}
		s.drop(all, writes, rows)
		return
	}
	s.accumulate(r)
	if commit && s.txCatalog {
		// Before the writes are dropped, so that no fill after the drop
		// uses facts from before the commit.
		s.p.planner.forget(s.db)
	}
	if commit || txEnded {
		// Once dropped, what the transaction wrote is committed (or
		// rolled back): the ReadyForQuery after a COMMIT's
		// CommandComplete has nothing left to drop but what its own
		// request adds again.
		s.dropTx()
		clear(s.txWrites)
		clear(s.txRows)
		s.txAll = false
	}
	if !txEnded {
		return
	}
	if s.txMayWrite {
		s.mu.Lock()
		s.rywAfter = time.Now()
		s.mu.Unlock()
	}
	s.txMayWrite = false
}

// accumulate adds what r may have written to the open transaction's
// writes; it may run more than once for one request.
func (s *session) accumulate(r *request) {
	if r == nil {
		return
	}
	s.mu.Lock()
	for _, t := range r.writes {
		s.txWrites[t] = struct{}{}
	}
	for _, row := range r.rows {
		s.txRows[row] = struct{}{}
	}
	s.txAll = s.txAll || r.invalidateAll || r.unparsed && !r.failed
	s.txMayWrite = s.txMayWrite || r.mayWrite
	s.txCatalog = s.txCatalog || r.catalogChange
	s.mu.Unlock()
}

// dropTx drops the open transaction's writes.
func (s *session) dropTx() {
	if !s.txAll && len(s.txWrites) == 0 && len(s.txRows) == 0 {
		return
	}
	// The scratch slices keep a write transaction free of allocations.
	s.txScratchW = slices.AppendSeq(s.txScratchW[:0], maps.Keys(s.txWrites))
	s.txScratchR = slices.AppendSeq(s.txScratchR[:0], maps.Keys(s.txRows))
	s.drop(s.txAll, s.txScratchW, s.txScratchR)
}

// drop invalidates this session's database (all), or the tables and rows
// given, and counts it as one event.
func (s *session) drop(all bool, tables []string, rows []cache.Row) {
	store, m := s.p.store, s.p.metrics
	if all {
		m.invalidations.WithLabelValues("unclassified").Add(float64(store.InvalidateDB(s.db)))
		m.invalidationEvents.WithLabelValues("unclassified").Inc()
		return
	}
	if len(tables) == 0 && len(rows) == 0 {
		return
	}
	n := 0
	for _, t := range tables {
		n += store.InvalidateTable(s.db, t)
	}
	for _, row := range rows {
		n += store.InvalidateRows(s.db, row.Table, row.Column, []string{row.Key})
	}
	m.invalidations.WithLabelValues("write").Add(float64(n))
	m.invalidationEvents.WithLabelValues("write").Inc()
}

// complete applies what request r did, at its ReadyForQuery with status
// st, before the client sees that ReadyForQuery. Backend loop only.
func (s *session) complete(r *request, st pgwire.TxStatus) {
	s.invalidate(r, true, false, st == pgwire.TxIdle)
	s.trackBlock(r, st)
	if r == nil {
		return
	}
	if r.own != nil {
		r.own.finish(s, r, st)
		return
	}
	s.mu.Lock()
	if r.failed {
		s.failedParses(r)
	}
	effects, catalogChange, inTx, roleDefaults := r.effects, r.catalogChange, r.inTx, r.roleDefaults
	var lost string // why the session's settings just became unknown
	if len(effects) > 0 {
		known := !s.state.unknown
		untracked := r.failed || inTx || st != pgwire.TxIdle || r.txControl
		if untracked {
			// Inside a transaction a SET may yet be rolled back, after
			// an error some statements ran and some did not, and a
			// batch that ended a transaction may have rolled it back.
			s.state.untracked(effects)
		} else {
			s.state.apply(effects)
		}
		if known && s.state.unknown {
			lost = unknownReason(effects, untracked)
		}
		// Read back once after each statement that left it unknown.
		s.state.recheck = s.state.unknown
	}
	s.mu.Unlock()
	if lost != "" {
		// What an operator needs to understand a falling hit ratio, once
		// per session: a pool may set a tenant for every request.
		level := slog.LevelDebug
		if !s.settingsLostLogged {
			s.settingsLostLogged, level = true, slog.LevelInfo
		}
		s.log.Log(context.Background(), level, "session settings no longer known to sqlcache; it bypasses the cache until it has read them back", "why", lost)
	}
	if catalogChange || s.txCatalog && st == pgwire.TxIdle {
		// DDL in a block: other sessions' lookups until it commits read
		// the catalog without it, so the facts go again when it ends.
		s.p.planner.forget(s.db)
	}
	if st == pgwire.TxIdle {
		s.txCatalog = false // set by accumulate
	}
	if roleDefaults || s.txRoleDefaults && st == pgwire.TxIdle {
		// Sessions that log in from now on may start with other
		// settings (in a block, from its COMMIT on: again at its end).
		s.p.loginDefaultsChanged()
	}
	s.txRoleDefaults = st != pgwire.TxIdle && (s.txRoleDefaults || roleDefaults)
	if r.fill != nil {
		s.finishFill(r, st)
	}
}

func (s *session) finishFill(r *request, st pgwire.TxStatus) {
	f := r.fill
	defer f.release() // after Commit, which copies the answer
	m := s.p.metrics
	if f.aborted || !f.started || r.failed || !s.fillable(st) {
		s.p.store.Abort(f.f)
		m.bypasses.WithLabelValues("uncacheable_answer").Inc()
		return
	}
	stored, reason := s.p.store.Commit(f.f, f.buf)
	m.fillLatency.Observe(time.Since(f.begun).Seconds())
	if !stored {
		m.fillsDropped.WithLabelValues(reason).Inc()
	}
}

// parameterStatus records a setting the backend reports, which the cache
// key must carry. Backend loop only.
func (s *session) parameterStatus(msg pgwire.Message) {
	if msg.Streamed() {
		return
	}
	name, value, err := pgwire.ParameterStatus(msg.Body)
	if err != nil {
		return
	}
	s.noteReported(name, value)
	s.mu.Lock()
	s.state.parameterStatus(string(name), string(value))
	s.mu.Unlock()
}

// noteReported takes note of a reported setting that changes how
// sqlcache must read the session's statements.
func (s *session) noteReported(name, value []byte) {
	switch string(name) {
	case "standard_conforming_strings":
		s.nonStandardStrings.Store(string(value) != "on")
	case "client_encoding":
		s.encoding.Store(clientEncodingOf(string(value)))
	}
}

// unknownReason says which of effects left the session's settings unknown.
func unknownReason(effects []cachepolicy.SessionEffect, untracked bool) string {
	for _, e := range effects {
		switch e.Kind {
		case cachepolicy.SetConfigCall:
			return "set_config()"
		case cachepolicy.Unknown:
			if e.Value == "SET" || e.Value == "" {
				break
			}
			return e.Value
		}
	}
	if untracked {
		return "a SET or RESET inside a transaction block, a batch that failed, or one that also ended a transaction"
	}
	return "a SET sqlcache cannot follow"
}
