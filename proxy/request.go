package proxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqlcache/sqlcache/cachepolicy"
	"github.com/sqlcache/sqlcache/proxy/internal/cache"
)

// request is one unit the backend answers with exactly one ReadyForQuery:
// a Query, a FunctionCall, an extended-protocol batch up to its Sync, or a
// Parse+Sync or Query that sqlcache injects itself. The client loop appends requests
// to session.queue as it relays them; the backend loop pops them at each
// ReadyForQuery. Fields marked (mu) may change after the request is queued
// (more of an extended batch arrives after a Flush) and are read under s.mu.
type request struct {
	start time.Time
	// swallow: sqlcache's own request; its reply is not relayed.
	swallow bool
	// own: one of sqlcache's own swallowed queries (sendOwnQuery),
	// collecting its rows. Backend loop only.
	own ownQuery
	// reparsed: sqlcache sent a Parse of the unnamed statement ahead of
	// this batch (ensureRequest); its ParseComplete, the first of the
	// reply, is not relayed. Backend loop only, once queued.
	reparsed bool
	// closedUnnamed: sqlcache sent Close S "" ahead of this batch
	// (unnamedStale); its CloseComplete is not relayed.
	closedUnnamed bool
	// parses: (mu) the Parses this request sent, in order, with what
	// each replaced (failedParses). parsed: backend loop, how many
	// ParseCompletes came back.
	parses    []parseUndo
	parsesBuf [1]parseUndo // parses' first array
	parsed    int
	// inTx: the session was in a transaction block when this was sent.
	inTx bool

	writes        []string    // (mu) tables whose data or definition may change
	rows          []cache.Row // (mu) rows that may change (of tables not in writes)
	invalidateAll bool        // (mu) the request may change anything in the database
	catalogChange bool        // (mu) DDL: forget catalog decisions
	// unparsed: (mu) a statement sqlcache's parser could not read; if the
	// backend ran it, it may have changed anything.
	unparsed bool
	// mayWrite: (mu) something in the request may have written, directly
	// or through functions and triggers: after it commits, this session
	// reads the cache only once the change stream has caught up with it.
	mayWrite bool
	effects  []cachepolicy.SessionEffect // (mu) session changes, applied at ReadyForQuery
	// txControl: (mu) it ran BEGIN, COMMIT, ROLLBACK or the like, so its
	// effects may have been rolled back even if it ends idle and clean.
	txControl bool
	// roleDefaults: (mu) it changed the settings sessions log in with.
	roleDefaults bool
	// For the open transaction block (trackBlock): opens, (mu) its first
	// statement is a BEGIN that Analysis.OpensBlock accepts; dirty, (mu)
	// it ran a statement other than that opening BEGIN or a read the
	// cache would answer (decided cacheable); ran, (mu) how many
	// statements it ran.
	opens, dirty bool
	ran          int

	fill *fillState // capturing the answer for the cache, or nil
	// candidate: (mu) the first cacheable-candidate plan the request
	// runs; a notice during the request marks it noisy (session.noticed).
	candidate *plan

	failed bool // backend loop: an ErrorResponse was seen
}

// classify adds what a statement does to r: if row is not nil, the
// statement writes only that row; if bound is not nil, it is the
// statement's session effects with its parameters' values in
// (boundEffects). The caller holds s.mu if r is queued.
func (r *request) classify(p *plan, row *cache.Row, bound []cachepolicy.SessionEffect) {
	a := p.analysis
	if row != nil {
		r.rows = append(r.rows, *row)
	} else {
		r.writes = append(r.writes, a.Writes...)
		if p.decided {
			r.writes = append(r.writes, p.writeBases...)
		}
	}
	r.unparsed = r.unparsed || a.ParseError != nil
	if a.Candidate && r.candidate == nil {
		r.candidate = p
	}
	// A SELECT whose functions were found cacheable cannot write, and
	// writes that change nothing but the tables named are invalidated
	// here, with no need to wait for the change stream.
	// One not cached may run user code through its views or policies.
	r.mayWrite = r.mayWrite || (mayWrite(a) || a.Candidate && p.decided) && !(p.decided && (p.decision.Cacheable || p.writesOnly))
	r.invalidateAll = r.invalidateAll || a.InvalidateAll
	r.catalogChange = r.catalogChange || a.CatalogChange
	r.txControl = r.txControl || a.Transaction
	r.roleDefaults = r.roleDefaults || a.RoleDefaults
	session := a.Session
	if bound != nil {
		session = bound
	}
	r.effects = appendEffects(r.effects, session)
	switch {
	case r.ran == 0 && a.OpensBlock:
		r.opens = true
	case !(a.Candidate && p.decided && p.decision.Cacheable):
		r.dirty = true
	}
	r.ran++
	if p.changesCatalog != "" {
		r.invalidateAll, r.catalogChange = true, true
	}
	if p.setsSettings != "" {
		r.effects = append(r.effects, cachepolicy.SessionEffect{Kind: cachepolicy.Unknown, Value: "ran " + p.setsSettings + ", which may change settings"})
	}
}

// unreadableRequest is a request for something that may change anything
// (request.unreadable): a FunctionCall.
func unreadableRequest() *request {
	r := &request{}
	r.unreadable()
	return r
}

// unreadable records a statement sqlcache could not read (too large,
// malformed, of a prepared statement it does not know, a FunctionCall):
// it may change anything, the session's settings included.
// The caller holds s.mu if r is queued.
func (r *request) unreadable() {
	r.invalidateAll, r.mayWrite = true, true
	r.effects = append(r.effects, cachepolicy.SessionEffect{Kind: cachepolicy.Unknown, Value: "a query sqlcache could not read"})
}

// appendEffects appends effects to dst, each that takes its value from a
// parameter not bound in (SessionEffect.Param) as a set_config() call:
// what it set is not known.
func appendEffects(dst, effects []cachepolicy.SessionEffect) []cachepolicy.SessionEffect {
	for _, e := range effects {
		if e.Param > 0 {
			e = cachepolicy.SessionEffect{Kind: cachepolicy.SetConfigCall, Name: e.Name}
		}
		dst = append(dst, e)
	}
	return dst
}

// fillState captures a miss's answer as it is relayed: the messages from
// the RowDescription (or first DataRow) through the CommandComplete.
type fillState struct {
	f     *cache.Fill
	store *cache.Store // f's
	buf   []byte
	// budget bounds what all fills hold in buf together; held is what
	// this one took of it.
	budget *captureBudget
	held   int
	// pooled holds buf's array while it is in use, to go back to
	// fillBufs (release).
	pooled  *[]byte
	started bool
	aborted bool
	// describe: the answer is a statement description (ParameterDescription
	// and RowDescription or NoData), not rows.
	describe bool
	max      int
	begun    time.Time
}

// capture looks at one backend message of the request being filled.
func (f *fillState) capture(typ byte, raw []byte) {
	if f.aborted {
		return
	}
	switch typ {
	case 't', 'n':
		if !f.describe {
			f.abort()
			return
		}
		fallthrough
	case 'T', 'D', 'C':
		if raw == nil || len(f.buf)+len(raw) > f.max || !f.budget.take(len(raw)) {
			f.abort()
			return
		}
		f.held += len(raw)
		f.started = true
		if f.pooled == nil {
			f.pooled = fillBufs.Get().(*[]byte)
			f.buf = (*f.pooled)[:0]
		}
		f.buf = append(f.buf, raw...)
	case '1', '2':
		// ParseComplete and BindComplete are synthesized on a hit.
		if f.started {
			f.abort()
		}
	default:
		// Errors, notices, notifications, portal suspension: the
		// answer is not a plain result.
		f.abort()
	}
}

func (f *fillState) abort() {
	f.aborted = true
	// Sessions waiting for this answer need not wait for the rest of a
	// reply that will not be stored (a large one may take long, or wait
	// for a client that does not read).
	if f.store != nil {
		f.store.Abort(f.f)
	}
	f.release()
}

// fillBufs recycles the buffers answers are captured in: the store keeps
// a copy (cache.Store.Commit), so a buffer is free again when its fill
// ends.
var fillBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledFill bounds the buffers fillBufs keeps: a rare large answer's
// is left to the collector.
const maxPooledFill = 64 << 10

// release gives f's buffer back to fillBufs; f.buf must no longer be
// used.
func (f *fillState) release() {
	f.budget.give(f.held)
	f.held = 0
	if f.pooled != nil && cap(f.buf) <= maxPooledFill {
		*f.pooled = f.buf[:0]
		fillBufs.Put(f.pooled)
	}
	f.pooled, f.buf = nil, nil
}

// mayWrite reports whether a statement can change data, allowing for
// functions and triggers: anything that writes a relation, may change
// anything (DO, CALL, what the parser does not classify), or calls a
// function, which may write (until the catalog shows it is built in). A
// SELECT ... FOR UPDATE, LOCK, SHOW, VACUUM or a SET cannot.
func mayWrite(a *cachepolicy.Analysis) bool {
	return len(a.Writes) > 0 || a.InvalidateAll || a.ParseError != nil || len(a.Calls) > 0
}

// captureBudget bounds the bytes that answers being captured for the
// cache hold together (fillState.buf), outside the store's own budget:
// many sessions each reading a large cacheable answer slowly would
// otherwise hold max_entry_bytes each. A fill past it is relayed without
// being stored. A nil budget takes everything.
type captureBudget struct {
	used atomic.Int64
	max  int64
}

// take reserves n bytes, or reports that they would exceed the budget.
func (b *captureBudget) take(n int) bool {
	if b == nil {
		return true
	}
	if b.used.Add(int64(n)) > b.max {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

// give returns n bytes that take reserved.
func (b *captureBudget) give(n int) {
	if b != nil && n != 0 {
		b.used.Add(-int64(n))
	}
}
