package cachepolicy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// RelInfo is what the catalog says about one relation of a name.
type RelInfo struct {
	Schema string
	Name   string
	Kind   byte // pg_class.relkind: 'r' table, 'p' partitioned, 'v' view, 'm' matview, 'f' foreign, 'S' sequence, 'c' composite, 't' toast, 'i'/'I' index
	System bool // in pg_catalog, information_schema or pg_toast
	Temp   bool // relpersistence 't'
	// Unlogged: relpersistence 'u', or a partition or inheritance child
	// (at any depth) is unlogged or foreign. Its changes, like a
	// materialized view's REFRESH, never reach the logical replication
	// stream.
	Unlogged bool
	// RunsCode: a write to it may run code that writes elsewhere:
	// triggers (foreign keys' CASCADE and SET actions among them, not
	// their checks, which only lock rows), rules, row security
	// policies, or column defaults and constraints that call user-defined
	// functions.
	RunsCode bool
	// Key is the column of a single-column primary key, KeyType its type
	// OID; "" and 0 without one.
	Key     string
	KeyType uint32
	Root    string   // relname of the topmost partitioned ancestor when this is a partition, else ""
	Base    []string // for a view: relnames it reads, transitively through other views
	// WriteFuncs are the user-defined functions a write to it (or to its
	// partitions and children) may run: its triggers' functions and those
	// its column defaults and constraints call.
	WriteFuncs []string
	// CatalogColumn is its first column of an object identifier type
	// (regclass, regtype…, an array of one or a domain over one), or "";
	// CatalogType names that type. Such a value is an OID printed as the
	// name the catalog gives it now: ALTER TABLE … RENAME changes what a
	// read returns with no change to the row, and no change stream
	// carries it.
	CatalogColumn, CatalogType string
}

// FuncInfo is what the catalog says about one function a name stands
// for: an overload of a function of that name, a support function of an
// aggregate of that name (pg_proc calls every aggregate immutable), or
// the function of an operator or cast (Implicit).
type FuncInfo struct {
	Name       string // the function's own name
	Volatility byte   // pg_proc.provolatile: 'i', 's', 'v'
	BuiltIn    bool   // in pg_catalog (oid < 16384)
	// SetsSettings: a user-defined function whose source may change the
	// session's settings (set_config, SET, dynamic SQL), itself or through
	// the functions it calls. After a call the session's settings are not
	// known, as after a set_config() in the statement's own text.
	SetsSettings bool
	// ChangesCatalog: a user-defined function whose source, or that of a
	// function it calls, may run DDL (CREATE, ALTER, DROP, GRANT,
	// REVOKE… as words anywhere, dynamic SQL's strings included, or a
	// PL's SPI calls). Only a VOLATILE one can: a call is then taken to
	// change the catalog, as DO and CALL are.
	ChangesCatalog bool
}

// Facts are the catalog's answers for an Analysis: every relation and
// function of each name it uses, in every schema. A missing or empty entry
// means there is none.
type Facts struct {
	Relations map[string][]RelInfo
	Functions map[string][]FuncInfo
}

// Rule is an operator's override. A rule matches a query when every
// condition it sets holds; a rule that sets none matches every query.
type Rule struct {
	// Table is "schema.name", matched against the schema and name of each
	// dependency the Facts describe, or a bare name matched against each
	// dependency's name. "" matches any query.
	Table string
	// Query is matched against the SQL text; nil matches any query.
	Query  *regexp.Regexp
	Never  bool          // never cache
	TTL    time.Duration // used when HasTTL; 0 means until invalidated
	HasTTL bool
}

// Decision is whether and how long a query's result may be cached.
type Decision struct {
	Cacheable bool
	Reason    string        // why not, or "cacheable"
	Tables    []string      // dependency relnames, sorted, deduplicated
	TTL       time.Duration // 0 = until invalidated
	Rule      int           // index of the matching rule, -1 if none
	// Row, if set, ties the answer to one row of its one table: only a
	// change of that row or of the whole table changes it.
	Row *RowRead
}

// Decide combines an Analysis of sql with catalog facts and rules.
// defaultTTL applies when no rule sets one. A result depends on every
// relation it reads, the bases of the views among them and the root of
// each partition; the caller invalidates it when any of them changes.
func Decide(a *Analysis, sql string, f Facts, rules []Rule, defaultTTL time.Duration) Decision {
	if !a.Candidate {
		return notCacheable(a.Reason)
	}
	deps, why := dependencies(a.Relations, f)
	if why != "" {
		return notCacheable(why)
	}
	// bounded: user code that may read tables no statement names, which
	// only a rule's TTL can bound.
	var bounded string
	for _, name := range a.Functions {
		overloads, known := f.Functions[name]
		if !known {
			return notCacheable("unknown function " + name) // not looked up
		}
		switch why, byTTL := functionProblem(name, overloads); {
		case why == "":
		case !byTTL:
			return notCacheable(why)
		case bounded == "":
			bounded = why
		}
	}
	d := Decision{Cacheable: true, Reason: "cacheable", Tables: depNames(deps), TTL: defaultTTL, Rule: -1}
	if len(a.Relations) == 1 && len(d.Tables) == 1 {
		if r, ok := rowOf(a.Relations[0].Name, a.RowParams, f); ok && r.Table == d.Tables[0] {
			d.Row = &r
		}
	}
	i := slices.IndexFunc(rules, func(r Rule) bool { return r.matches(deps, sql) })
	if bounded != "" && (i < 0 || !rules[i].Never && (!rules[i].HasTTL || rules[i].TTL <= 0)) {
		return notCacheable(bounded + " (a cache.rules TTL may bound it)")
	}
	if i < 0 {
		return d
	}
	d.Rule = i
	switch r := rules[i]; {
	case r.Never:
		d.Cacheable, d.Reason, d.TTL = false, fmt.Sprintf("rule %d: never", i), 0
	case r.HasTTL:
		d.TTL = r.TTL
	}
	return d
}

// ForRows returns d, the decision for an analysis of one shape, for b,
// an analysis of another text of that shape (Reuse): what Decide returns
// for b when no rule matches on the SQL text (Rule.Query), since the
// texts differ only in their constants and b only in its RowParams' Const.
func (d Decision) ForRows(b *Analysis) Decision {
	if d.Row == nil {
		return d
	}
	for _, p := range b.RowParams {
		if p.Column == d.Row.Column {
			r := *d.Row
			r.Param, r.Const = p.Param, p.Const
			d.Row = &r
			return d
		}
	}
	// Not of the same shape after all: tied to the whole table, which is
	// never wrong.
	d.Row = nil
	return d
}

// WritesOnlyNamed reports whether running a's statements can change no
// data but rows of the relations a.Writes names (none, for a SELECT): plain
// DML on ordinary tables that run no code of their own (RunsCode), have no
// inheritance children, and statements that call only built-in functions.
// f must describe a.Writes and a.Calls. When it holds, invalidating
// a.Writes is the whole of what the statements did; otherwise only the
// change stream can tell what else changed.
func WritesOnlyNamed(a *Analysis, f Facts) bool {
	if a.ParseError != nil || a.InvalidateAll || a.CatalogChange {
		return false
	}
	for _, name := range a.Calls {
		fs := f.Functions[name]
		if len(fs) == 0 && !Implicit(name) {
			return false
		}
		for _, fi := range fs {
			if !fi.BuiltIn {
				return false
			}
		}
	}
	for _, name := range a.Writes {
		infos := f.Relations[name]
		if len(infos) == 0 {
			return false
		}
		for _, ri := range infos {
			// A table's Base is its family; a partition's holds only its
			// ancestors, anything else may have children a write reaches.
			if ri.Kind != 'r' || ri.RunsCode || len(ri.Base) > 0 && ri.Root == "" {
				return false
			}
		}
	}
	return true
}

// CatalogChanger returns which volatile function, among those calls
// names and those a write of the relations writes names may run
// (WriteFuncs), may change the catalog (FuncInfo.ChangesCatalog), as f
// describes them, or "". A function f does not describe counts.
func CatalogChanger(calls, writes []string, f Facts) string {
	for _, name := range slices.Concat(calls, WriteFuncs(writes, f)) {
		fs, ok := f.Functions[name]
		if !ok {
			return name
		}
		for _, fi := range fs {
			if fi.ChangesCatalog && fi.Volatility == 'v' {
				return called(name, fi)
			}
		}
	}
	return ""
}

// SettingsSetter returns what may change the session's settings
// (FuncInfo.SetsSettings) among the functions calls names and those a
// write of the relations writes names may run (WriteFuncs), as f describes
// them, or "". A function or written relation f does not describe counts
// as a setter.
func SettingsSetter(calls, writes []string, f Facts) string {
	for _, w := range writes {
		if _, ok := f.Relations[w]; !ok {
			return "the triggers of " + w
		}
	}
	for _, name := range slices.Concat(calls, WriteFuncs(writes, f)) {
		fs, ok := f.Functions[name]
		if !ok {
			return name
		}
		for _, fi := range fs {
			if fi.SetsSettings {
				if Implicit(name) {
					return called(name, fi)
				}
				return name
			}
		}
	}
	return ""
}

// WriteFuncs returns the functions a write of the relations writes may run
// (RelInfo.WriteFuncs), as f describes them.
func WriteFuncs(writes []string, f Facts) []string {
	var funcs []string
	for _, w := range writes {
		for _, ri := range f.Relations[w] {
			funcs = append(funcs, ri.WriteFuncs...)
		}
	}
	return funcs
}

func notCacheable(reason string) Decision {
	return Decision{Reason: reason, Rule: -1}
}

// dependency is one relation a result depends on, with its facts when the
// Facts have them (a view's bases and a partition's root may have none).
type dependency struct {
	name  string
	infos []RelInfo
}

// dependencies resolves each relation read against the facts, and returns
// the reason the query cannot be cached if one of them forbids it.
func dependencies(refs []RelRef, f Facts) ([]dependency, string) {
	var deps []dependency
	for _, ref := range refs {
		infos := matching(ref, f.Relations[ref.Name])
		if len(infos) == 0 {
			if ref.MaybeCTE {
				continue // a CTE, not a relation
			}
			return nil, "unknown relation " + qualified(ref.Schema, ref.Name)
		}
		deps = append(deps, dependency{ref.Name, infos})
		for _, info := range infos {
			if why := relationProblem(info); why != "" {
				return nil, why
			}
			var why string
			if deps, why = appendIndirect(deps, info, f); why != "" {
				return nil, why
			}
		}
	}
	return deps, ""
}

// appendIndirect appends the dependencies info brings: a view's bases and
// a partition's root. Their facts are not required, but where the facts
// have them they must allow caching too: a view over pg_locks or over a
// foreign table is no more cacheable than they are.
func appendIndirect(deps []dependency, info RelInfo, f Facts) ([]dependency, string) {
	names := info.Base
	if info.Root != "" {
		names = append(slices.Clip(names), info.Root) // never into the caller's array
	}
	for _, name := range names {
		infos := f.Relations[name]
		for _, in := range infos {
			if why := relationProblem(in); why != "" {
				return nil, qualified(info.Schema, info.Name) + " reads " + why
			}
		}
		deps = append(deps, dependency{name, infos})
	}
	return deps, ""
}

// matching returns the relations ref can mean: those in its schema when
// it is qualified, else all of them, since the facts do not say which
// one search_path picks.
func matching(ref RelRef, infos []RelInfo) []RelInfo {
	if ref.Schema == "" {
		return infos
	}
	var out []RelInfo
	for _, info := range infos {
		if info.Schema == ref.Schema {
			out = append(out, info)
		}
	}
	return out
}

// relationProblem returns why a result read from info cannot be cached.
func relationProblem(info RelInfo) string {
	switch {
	case info.System:
		return "system catalog " + qualified(info.Schema, info.Name) // DDL by others changes it unseen
	case info.Temp:
		return "temporary table " + qualified(info.Schema, info.Name)
	case info.CatalogColumn != "":
		return "column " + qualified(info.Schema, info.Name) + "." + info.CatalogColumn + " of type " + info.CatalogType + ", printed by a catalog lookup"
	}
	switch info.Kind {
	case 'r', 'p', 'v', 'm':
		return ""
	case 'S':
		return "sequence " + qualified(info.Schema, info.Name)
	case 'f':
		return "foreign table " + qualified(info.Schema, info.Name)
	}
	return fmt.Sprintf("relation %s has kind %q", qualified(info.Schema, info.Name), info.Kind)
}

func qualified(schema, name string) string {
	if schema == "" {
		return name
	}
	return schema + "." + name
}

func depNames(deps []dependency) []string {
	var names []string
	for _, d := range deps {
		names = append(names, d.name)
	}
	return sortedUnique(names)
}

// functionProblem returns why running every function name stands for
// (every overload of a function, the support functions of an aggregate,
// or the functions of every operator or cast of that name), the worst one
// counting, makes a result uncacheable. byTTL says that the only problem
// is user-defined STABLE code, which may read tables no statement names:
// an answer that a rule's TTL bounds may be cached all the same.
func functionProblem(name string, overloads []FuncInfo) (why string, byTTL bool) {
	if len(overloads) == 0 {
		if Implicit(name) {
			// Looked up: a cast that runs no function (binary, or through
			// text), or an operator that does not exist (the query fails).
			return "", false
		}
		return "unknown function " + name, false
	}
	for _, fn := range overloads {
		if fn.Volatility != 'i' && fn.Volatility != 's' {
			return "volatile function " + called(name, fn), false // 'v', or unknown: the worst
		}
	}
	for _, fn := range overloads {
		if fn.SetsSettings {
			return called(name, fn) + " may change the session's settings", false
		}
	}
	for _, fn := range overloads {
		if fn.Volatility == 's' && fn.BuiltIn && readsClockOrSession(fn.Name) {
			return called(name, fn) + " reads the clock/session", false
		}
	}
	for _, fn := range overloads {
		if fn.Volatility == 's' && fn.BuiltIn && !argumentsOnlyFuncs[fn.Name] {
			return called(name, fn) + " reads the catalog or server state", false
		}
	}
	for _, fn := range overloads {
		if fn.Volatility == 's' && !fn.BuiltIn {
			return "user-defined STABLE function " + called(name, fn) + " may read tables", true
		}
	}
	return "", false
}

// OperatorPrefix and CastPrefix begin the names by which Analysis.Functions
// and Calls list the operators a statement uses and the casts it makes,
// followed by the operator's name or the name of the type cast to
// ("operator =", "cast int4"): each stands for the functions of every
// operator or cast of that name, which run as a function called by name
// does and are judged as overloads of one function are. The catalog lists
// them in Facts.Functions under the same name; FuncInfo.Name is then the
// function's own name. Only what the text spells is listed: the
// comparisons that ORDER BY, GROUP BY, DISTINCT and set operations make
// through a type's operator class, and implicit casts, are not.
const (
	OperatorPrefix = "operator "
	CastPrefix     = "cast "
)

// Implicit reports whether name, of Analysis.Functions or Calls, stands
// for the functions of operators or casts rather than for a function
// called by name.
func Implicit(name string) bool {
	return strings.HasPrefix(name, OperatorPrefix) || strings.HasPrefix(name, CastPrefix)
}

// called names fn, run for name, in a reason: "f()", or, for a function
// that an operator, a cast or an aggregate runs, "f() (run by operator %)".
func called(name string, fn FuncInfo) string {
	if fn.Name == "" || fn.Name == name {
		return name + "()"
	}
	return fn.Name + "() (run by " + name + ")"
}

// argumentsOnlyFuncs are the built-in STABLE functions whose result
// depends only on their arguments and on settings (TimeZone, DateStyle,
// lc_monetary, default_text_search_config…), which the key carries as the
// session sets them and the proxy's catalog check watches as defaults.
// Every other built-in STABLE function is taken to read the catalogs or
// the server's state, which the change stream does not carry:
// to_regclass('t') stays NULL after CREATE TABLE t, has_table_privilege
// after GRANT, pg_get_viewdef after CREATE OR REPLACE VIEW, enum_range
// after ALTER TYPE ... ADD VALUE. A list of what is safe, not of what is
// not, so that a function this list does not know is not cached.
var argumentsOnlyFuncs = setOf(
	// Dates and times: the time zone and date style are settings.
	"date", "date_part", "date_trunc", "extract", "make_timestamptz", "overlaps",
	"time", "timestamp", "timestamptz", "timetz", "timezone", "to_char", "to_date",
	"to_number", "to_timestamp", "generate_series", "in_range",
	"date_in", "date_out", "time_in", "timetz_in", "timestamp_in", "timestamp_out",
	"timestamptz_in", "timestamptz_out", "interval_in", "interval_out",
	"interval_pl_timestamptz", "timestamptz_pl_interval", "timestamptz_mi_interval",
	"date_cmp_timestamptz", "date_eq_timestamptz", "date_ne_timestamptz",
	"date_lt_timestamptz", "date_le_timestamptz", "date_gt_timestamptz", "date_ge_timestamptz",
	"timestamp_cmp_timestamptz", "timestamp_eq_timestamptz", "timestamp_ne_timestamptz",
	"timestamp_lt_timestamptz", "timestamp_le_timestamptz", "timestamp_gt_timestamptz",
	"timestamp_ge_timestamptz", "timestamptz_cmp_date", "timestamptz_eq_date",
	"timestamptz_ne_date", "timestamptz_lt_date", "timestamptz_le_date", "timestamptz_gt_date",
	"timestamptz_ge_date", "timestamptz_cmp_timestamp", "timestamptz_eq_timestamp",
	"timestamptz_ne_timestamp", "timestamptz_lt_timestamp", "timestamptz_le_timestamp",
	"timestamptz_gt_timestamp", "timestamptz_ge_timestamp",
	"jsonb_path_exists_tz", "jsonb_path_match_tz", "jsonb_path_query_tz",
	"jsonb_path_query_array_tz", "jsonb_path_query_first_tz",
	// Text, money and numbers: output functions of the arguments' types.
	"concat", "concat_ws", "format", "quote_literal", "quote_nullable", "length",
	"convert", "convert_from", "convert_to", "anytextcat", "textanycat",
	"array_to_string", "cash_in", "cash_out", "money", "numeric",
	// JSON built from values.
	"to_json", "to_jsonb", "array_to_json", "row_to_json",
	"json_agg", "json_agg_transfn", "json_object_agg", "json_object_agg_transfn",
	"json_build_array", "json_build_object", "jsonb_agg", "jsonb_agg_transfn",
	"jsonb_agg_finalfn", "jsonb_object_agg_transfn", "jsonb_object_agg_finalfn",
	"jsonb_build_array", "jsonb_build_object",
	"json_populate_record", "json_populate_recordset", "json_to_record", "json_to_recordset",
	"jsonb_populate_record", "jsonb_populate_recordset", "jsonb_to_record", "jsonb_to_recordset",
	// Full-text search: the configuration is an argument or a setting.
	// Configurations and dictionaries changed on the server are not
	// watched (README, Limits).
	"to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery",
	"websearch_to_tsquery", "ts_headline", "ts_match_tq", "ts_match_tt",
	"json_to_tsvector", "jsonb_to_tsvector",
	"xml", "xml_is_well_formed",
	// The server's fixed properties.
	"version", "getdatabaseencoding", "pg_client_encoding",
	"pg_char_to_encoding", "pg_encoding_to_char", "pg_column_size",
)

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// clockSessionFuncs are the built-in STABLE functions whose result depends
// on the time, the session or the transaction rather than on arguments
// and tables.
var clockSessionFuncs = map[string]bool{
	"now": true, "statement_timestamp": true, "transaction_timestamp": true,
	"clock_timestamp": true, "timeofday": true, "age": true,
	"current_setting": true, "current_user": true, "session_user": true,
	"current_role": true, "system_user": true, "current_schema": true,
	"current_schemas": true, "current_database": true, "current_query": true,
	"pg_backend_pid": true, "pg_my_temp_schema": true, "pg_is_other_temp_schema": true,
	"inet_client_addr": true, "inet_client_port": true, "inet_server_addr": true,
	"inet_server_port": true, "pg_postmaster_start_time": true, "pg_conf_load_time": true,
	"pg_trigger_depth": true, "txid_current": true, "txid_current_if_assigned": true,
	"txid_current_snapshot": true, "txid_snapshot_xmin": true, "txid_snapshot_xmax": true,
	"txid_visible_in_snapshot": true, "txid_status": true, "pg_current_xact_id": true,
	"pg_current_xact_id_if_assigned": true, "pg_current_snapshot": true,
	"pg_snapshot_xmin": true, "pg_snapshot_xmax": true, "pg_visible_in_snapshot": true,
	"pg_xact_status": true, "pg_last_committed_xact": true, "pg_stat_get_activity": true,
}

func readsClockOrSession(name string) bool {
	return clockSessionFuncs[name] || strings.HasPrefix(name, "pg_stat_")
}

// matches reports whether r applies to a query with these dependencies.
func (r Rule) matches(deps []dependency, sql string) bool {
	if r.Table != "" && !slices.ContainsFunc(deps, r.matchesTable) {
		return false
	}
	return r.Query == nil || r.Query.MatchString(sql)
}

func (r Rule) matchesTable(d dependency) bool {
	if !strings.Contains(r.Table, ".") {
		return r.Table == d.name
	}
	for _, info := range d.infos {
		if info.Schema+"."+info.Name == r.Table {
			return true
		}
	}
	return false
}
