package proxy

import (
	"sort"
	"strconv"
	"strings"

	"github.com/sqlcache/sqlcache/cachepolicy"
)

// sessionState is what, besides the SQL, decides a session's answers:
// database, login role, the role it has set, and every setting it started
// with, was told about (ParameterStatus) or set. Two sessions share cached
// answers only if their states encode to the same bytes.
//
// The backend loop changes it (at ReadyForQuery, on ParameterStatus); the
// client loop reads the encoding when it looks something up, under s.mu.
type sessionState struct {
	startup  map[string]string // from the StartupMessage, minus non-settings
	settings map[string]string // current values: startup, reported and SET
	// digest stands for the settings in cache keys; rebuilt on change.
	digest [cachepolicy.DigestSize]byte
	// unknown: the session changed its state in a way sqlcache could not
	// follow (set_config, SET inside a transaction or a failed batch): it
	// bypasses the cache until its settings are read back (readBackSQL)
	// or DISCARD ALL.
	unknown bool
	// recheck: a read-back is due, the state having been left unknown
	// by a statement since the last one.
	recheck bool
	// fromReadBack: the settings were read back when the database's
	// catalog changes (planner.changes) numbered readBackGen. The custom
	// settings read back are those that row security policies read then;
	// after a catalog change they are read back again.
	fromReadBack bool
	readBackGen  uint64
	// temp: the session made temporary objects, which can shadow tables
	// by name; it bypasses the cache until DISCARD TEMP/ALL.
	temp bool
	// loginUnknown: the settings the session logged in with (ALTER ROLE
	// … SET) are not known: they changed on the database around its
	// login, and sqlcache saw it only later (Proxy.loginDefaultsSeen).
	// It bypasses the cache for good.
	loginUnknown bool
	// pathGen counts the changes of the search path the session set
	// (set:search_path), path its last value ("" unset, else "=" and the
	// value): prepared statements parsed under another are analyzed
	// again by PostgreSQL.
	pathGen uint64
	path    string
}

// loginKey is the key in sessionState.startup of the generation of the
// settings sessions log in with (Proxy.loginGen) at the session's login:
// PostgreSQL applies ALTER ROLE … SET to new sessions only, and does not
// report most settings (search_path), so sessions that logged in before
// and after such a change must not share answers.
const loginKey = "~login"

// notSettings are startup parameters that change query results only
// through a row security policy that reads them, which keeps reads of its
// table out of the cache (policyDependsOnMore): application names often
// differ per process, and would keep sessions from sharing answers.
var notSettings = map[string]bool{"application_name": true}

func newSessionState(params map[string]string, loginGen uint64) *sessionState {
	st := &sessionState{startup: make(map[string]string), settings: make(map[string]string)}
	for k, v := range params {
		if !notSettings[k] {
			st.startup[k] = v
		}
	}
	if loginGen > 0 {
		st.startup[loginKey] = strconv.FormatUint(loginGen, 10)
	}
	if st.startup["database"] == "" {
		st.startup["database"] = st.startup["user"]
	}
	st.reset(true)
	return st
}

// reset forgets every SET, and SET ROLE and SET SESSION AUTHORIZATION
// too if roles. Reported settings stay: the backend reports what RESET
// changes back.
func (st *sessionState) reset(roles bool) {
	for k := range st.settings {
		if strings.HasPrefix(k, "set:") || roles && (k == "role" || k == "session_authorization") {
			delete(st.settings, k)
		}
	}
	for k, v := range st.startup {
		st.settings[k] = v
	}
	st.encode()
}

func (st *sessionState) set(name, value string) {
	if st.settings[name] == value {
		return
	}
	st.settings[name] = value
	st.encode()
}

// unset forgets a setting, back to what the session logged in with.
func (st *sessionState) unset(name string) {
	if _, ok := st.settings[name]; ok {
		delete(st.settings, name)
		st.encode()
	}
}

func (st *sessionState) encode() {
	path := ""
	if v, ok := st.settings["set:search_path"]; ok {
		path = "=" + v
	}
	if path != st.path {
		st.path = path
		st.pathGen++
	}
	names := make([]string, 0, len(st.settings))
	for k := range st.settings {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([][]byte, 0, 2*len(names))
	for _, k := range names {
		parts = append(parts, []byte(k), []byte(st.settings[k]))
	}
	st.digest = cachepolicy.Digest(cachepolicy.AppendKey(nil, parts...))
}

// parameterStatus records a setting the backend reported.
func (st *sessionState) parameterStatus(name, value string) {
	if name == "application_name" {
		return
	}
	st.set("ps:"+name, value)
}

// apply records the effects of a statement batch that completed outside a
// transaction without error.
func (st *sessionState) apply(effects []cachepolicy.SessionEffect) {
	for _, e := range effects {
		if e.Local && e.Kind != cachepolicy.Unknown && e.Kind != cachepolicy.SetConfigCall {
			// SET LOCAL, SET LOCAL ROLE, SET LOCAL x TO DEFAULT: they end
			// with the transaction, implicit or not, that they ran in.
			continue
		}
		switch e.Kind {
		case cachepolicy.SetVar:
			st.set("set:"+strings.ToLower(e.Name), e.Value)
		case cachepolicy.ResetVar:
			st.unset("set:" + e.Name)
		case cachepolicy.ResetAll:
			// RESET ALL leaves the role and session authorization, which
			// whatever left the settings unknown may have changed: those
			// stay to be read back.
			st.reset(false)
		case cachepolicy.SetRole:
			if e.Value == "" { // RESET ROLE: the role the session logged in with
				st.unset("role")
			} else {
				st.set("role", e.Value)
			}
		case cachepolicy.SetSessionAuthorization:
			st.set("session_authorization", e.Value)
			st.set("role", "none")
		case cachepolicy.DiscardAll:
			st.reset(true)
			st.unknown, st.temp, st.fromReadBack = false, false, false
		case cachepolicy.DiscardTemp:
			st.temp = false
		case cachepolicy.CreateTemp:
			st.temp = true
		case cachepolicy.SetConfigCall, cachepolicy.Unknown:
			st.unknown = true
		}
	}
}

// untracked records effects that did not complete cleanly outside a
// transaction, or that ran in a batch that also ended or rolled back a
// transaction: what the session's settings are now is not known for
// sure.
func (st *sessionState) untracked(effects []cachepolicy.SessionEffect) {
	for _, e := range effects {
		if e.Local && e.Kind != cachepolicy.Unknown && e.Kind != cachepolicy.SetConfigCall {
			continue // ends with its transaction, whatever happened
		}
		switch e.Kind {
		case cachepolicy.DiscardOther:
		case cachepolicy.CreateTemp:
			st.temp = true
		default:
			st.unknown = true
		}
	}
}
