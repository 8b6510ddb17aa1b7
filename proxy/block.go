package proxy

import (
	"bytes"
	"cmp"
	"strconv"
	"time"

	"github.com/sqlcache/sqlcache/cachepolicy"
	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// Reads inside a transaction block.
//
// A block opened by a BEGIN that leaves it at read committed
// (Analysis.OpensBlock, at a default isolation read back as read
// committed) takes a new snapshot for each statement: as long as it has
// run nothing but reads the cache would answer, it has written nothing,
// set nothing and locked nothing of its own, and each of its reads gets
// what the same read would get outside the block. Such a block is
// answered from the cache like a session outside one (with ReadyForQuery
// 'T'), and fills it. Any other statement in it (a write, SET LOCAL,
// set_config, SAVEPOINT, LOCK, SELECT … FOR UPDATE, a read that is not
// cacheable, anything sqlcache does not parse) makes the rest of the block
// relayed, since its own changes must be seen; REPEATABLE READ and
// SERIALIZABLE blocks, whose statements share one snapshot, are relayed
// whole.
//
// What the BEGIN alone does not say, the session's
// default_transaction_isolation and idle_in_transaction_session_timeout,
// is read (txDefaultsSQL) just before the first such BEGIN, outside the
// block, and again after the session's settings or the database's catalog
// (which includes role, database and server defaults: accessSharedSQL)
// changed. A hit does not reach the backend, which meanwhile counts the
// block as idle: hits stop at half the idle timeout since the backend was
// last busy, and the next read, relayed, restarts its count.

// txDefaultsSQL reads what decides how the session's next BEGIN runs. It
// names only pg_catalog functions, qualified, and reads no table.
const txDefaultsSQL = `SELECT pg_catalog.current_setting('default_transaction_isolation'), pg_catalog.current_setting('idle_in_transaction_session_timeout'), pg_catalog.current_setting('idle_session_timeout')`

var txDefaultsMsg = pgwire.AppendQuery(nil, txDefaultsSQL)

// txDefaults is what txDefaultsSQL read.
type txDefaults struct {
	known bool
	// failed: the last read failed; it is tried again only once the
	// settings or the catalog changed, not before every BEGIN.
	failed      bool
	readComm    bool          // default_transaction_isolation is read committed (or uncommitted)
	idleTimeout time.Duration // 0: none
	// sessionTimeout is idle_session_timeout (0: none): hits outside
	// blocks do not reach the backend either (sessionIdleLocked).
	sessionTimeout time.Duration
	// The session's settings digest and the database's catalog changes
	// when it was read: it stands while both are unchanged.
	digest  [cachepolicy.DigestSize]byte
	changes uint64
}

// txDefaultsRead collects the answer of a txDefaultsSQL request.
type txDefaultsRead struct {
	got      bool
	bad      bool
	defaults txDefaults
}

// row records the DataRow of txDefaultsSQL's answer.
func (d *txDefaultsRead) row(msg pgwire.Message) {
	v, err := pgwire.DataRowValues(msg.Body)
	if msg.Streamed() || err != nil || len(v) != 3 || v[0] == nil || v[1] == nil || v[2] == nil || d.got {
		d.bad = true
		return
	}
	timeout, ok := parseMillis(v[1])
	sessionTimeout, ok2 := parseMillis(v[2])
	if !ok || !ok2 {
		d.bad = true
		return
	}
	d.defaults.sessionTimeout = sessionTimeout
	iso := string(v[0])
	d.got = true
	d.defaults.readComm = iso == "read committed" || iso == "read uncommitted"
	d.defaults.idleTimeout = timeout
}

// parseMillis reads a time setting as current_setting shows it: an
// integer with a unit (ms, s, min, h, d), or none for milliseconds.
func parseMillis(v []byte) (time.Duration, bool) {
	i := bytes.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	num := v
	unit := time.Millisecond
	if i >= 0 {
		num = v[:i]
		switch string(v[i:]) {
		case "ms":
		case "s":
			unit = time.Second
		case "min":
			unit = time.Minute
		case "h":
			unit = time.Hour
		case "d":
			unit = 24 * time.Hour
		default:
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || n < 0 || n > int64(365*24*time.Hour/unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// blockState is what sqlcache knows of the session's open transaction
// block. Written by the backend loop under s.mu.
type blockState struct {
	// answerable: opened by a BEGIN that left it at read committed, with
	// the session's defaults known, and it has run nothing but reads the
	// cache would answer since.
	answerable  bool
	why         string // the bypass reason when not answerable
	idleTimeout time.Duration
	changes     uint64    // the database's catalog changes when it opened
	lastReady   time.Time // the backend's last ReadyForQuery in it
	// hits: reads in it were answered from the cache, which PostgreSQL
	// did not see take a snapshot (snapshotIfHits).
	hits bool
}

// blockWhyLocked returns why the open block's reads may not use the cache,
// or "": "transaction" for a block opened otherwise than by a BEGIN
// sqlcache reads, or aborted; "transaction_dirty" once it ran something
// other than cacheable reads; "transaction_defaults_unknown" or
// "transaction_isolation" when the session's default isolation is not
// known to be read committed; "transaction_catalog_changed" after a
// catalog change since it opened; "transaction_idle_timeout" when the
// backend must hear from the block. s.mu must be held.
func (s *session) blockWhyLocked() string {
	b := &s.block
	switch {
	case s.txStatus != pgwire.TxActive:
		return "transaction"
	case !b.answerable:
		return cmp.Or(b.why, "transaction")
	case s.changes.Load() != b.changes:
		return "transaction_catalog_changed"
	case b.idleTimeout > 0 && time.Since(b.lastReady) >= b.idleTimeout/2:
		// The backend's idle timer must be restarted by a relayed read.
		return "transaction_idle_timeout"
	}
	return ""
}

// unknownIdleLimit: while a session's idle_session_timeout is not known,
// hits outside blocks stop this long after the backend last answered.
const unknownIdleLimit = 500 * time.Millisecond

// sessionIdleLocked returns "session_idle_timeout" when the backend, which
// hits do not reach, must hear from the session outside a block: half its
// idle_session_timeout has passed since it last answered, or, that
// setting not known (txDefaultsSQL reads it), unknownIdleLimit. The read
// then relayed restarts PostgreSQL's count, as the client's own would
// directly. s.mu must be held.
func (s *session) sessionIdleLocked() string {
	idle := time.Since(s.lastReady)
	// Read for the session's settings as they are; a catalog change since
	// (which makes the transaction defaults stale) rarely changes this
	// one, which ALTER ROLE and ALTER DATABASE … SET give only to new
	// sessions. It is read again with the next relayed request.
	d := &s.txDefaults
	if d.known && d.digest == s.state.digest && !s.state.unknown {
		if t := d.sessionTimeout; t > 0 && idle >= t/2 {
			return "session_idle_timeout"
		}
		return ""
	}
	if idle >= unknownIdleLimit {
		return "session_idle_timeout"
	}
	return ""
}

// defaultsKnownLocked reports whether the session's transaction defaults
// are known and still stand. s.mu must be held.
func (s *session) defaultsKnownLocked() bool {
	return s.txDefaults.known && s.defaultsCurrentLocked()
}

// defaultsCurrentLocked reports whether the last read of the session's
// transaction defaults, successful or not, is still current: neither the
// session's settings nor the database's catalog changed since. s.mu must
// be held.
func (s *session) defaultsCurrentLocked() bool {
	d := &s.txDefaults
	return d.digest == s.state.digest && !s.state.unknown && d.changes == s.changes.Load()
}

// readDefaultsIfNeeded queues a read of the session's transaction defaults
// ahead of a request that opens a block (opens reports whether it does),
// the session's first request, or one after the backend was idle
// unknownIdleLimit, when they are not known and nothing is in flight, so
// that it runs
// outside any block: if it fails nothing of the client's is affected, and
// the block is relayed. Client loop only; callers then write their own
// request.
func (s *session) readDefaultsIfNeeded(opens func() bool) bool {
	if !s.cacheOn {
		return true
	}
	s.mu.Lock()
	// With settings unknown no block is answered, whatever the defaults.
	due := len(s.queue) == 0 && s.txStatus == pgwire.TxIdle && !s.state.unknown &&
		!((s.txDefaults.known || s.txDefaults.failed) && s.defaultsCurrentLocked())
	// A new session learns its idle_session_timeout (sessionIdleLocked)
	// at once, and one whose reads were held back by an unknown one
	// (after its settings changed) does now.
	learn := !s.txDefaults.known && !s.txDefaults.failed || time.Since(s.lastReady) >= unknownIdleLimit
	s.mu.Unlock()
	if !due || !learn && !opens() {
		return true
	}
	return s.sendOwnQuery(&txDefaultsRead{}, txDefaultsMsg)
}

// batchOpensBlock reports whether the batch held starts with running a
// BEGIN that Analysis.OpensBlock accepts (pgjdbc sends its BEGIN in the
// batch of the block's first statement), as far as its first message
// says: the BEGIN's Parse, or the Bind of a statement parsed before.
func (s *session) batchOpensBlock() bool {
	b := &s.batch
	if len(b.msgs) == 0 {
		return false
	}
	switch b.msgs[0].typ {
	case pgwire.MsgParse:
		p, err := pgwire.ParseParse(b.body(0))
		return err == nil && (*s.sqlPlan(p.Query)).analysis.OpensBlock
	case pgwire.MsgBind:
		bind, err := pgwire.ParseBind(b.body(0))
		if err != nil {
			return false
		}
		st := s.stmts[string(bind.Statement)]
		return st != nil && (*st.plan).analysis.OpensBlock
	}
	return false
}

// finish records what the txDefaultsSQL request r read, at its
// ReadyForQuery with status st. Backend loop only.
func (d *txDefaultsRead) finish(s *session, r *request, st pgwire.TxStatus) {
	ok := !r.failed && !d.bad && d.got && st == pgwire.TxIdle
	s.mu.Lock()
	if ok {
		d.defaults.known = true
	} else {
		d.defaults = txDefaults{failed: true}
	}
	d.defaults.digest = s.state.digest
	d.defaults.changes = s.changes.Load()
	s.txDefaults = d.defaults
	s.mu.Unlock()
	result := "ok"
	if !ok {
		result = "failed"
		s.log.Debug("could not read the session's transaction defaults; its transaction blocks are relayed", "failed", r.failed, "malformed", d.bad || !d.got)
	}
	s.p.metrics.txDefaultsReads.WithLabelValues(result).Inc()
}

// trackBlock follows the open transaction block through request r, which
// ended with status st: whether the block may still be answered from the
// cache. It runs at each ReadyForQuery, before pop records st. Backend
// loop only.
func (s *session) trackBlock(r *request, st pgwire.TxStatus) {
	if !s.cacheOn {
		// Nothing is answered: the relay pays nothing for it.
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &s.block
	if st != pgwire.TxActive {
		*b = blockState{}
		return
	}
	b.lastReady = time.Now()
	if r != nil && r.swallow {
		// sqlcache's own requests (read-backs, reads of the defaults)
		// are sent only outside blocks, and read nothing of the client's.
		return
	}
	opened := s.txStatus == pgwire.TxIdle // r opened the block
	switch {
	case r == nil || opened && !r.opens || !opened && r.opens:
		// Opened otherwise than by a BEGIN sqlcache reads (with other
		// options or statements), or a BEGIN inside the block, which
		// only warns.
		b.answerable, b.why = false, "transaction"
	case r.dirty || r.invalidateAll || r.unparsed || r.failed:
		b.answerable, b.why = false, "transaction_dirty"
	case opened:
		d := s.txDefaults
		switch {
		case !s.defaultsKnownLocked():
			b.why = "transaction_defaults_unknown"
		case !d.readComm:
			b.why = "transaction_isolation"
		default:
			b.answerable = true
		}
		b.idleTimeout, b.changes = d.idleTimeout, s.changes.Load()
	}
}

// fillable reports whether an answer that ended with status st may be
// stored: outside a block, or in a block still answerable after it
// (trackBlock ran for it). Backend loop only.
func (s *session) fillable(st pgwire.TxStatus) bool {
	if st == pgwire.TxIdle {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return st == pgwire.TxActive && s.block.answerable && s.changes.Load() == s.block.changes
}

// blockHit is blockWhyLocked, taking s.mu, for a read about to be
// answered from the cache in the block: if it may be, the block has had a
// hit.
func (s *session) blockHit() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	why := s.blockWhyLocked()
	if why == "" {
		s.block.hits = true
	}
	return why
}

// snapshotIfHits sends, ahead of the first request relayed after reads in
// the block were answered from the cache (a, or the batch being relayed
// if a is nil), a query of sqlcache's own that takes a snapshot, as those
// reads would have: PostgreSQL refuses SET TRANSACTION after a query
// (25001), and the block must not become read-write or repeatable read
// after reads the client saw answered. Whatever the request: one that
// takes no snapshot (LOCK, SHOW, a Flush in mid-batch) may be followed by
// a SET TRANSACTION, and a COMMIT AND CHAIN would carry the hits into a
// new transaction that has run nothing. Not ahead of a plain COMMIT or
// ROLLBACK, which leaves nothing open. It returns false if the session
// closed instead. Client loop only.
func (s *session) snapshotIfHits(a *cachepolicy.Analysis) bool {
	if !s.cacheOn {
		return true
	}
	s.mu.Lock()
	// With requests in flight the block may end before this one runs (a
	// pipelined COMMIT; BEGIN), and a read relayed among them takes a
	// snapshot of its own.
	hits := s.block.hits && len(s.queue) == 0 && s.txStatus == pgwire.TxActive
	s.mu.Unlock()
	if !hits {
		return true
	}
	if a != nil && a.EndsBlock {
		return true
	}
	s.mu.Lock()
	s.block.hits = false
	s.mu.Unlock()
	return s.sendOwnQuery(snapshotQuery{}, snapshotMsg)
}

// snapshotQuery is snapshotIfHits' query; its reply is not looked at.
type snapshotQuery struct{}

var snapshotMsg = pgwire.AppendQuery(nil, "SELECT 1")

func (snapshotQuery) row(pgwire.Message)                         {}
func (snapshotQuery) finish(*session, *request, pgwire.TxStatus) {}

// blockMayStayAnswerable reports whether the batch being relayed may leave
// the session in an answerable block: it opens one, or the session is in
// one. Client loop only.
func (s *session) blockMayStayAnswerable() bool {
	if s.cur.opens && !s.cur.dirty {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txStatus == pgwire.TxActive && s.block.answerable
}
