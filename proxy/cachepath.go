package proxy

import (
	"context"
	"time"

	"github.com/sqlcache/sqlcache/cachepolicy"
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
}

// maxSessionPlans bounds a session's own plan map.
const maxSessionPlans = 1000

// sqlPlan returns where this session holds the plan of a SQL text, so
// that a decision made once is found again without a lookup.
func (s *session) sqlPlan(sql []byte) **plan {
	if p, ok := s.plans[string(sql)]; ok {
		return p
	}
	p := s.p.planner.analyze(s.db, string(sql))
	if len(s.plans) >= maxSessionPlans {
		clear(s.plans)
	}
	held := &p
	s.plans[p.sql] = held
	return held
}

// query handles a simple Query: answered from the cache, or relayed (and
// perhaps filled).
func (s *session) query(msg pgwire.Message) error {
	if err := s.forwardBatch(); err != nil {
		return err
	}
	r := &request{}
	if !msg.Streamed() {
		if sql, err := pgwire.QueryBody(msg.Body); err == nil {
			held := s.sqlPlan(sql)
			p := *held
			r.classify(p.analysis)
			if p.analysis.Candidate {
				s.keyBuf = s.appendKeyPrefix(s.keyBuf[:0], 'Q')
				s.keyBuf = cachepolicy.AppendKey(s.keyBuf, sql)
				hit, fill := s.lookup(held, s.keyBuf, nil)
				if hit {
					return nil
				}
				r.fill = fill
			}
			if p.analysis.Statements > 0 {
				// A simple Query destroys the unnamed statement.
				delete(s.stmts, "")
			}
		}
	}
	if !s.push(r) {
		if r.fill != nil {
			s.p.store.Abort(r.fill.f)
		}
		return errHandled
	}
	if err := s.relay(s.bw, s.cr, msg); err != nil {
		return err
	}
	s.nToBackend += msg.Len + 5
	return nil
}

// appendKeyPrefix appends what every key of this session starts with: the
// protocol, backend, database and the session's encoded state.
func (s *session) appendKeyPrefix(dst []byte, proto byte) []byte {
	s.mu.Lock()
	state := s.state.encoded
	s.mu.Unlock()
	return cachepolicy.AppendKey(dst, protoKey[proto], s.p.backendKey, state)
}

// protoKey distinguishes answers to a simple Query from those to an
// extended batch, which differ in the messages stored.
var protoKey = map[byte][]byte{'Q': {'Q'}, 'E': {'E'}, 'S': {'S'}}

// cacheable reports whether the session may use the cache now, or why not.
func (s *session) cacheable() (bool, string) {
	if !s.p.cacheEnabled {
		return false, "disabled"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(s.queue) > 0:
		return false, "pipelined"
	case s.txStatus != pgwire.TxIdle:
		return false, "transaction"
	case s.state.unknown:
		return false, "session_state_unknown"
	case s.state.temp:
		return false, "temp_tables"
	}
	return true, ""
}

// lookup answers a candidate from the cache when it can. On a hit it has
// written the answer (prefix, the stored messages, ReadyForQuery) and
// returns true. On a miss it may return a fill to capture the answer.
func (s *session) lookup(held **plan, key []byte, prefix []byte) (bool, *fillState) {
	m := s.p.metrics
	ok, why := s.cacheable()
	if !ok {
		m.bypasses.WithLabelValues(why).Inc()
		return false, nil
	}
	p := s.p.planner.decide(context.Background(), s.db, *held)
	*held = p
	if !p.decision.Cacheable {
		m.bypasses.WithLabelValues("uncacheable").Inc()
		return false, nil
	}
	store := s.p.store
	if v := store.Get(key); v != nil {
		m.hits.Inc()
		return s.answer(prefix, v), nil
	}
	if wait := store.Wait(key); wait != nil {
		// Another session is fetching this very answer: wait for it
		// rather than ask the backend twice.
		select {
		case <-wait:
		case <-time.After(fillWaitLimit):
		}
		if v := store.Get(key); v != nil {
			m.hits.Inc()
			m.stampedeWaits.Inc()
			return s.answer(prefix, v), nil
		}
	}
	m.misses.Inc()
	label := p.sql
	if len(label) > 200 {
		label = label[:200]
	}
	f := store.Begin(key, label, s.db, p.decision.Tables, p.decision.TTL)
	return false, &fillState{f: f, max: s.p.maxEntryBytes, begun: time.Now()}
}

// fillWaitLimit bounds how long a miss waits for another session's fill of
// the same key before asking the backend itself.
const fillWaitLimit = 10 * time.Second

var readyIdle = pgwire.AppendReadyForQuery(nil, pgwire.TxIdle)

// answer writes a cached answer. It returns false if the write failed; the
// next read from the client then ends the session.
func (s *session) answer(prefix, value []byte) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.cw.Write(prefix)
	s.cw.Write(value)
	s.cw.Write(readyIdle)
	s.nToClient += len(prefix) + len(value) + len(readyIdle)
	s.cw.Flush()
	return true
}
