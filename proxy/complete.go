package proxy

import (
	"time"

	"github.com/sqlcache/sqlcache/proxy/internal/cache"
	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// invalidate drops the cached answers that r's writes, and those of the
// open transaction, may have made stale. It runs when a statement
// completes and again at ReadyForQuery; at the end of a transaction
// (commit or rollback alike) the whole transaction's writes are dropped
// again, because other sessions may have filled from the old rows while it
// was open. Backend loop only.
func (s *session) invalidate(r *request, txEnded bool) {
	var writes []string
	var rows []cache.Row
	all := s.txAll
	if r != nil {
		s.mu.Lock()
		writes, rows = r.writes, r.rows
		all = all || r.invalidateAll || r.unparsed && !r.failed
		s.mu.Unlock()
	}
	store, m := s.p.store, s.p.metrics
	if all {
		m.invalidations.WithLabelValues("unclassified").Add(float64(store.InvalidateDB(s.db)))
		m.invalidationEvents.WithLabelValues("unclassified").Inc()
	} else {
		n := 0
		for _, t := range writes {
			n += store.InvalidateTable(s.db, t)
		}
		for t := range s.txWrites {
			n += store.InvalidateTable(s.db, t)
		}
		for _, row := range rows {
			n += store.InvalidateRows(s.db, row.Table, row.Column, []string{row.Key})
		}
		for row := range s.txRows {
			n += store.InvalidateRows(s.db, row.Table, row.Column, []string{row.Key})
		}
		m.invalidations.WithLabelValues("write").Add(float64(n))
		if len(writes) > 0 || len(rows) > 0 {
			m.invalidationEvents.WithLabelValues("write").Inc()
		}
	}
	if r != nil {
		s.mu.Lock()
		s.txMayWrite = s.txMayWrite || r.mayWrite
		s.mu.Unlock()
	}
	if txEnded {
		if s.txMayWrite {
			s.mu.Lock()
			s.rywAfter = time.Now()
			s.mu.Unlock()
		}
		clear(s.txWrites)
		clear(s.txRows)
		s.txAll, s.txMayWrite = false, false
		return
	}
	for _, t := range writes {
		s.txWrites[t] = struct{}{}
	}
	for _, row := range rows {
		s.txRows[row] = struct{}{}
	}
	s.txAll = all
}

// complete applies what request r did, at its ReadyForQuery with status
// st, before the client sees that ReadyForQuery. Backend loop only.
func (s *session) complete(r *request, st pgwire.TxStatus) {
	s.invalidate(r, st == pgwire.TxIdle)
	if r == nil {
		return
	}
	s.mu.Lock()
	effects, catalogChange, inTx := r.effects, r.catalogChange, r.inTx
	if len(effects) > 0 {
		if r.failed || inTx || st != pgwire.TxIdle {
			// Inside a transaction a SET may yet be rolled back, and
			// after an error some statements ran and some did not.
			s.state.untracked(effects)
		} else {
			s.state.apply(effects)
		}
	}
	s.mu.Unlock()
	if catalogChange {
		s.p.planner.forget(s.db)
	}
	if r.fill != nil {
		s.finishFill(r, st)
	}
}

func (s *session) finishFill(r *request, st pgwire.TxStatus) {
	f := r.fill
	m := s.p.metrics
	if f.aborted || !f.started || r.failed || st != pgwire.TxIdle {
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
	s.mu.Lock()
	s.state.parameterStatus(string(name), string(value))
	s.mu.Unlock()
}
