package proxy

import (
	"context"
	"log/slog"
	"strings"

	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// readBackSQL reads back what decides a session's answers, for a session
// whose settings sqlcache could not follow (sessionState.unknown): after
// set_config(), a function that may set settings, DO, CALL, or a SET
// inside a transaction block. Rows of (kind, name, value):
//
//   - 's': every setting whose value the session itself set (source
//     'session'), and each custom setting that a row security policy
//     reads with current_setting('name'). Custom settings (app.tenant)
//     are placeholders that pg_settings does not list; queries that call
//     current_setting() themselves are never cached, so a policy is the
//     only way one decides a cached answer.
//   - 'r': current_user and session_user (SET ROLE, SET SESSION
//     AUTHORIZATION), which pg_settings does not list either.
//   - 't': whether the session has temporary relations or types, which
//     may shadow others by name (a function may have made them).
//
// It names only pg_catalog objects, qualified, and has no backslash (so
// standard_conforming_strings does not matter).
const readBackSQL = `SELECT 's', name, setting FROM pg_catalog.pg_settings WHERE source = 'session'
UNION ALL SELECT 'r', current_user::text, session_user::text
UNION ALL SELECT 't', 'temp', (EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())
    OR EXISTS (SELECT FROM pg_catalog.pg_type WHERE typnamespace = pg_catalog.pg_my_temp_schema()))::text
UNION ALL SELECT 's', n, pg_catalog.current_setting(n, true) FROM (` + policySettingsSQL + `) c
WHERE pg_catalog.current_setting(n, true) IS NOT NULL`

// policySettingsSQL lists, as column n, the settings that the row security
// policies of the database read with current_setting('name'). The access
// checks watch the list (accessSharedSQL): a session whose settings were
// read back must be read again once a policy reads another.
const policySettingsSQL = `SELECT DISTINCT pg_catalog.replace(m[1], '''''', '''') AS n
  FROM pg_catalog.pg_policy p,
       pg_catalog.regexp_matches(pg_catalog.pg_get_expr(p.polqual, p.polrelid), 'current_setting[(]''((?:[^'']|'''')*)''', 'gi') m`

// readBackMsg is readBackSQL as a Query message.
var readBackMsg = pgwire.AppendQuery(nil, readBackSQL)

// readBack is what a read-back request collected from its rows.
type readBack struct {
	settings [][2]string // name, value
	role     string      // current_user
	auth     string      // session_user
	sawRole  bool
	temp     bool // the session has temporary relations or types
	sawTemp  bool
	bad      bool   // a row it could not read
	gen      uint64 // the database's catalog changes when it was sent
}

// row records one DataRow of readBackSQL's answer.
func (rb *readBack) row(msg pgwire.Message) {
	if msg.Streamed() {
		rb.bad = true
		return
	}
	v, err := pgwire.DataRowValues(msg.Body)
	if err != nil || len(v) != 3 || len(v[0]) != 1 || v[1] == nil || v[2] == nil {
		rb.bad = true
		return
	}
	switch v[0][0] {
	case 's':
		rb.settings = append(rb.settings, [2]string{string(v[1]), string(v[2])})
	case 'r':
		rb.role, rb.auth, rb.sawRole = string(v[1]), string(v[2]), true
	case 't':
		rb.temp, rb.sawTemp = string(v[2]) == "true", true
	default:
		rb.bad = true
	}
}

// readBackIfNeeded queues a read-back of the session's settings ahead of
// the request about to be queued, when they became unknown since the last
// attempt and nothing is in flight: the backend then answers it first,
// and the session uses the cache again from the request after. The reply
// is swallowed. A simple Query destroys the unnamed prepared statement,
// so it is parsed again before a batch that uses it (ensureRequest).
// Client loop only; callers then write their own request.
func (s *session) readBackIfNeeded() bool {
	if !s.cacheOn {
		return true
	}
	s.mu.Lock()
	due := s.state.recheck && s.state.unknown && len(s.queue) == 0 && s.txStatus == pgwire.TxIdle
	if due {
		s.state.recheck = false
	}
	s.mu.Unlock()
	if !due {
		return true
	}
	return s.sendOwnQuery(&readBack{gen: s.changes.Load()}, readBackMsg)
}

// ownQuery is a query sqlcache sends on a session's backend connection
// for itself (sendOwnQuery), whose reply the client does not see. The
// backend loop calls row for each DataRow of the reply, then finish at
// its ReadyForQuery, of status st, with the request (failed if an
// ErrorResponse came).
type ownQuery interface {
	row(msg pgwire.Message)
	finish(s *session, r *request, st pgwire.TxStatus)
}

var (
	_ ownQuery = (*readBack)(nil)
	_ ownQuery = (*txDefaultsRead)(nil)
	_ ownQuery = snapshotQuery{}
)

// sendOwnQuery queues a request for q and writes q's Query message msg.
// It returns false if the session closed instead (draining). A simple
// Query destroys the unnamed prepared statement, so it is parsed again
// before a batch that uses it (ensureRequest). Client loop only.
func (s *session) sendOwnQuery(q ownQuery, msg []byte) bool {
	if !s.push(&request{swallow: true, own: q}) {
		return false
	}
	if st := s.stmts[""]; st != nil {
		st.onBackend = false
	}
	s.backendUnnamed = false
	// A write error surfaces at the next flush.
	s.bw.Write(msg)
	return true
}

// finish applies what the read-back request r read, at its
// ReadyForQuery with status st. Backend loop only.
func (rb *readBack) finish(s *session, r *request, st pgwire.TxStatus) {
	ok := !r.failed && !rb.bad && rb.sawRole && rb.sawTemp && st == pgwire.TxIdle
	s.mu.Lock()
	if ok {
		s.state.readBack(rb.settings, rb.role, rb.auth, rb.gen)
		s.state.temp = rb.temp
	}
	s.mu.Unlock()
	if ok {
		s.log.Debug("read the session's settings back; it uses the cache again", "settings", len(rb.settings))
		s.p.metrics.readBacks.WithLabelValues("ok").Inc()
		return
	}
	s.p.metrics.readBacks.WithLabelValues("failed").Inc()
	// Counted always, logged at Warn once per session.
	level := slog.LevelDebug
	if !s.readBackFailedLogged {
		s.readBackFailedLogged, level = true, slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "could not read the session's settings back; it bypasses the cache until DISCARD ALL or its next change of settings",
		"failed", r.failed, "malformed", rb.bad || !rb.sawRole || !rb.sawTemp, "status", string(st))
}

// readBack replaces the session's settings with what the backend reported
// (readBackSQL): the settings it set, its role and session authorization,
// read when the database's catalog changes numbered gen. Settings from the
// startup message and ParameterStatus stay.
func (st *sessionState) readBack(settings [][2]string, role, auth string, gen uint64) {
	for k := range st.settings {
		if strings.HasPrefix(k, "set:") || k == "role" || k == "session_authorization" {
			delete(st.settings, k)
		}
	}
	for _, kv := range settings {
		st.settings["set:"+strings.ToLower(kv[0])] = kv[1]
	}
	if auth != st.startup["user"] {
		st.settings["session_authorization"] = auth
	}
	// A role equal to the session user is the login's own, unless the
	// login set a default role (options=-c role=…), which SET ROLE NONE
	// would have left: then it is recorded. (ALTER ROLE … SET role, which
	// nothing reports, is not seen here.)
	if role != auth || strings.Contains(strings.ToLower(st.startup["options"]), "role") {
		st.settings["role"] = role
	}
	st.unknown, st.fromReadBack, st.readBackGen = false, true, gen
	st.encode()
}
