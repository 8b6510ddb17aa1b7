package cachepolicy

import (
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// SessionEffectKind says how a statement changes the session it runs in.
type SessionEffectKind int

const (
	// SetVar is SET [SESSION|LOCAL] name = value, SET name TO value,
	// SET TIME ZONE x (name "timezone"), SET SCHEMA 'x' ("search_path"),
	// SET NAMES x ("client_encoding"), SET TRANSACTION ... (Local, names
	// "transaction_isolation", "transaction_read_only",
	// "transaction_deferrable") and SET SESSION CHARACTERISTICS AS
	// TRANSACTION ... (the same names with a "default_" prefix).
	SetVar SessionEffectKind = iota
	// ResetVar is RESET name or SET name TO DEFAULT.
	ResetVar
	// ResetAll is RESET ALL. Like Postgres it leaves ROLE, SESSION
	// AUTHORIZATION and the transaction settings alone (GUC_NO_RESET_ALL).
	ResetAll
	// SetRole is SET ROLE x; Value is "" for SET ROLE NONE, RESET ROLE and
	// SET ROLE TO DEFAULT.
	SetRole
	// SetSessionAuthorization is SET SESSION AUTHORIZATION x; Value is ""
	// for RESET SESSION AUTHORIZATION and SET SESSION AUTHORIZATION DEFAULT.
	SetSessionAuthorization
	// DiscardAll is DISCARD ALL: settings, role, temporary tables, prepared
	// statements and cursors all go.
	DiscardAll
	// DiscardTemp is DISCARD TEMP.
	DiscardTemp
	// DiscardOther is DISCARD PLANS or DISCARD SEQUENCES (Value "plans" or
	// "sequences").
	DiscardOther
	// CreateTemp is the creation of a temporary table, view or sequence,
	// or of a type in pg_temp (Name is its name): it can shadow other
	// relations or types of that name for the rest of the session.
	CreateTemp
	// SetConfigCall is a call of set_config() anywhere in the string: the
	// session's settings are unknown. When the arguments are constants
	// (the value may be a parameter: Param), Name, Value and Local hold
	// them, as a hint only.
	SetConfigCall
	// Unknown is a statement that may change the session in a way the
	// analysis cannot model: DO, CALL, LOAD, SET ... FROM CURRENT,
	// SET TRANSACTION SNAPSHOT, or a SET value it cannot render. Name is
	// the setting when there is one; Value names the statement.
	Unknown
)

var sessionEffectKindNames = [...]string{
	SetVar:                  "SetVar",
	ResetVar:                "ResetVar",
	ResetAll:                "ResetAll",
	SetRole:                 "SetRole",
	SetSessionAuthorization: "SetSessionAuthorization",
	DiscardAll:              "DiscardAll",
	DiscardTemp:             "DiscardTemp",
	DiscardOther:            "DiscardOther",
	CreateTemp:              "CreateTemp",
	SetConfigCall:           "SetConfigCall",
	Unknown:                 "Unknown",
}

func (k SessionEffectKind) String() string {
	if k >= 0 && int(k) < len(sessionEffectKindNames) {
		return sessionEffectKindNames[k]
	}
	return "SessionEffectKind(" + strconv.Itoa(int(k)) + ")"
}

// SessionEffect is one change a statement makes to its session.
type SessionEffect struct {
	Kind SessionEffectKind
	// Name is the setting's name in lower case (SetVar, ResetVar,
	// SetConfigCall, Unknown) or the relname (CreateTemp).
	Name string
	// Value is the value list as Postgres flattens it for the setting,
	// e.g. `"$user", public` for search_path; the role name for SetRole
	// and SetSessionAuthorization.
	Value string
	// Local is SET LOCAL (and SET TRANSACTION): the effect ends with the
	// transaction.
	Local bool
	// Param, if not zero, says that Value is the statement's parameter of
	// that number (from 1), to be read from the Bind that runs it: a
	// SetVar of `SELECT set_config('app.tenant', $1, false)`. A caller
	// that cannot read it must take the effect as Unknown.
	Param int
}

// listQuoteGUCs are the settings Postgres marks GUC_LIST_QUOTE: SET quotes
// each element of their value list as an identifier.
var listQuoteGUCs = map[string]bool{
	"search_path":               true,
	"temp_tablespaces":          true,
	"local_preload_libraries":   true,
	"session_preload_libraries": true,
	"shared_preload_libraries":  true,
	"unix_socket_directories":   true,
}

// sessionEffects returns how stmt changes the session, set_config aside.
func sessionEffects(stmt *pg_query.Node) []SessionEffect {
	switch s := stmt.GetNode().(type) {
	case *pg_query.Node_VariableSetStmt:
		return setEffects(s.VariableSetStmt)
	case *pg_query.Node_DiscardStmt:
		return []SessionEffect{discardEffect(s.DiscardStmt.GetTarget())}
	case *pg_query.Node_ExplainStmt:
		if explainAnalyze(s.ExplainStmt) {
			return sessionEffects(s.ExplainStmt.GetQuery())
		}
		return nil
	case *pg_query.Node_DoStmt:
		return []SessionEffect{{Kind: Unknown, Value: "DO"}}
	case *pg_query.Node_CallStmt:
		return []SessionEffect{{Kind: Unknown, Value: "CALL"}}
	case *pg_query.Node_LoadStmt:
		// A loaded library can define settings and install hooks.
		return []SessionEffect{{Kind: Unknown, Value: "LOAD"}}
	}
	if rv := createdRelation(stmt); isTemp(rv) {
		return []SessionEffect{{Kind: CreateTemp, Name: rv.GetRelname()}}
	}
	if name, ok := createdTempType(stmt); ok {
		return []SessionEffect{{Kind: CreateTemp, Name: name}}
	}
	return nil
}

// createdTempType returns the name of the type a CREATE DOMAIN or CREATE
// TYPE makes in pg_temp. PostgreSQL looks type names up there first, so
// such a type shadows a permanent one of its name in this session
// (functions and operators in pg_temp are never found unqualified).
func createdTempType(stmt *pg_query.Node) (string, bool) {
	var names []*pg_query.Node
	switch s := stmt.GetNode().(type) {
	case *pg_query.Node_CreateDomainStmt:
		names = s.CreateDomainStmt.GetDomainname()
	case *pg_query.Node_CreateEnumStmt:
		names = s.CreateEnumStmt.GetTypeName()
	case *pg_query.Node_CreateRangeStmt:
		names = s.CreateRangeStmt.GetTypeName()
	case *pg_query.Node_DefineStmt:
		if s.DefineStmt.GetKind() != pg_query.ObjectType_OBJECT_TYPE {
			return "", false
		}
		names = s.DefineStmt.GetDefnames()
	case *pg_query.Node_CompositeTypeStmt:
		rv := s.CompositeTypeStmt.GetTypevar()
		return rv.GetRelname(), strings.HasPrefix(rv.GetSchemaname(), "pg_temp")
	default:
		return "", false
	}
	if len(names) < 2 {
		return "", false
	}
	return lastString(names, 0), strings.HasPrefix(lastString(names, 1), "pg_temp")
}

// setEffects models SET and RESET.
func setEffects(s *pg_query.VariableSetStmt) []SessionEffect {
	name := strings.ToLower(s.GetName())
	switch s.GetKind() {
	case pg_query.VariableSetKind_VAR_SET_VALUE:
		return []SessionEffect{setValue(name, s.GetArgs(), s.GetIsLocal())}
	case pg_query.VariableSetKind_VAR_SET_DEFAULT, pg_query.VariableSetKind_VAR_RESET:
		return []SessionEffect{resetValue(name, s.GetIsLocal())}
	case pg_query.VariableSetKind_VAR_RESET_ALL:
		return []SessionEffect{{Kind: ResetAll}}
	case pg_query.VariableSetKind_VAR_SET_MULTI:
		return setMulti(s)
	}
	return []SessionEffect{{Kind: Unknown, Name: name, Value: "SET FROM CURRENT", Local: s.GetIsLocal()}}
}

func setValue(name string, args []*pg_query.Node, local bool) SessionEffect {
	value, ok := flatten(name, args)
	switch {
	case !ok:
		return SessionEffect{Kind: Unknown, Name: name, Value: "SET", Local: local}
	case name == "role":
		// SET ROLE NONE (check_role compares exactly "none") stays "none":
		// the session user, which is not RESET ROLE's login default
		// (options=-c role=…, ALTER ROLE … SET role).
		return SessionEffect{Kind: SetRole, Value: value, Local: local}
	case name == "session_authorization":
		return SessionEffect{Kind: SetSessionAuthorization, Value: value, Local: local}
	}
	return SessionEffect{Kind: SetVar, Name: name, Value: value, Local: local}
}

func resetValue(name string, local bool) SessionEffect {
	switch name {
	case "role":
		return SessionEffect{Kind: SetRole, Local: local}
	case "session_authorization":
		return SessionEffect{Kind: SetSessionAuthorization, Local: local}
	}
	return SessionEffect{Kind: ResetVar, Name: name, Local: local}
}

// setMulti models SET TRANSACTION, SET SESSION CHARACTERISTICS AS
// TRANSACTION and SET TRANSACTION SNAPSHOT, the way Postgres's
// ExecSetVariableStmt turns them into settings.
func setMulti(s *pg_query.VariableSetStmt) []SessionEffect {
	var prefix string
	local := true
	switch s.GetName() {
	case "TRANSACTION":
	case "SESSION CHARACTERISTICS":
		prefix, local = "default_", false
	default: // TRANSACTION SNAPSHOT: the transaction sees another snapshot.
		return []SessionEffect{{Kind: Unknown, Name: "transaction_snapshot", Value: "SET TRANSACTION SNAPSHOT", Local: true}}
	}
	var out []SessionEffect
	for _, arg := range s.GetArgs() {
		d := arg.GetDefElem()
		name := prefix + d.GetDefname()
		value, ok := flatten(name, []*pg_query.Node{d.GetArg()})
		if !ok {
			out = append(out, SessionEffect{Kind: Unknown, Name: name, Value: "SET", Local: local})
			continue
		}
		out = append(out, SessionEffect{Kind: SetVar, Name: name, Value: value, Local: local})
	}
	return out
}

// flatten renders a SET value list the way Postgres's
// flatten_set_variable_args does, for the constants SET allows. It gives up
// (false) on anything else, such as SET TIME ZONE INTERVAL '...'.
func flatten(name string, args []*pg_query.Node) (string, bool) {
	if len(args) == 0 {
		return "", false
	}
	parts := make([]string, 0, len(args))
	for _, arg := range args {
		c := arg.GetAConst()
		switch v := c.GetVal().(type) {
		case *pg_query.A_Const_Ival:
			parts = append(parts, strconv.FormatInt(int64(v.Ival.GetIval()), 10))
		case *pg_query.A_Const_Fval:
			parts = append(parts, v.Fval.GetFval())
		case *pg_query.A_Const_Sval:
			s := v.Sval.GetSval()
			if listQuoteGUCs[name] {
				s = quoteIdent(s)
			}
			parts = append(parts, s)
		default:
			return "", false
		}
	}
	return strings.Join(parts, ", "), true
}

// quoteIdent quotes s as Postgres's quote_identifier does: unless it is
// lower-case letters, digits and underscores, not starting with a digit,
// and not a keyword other than an unreserved one.
func quoteIdent(s string) string {
	if plainIdent(s) && !reservedWord(s) {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func plainIdent(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// reservedWord reports whether s is a keyword that must be quoted, asking
// Postgres's own scanner so that the keyword list matches the parser's.
func reservedWord(s string) bool {
	res, err := pg_query.Scan(s)
	if err != nil || len(res.GetTokens()) != 1 {
		return true // quoting a plain name is harmless; not quoting a keyword is not
	}
	switch res.GetTokens()[0].GetKeywordKind() {
	case pg_query.KeywordKind_NO_KEYWORD, pg_query.KeywordKind_UNRESERVED_KEYWORD:
		return false
	}
	return true
}

func discardEffect(target pg_query.DiscardMode) SessionEffect {
	switch target {
	case pg_query.DiscardMode_DISCARD_ALL:
		return SessionEffect{Kind: DiscardAll}
	case pg_query.DiscardMode_DISCARD_TEMP:
		return SessionEffect{Kind: DiscardTemp}
	case pg_query.DiscardMode_DISCARD_PLANS:
		return SessionEffect{Kind: DiscardOther, Value: "plans"}
	case pg_query.DiscardMode_DISCARD_SEQUENCES:
		return SessionEffect{Kind: DiscardOther, Value: "sequences"}
	}
	return SessionEffect{Kind: Unknown, Value: "DISCARD"}
}

// setConfigStatement returns the effect of stmt when it is nothing but
// one set_config() call with a constant name, a constant or parameter
// value and a constant is_local, SELECTed once: SELECT set_config('x',
// $1, false). Such a statement, if it succeeds, sets exactly that, once,
// as SET does. Anything more (FROM, WHERE, other columns, set operations)
// may run it any number of times, so it is not.
func setConfigStatement(stmt *pg_query.Node) (SessionEffect, bool) {
	sel := stmt.GetSelectStmt()
	if sel == nil || len(sel.GetTargetList()) != 1 || sel.GetOp() != pg_query.SetOperation_SETOP_NONE ||
		len(sel.GetFromClause()) > 0 || sel.GetWhereClause() != nil || len(sel.GetGroupClause()) > 0 ||
		sel.GetHavingClause() != nil || len(sel.GetSortClause()) > 0 || sel.GetLimitCount() != nil ||
		sel.GetLimitOffset() != nil || sel.GetWithClause() != nil || len(sel.GetDistinctClause()) > 0 ||
		sel.GetIntoClause() != nil || len(sel.GetLockingClause()) > 0 || len(sel.GetWindowClause()) > 0 ||
		len(sel.GetValuesLists()) > 0 {
		return SessionEffect{}, false
	}
	fc := sel.GetTargetList()[0].GetResTarget().GetVal().GetFuncCall()
	args := fc.GetArgs()
	if fc == nil || funcName(fc) != "set_config" || len(args) != 3 || fc.GetAggFilter() != nil || fc.GetOver() != nil ||
		len(fc.GetFuncname()) > 2 || len(fc.GetFuncname()) == 2 && lastString(fc.GetFuncname(), 1) != "pg_catalog" {
		return SessionEffect{}, false
	}
	e := setConfigEffect(fc)
	switch {
	case e.Name == "":
		return SessionEffect{}, false
	case e.Name == "role" || e.Name == "session_authorization":
		// As SET ROLE does; from a parameter, the value is not read in
		// (SetConfigCall), since SET ROLE's rules ("none") apply to it.
		if e.Param > 0 {
			return SessionEffect{}, false
		}
		e = setValue(e.Name, []*pg_query.Node{pg_query.MakeAConstStrNode(e.Value, 0)}, e.Local)
		return e, true
	}
	e.Kind = SetVar
	return e, true
}

// textTypes are the types a set_config() value parameter may be cast to
// and still arrive as it was bound.
var textTypes = map[string]bool{"text": true, "varchar": true}

// setConfigEffect records a set_config(name, value, is_local) call, with
// its arguments when the name and is_local are constants and the value is
// a constant or a parameter ($1, $1::text: Param).
func setConfigEffect(fc *pg_query.FuncCall) SessionEffect {
	e := SessionEffect{Kind: SetConfigCall}
	args := fc.GetArgs()
	if len(args) != 3 {
		return e
	}
	name, ok := stringConst(args[0])
	local := args[2].GetAConst().GetBoolval()
	if !ok || local == nil {
		return e
	}
	hint := SessionEffect{Kind: SetConfigCall, Name: strings.ToLower(name), Local: local.GetBoolval()}
	if value, ok := stringConst(args[1]); ok {
		hint.Value = value
		return hint
	}
	value := args[1]
	if tc := value.GetTypeCast(); tc != nil && textTypes[lastString(tc.GetTypeName().GetNames(), 0)] {
		value = tc.GetArg()
	}
	if p := value.GetParamRef(); p != nil && p.GetNumber() > 0 {
		hint.Param = int(p.GetNumber())
		return hint
	}
	return e
}

// createdRelation returns the relation a CREATE TABLE, CREATE TABLE AS,
// SELECT INTO, CREATE VIEW or CREATE SEQUENCE makes, or nil.
func createdRelation(stmt *pg_query.Node) *pg_query.RangeVar {
	switch s := stmt.GetNode().(type) {
	case *pg_query.Node_CreateStmt:
		return s.CreateStmt.GetRelation()
	case *pg_query.Node_CreateTableAsStmt:
		return s.CreateTableAsStmt.GetInto().GetRel()
	case *pg_query.Node_SelectStmt:
		return s.SelectStmt.GetIntoClause().GetRel()
	case *pg_query.Node_ViewStmt:
		return s.ViewStmt.GetView()
	case *pg_query.Node_CreateSeqStmt:
		return s.CreateSeqStmt.GetSequence()
	}
	return nil
}

// isTemp reports whether rv names a temporary relation: TEMP/TEMPORARY or
// the pg_temp schema.
func isTemp(rv *pg_query.RangeVar) bool {
	if rv == nil {
		return false
	}
	return rv.GetRelpersistence() == "t" || strings.HasPrefix(rv.GetSchemaname(), "pg_temp")
}
