package cachepolicy_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sqlcache/sqlcache/cachepolicy"
)

type relInfo = cachepolicy.RelInfo
type funcInfo = cachepolicy.FuncInfo

// testFacts is a catalog as the proxy would look it up.
var testFacts = cachepolicy.Facts{
	Relations: map[string][]relInfo{
		"users":       {{Schema: "public", Name: "users", Kind: 'r'}},
		"orders":      {{Schema: "public", Name: "orders", Kind: 'r'}, {Schema: "archive", Name: "orders", Kind: 'r'}},
		"v_active":    {{Schema: "public", Name: "v_active", Kind: 'v', Base: []string{"users", "orders"}}},
		"v_top":       {{Schema: "public", Name: "v_top", Kind: 'v', Base: []string{"v_active", "users", "orders"}}},
		"events":      {{Schema: "public", Name: "events", Kind: 'p'}},
		"events_2024": {{Schema: "public", Name: "events_2024", Kind: 'r', Root: "events"}},
		"mv":          {{Schema: "public", Name: "mv", Kind: 'm'}},
		"pg_class":    {{Schema: "pg_catalog", Name: "pg_class", Kind: 'r', System: true}},
		"scratch":     {{Schema: "pg_temp_3", Name: "scratch", Kind: 'r', Temp: true}},
		"shadow":      {{Schema: "public", Name: "shadow", Kind: 'r'}, {Schema: "pg_temp_1", Name: "shadow", Kind: 'r', Temp: true}},
		"seq":         {{Schema: "public", Name: "seq", Kind: 'S'}},
		"remote":      {{Schema: "public", Name: "remote", Kind: 'f'}},
		"ctype":       {{Schema: "public", Name: "ctype", Kind: 'c'}},
		"w":           {{Schema: "public", Name: "w", Kind: 'r'}},
		"audited":     {{Schema: "public", Name: "audited", Kind: 'r', RunsCode: true}},
		"entered":     {{Schema: "public", Name: "entered", Kind: 'r', RunsCode: true, WriteFuncs: []string{"enter"}}},
		"parent":      {{Schema: "public", Name: "parent", Kind: 'r', Base: []string{"child"}}},
		"child":       {{Schema: "public", Name: "child", Kind: 'r', Base: []string{"parent"}}},
		"v_users":     {{Schema: "public", Name: "v_users", Kind: 'v', Base: []string{"users"}}},
		"empty":       {},
		"pg_locks":    {{Schema: "pg_catalog", Name: "pg_locks", Kind: 'v', System: true}},
		"v_locks":     {{Schema: "public", Name: "v_locks", Kind: 'v', Base: []string{"pg_locks"}}},
		"v_remote":    {{Schema: "public", Name: "v_remote", Kind: 'v', Base: []string{"users", "remote"}}},
		"audit":       {{Schema: "public", Name: "audit", Kind: 'r', CatalogColumn: "rel", CatalogType: "regclass"}},
		"v_audit":     {{Schema: "public", Name: "v_audit", Kind: 'v', Base: []string{"audit"}}},
	},
	Functions: map[string][]funcInfo{
		"lower":                {{Name: "lower", Volatility: 'i', BuiltIn: true}},
		"count":                {{Name: "count", Volatility: 'i', BuiltIn: true}},
		"to_char":              {{Name: "to_char", Volatility: 's', BuiltIn: true}},
		"jsonb_path_query_tz":  {{Name: "jsonb_path_query_tz", Volatility: 's', BuiltIn: true}},
		"now":                  {{Name: "now", Volatility: 's', BuiltIn: true}},
		"current_setting":      {{Name: "current_setting", Volatility: 's', BuiltIn: true}},
		"age":                  {{Name: "age", Volatility: 's', BuiltIn: true}, {Name: "age", Volatility: 'i', BuiltIn: true}},
		"pg_stat_get_numscans": {{Name: "pg_stat_get_numscans", Volatility: 's', BuiltIn: true}},
		"to_regclass":          {{Name: "to_regclass", Volatility: 's', BuiltIn: true}},
		"has_table_privilege":  {{Name: "has_table_privilege", Volatility: 's', BuiltIn: true}},
		"length":               {{Name: "length", Volatility: 'i', BuiltIn: true}, {Name: "length", Volatility: 's', BuiltIn: true}},
		"random":               {{Name: "random", Volatility: 'v', BuiltIn: true}},
		"my_stable":            {{Name: "my_stable", Volatility: 's'}},
		"my_immutable":         {{Name: "my_immutable", Volatility: 'i'}},
		"enter":                {{Name: "enter", Volatility: 'v', SetsSettings: true}},
		"enter_imm":            {{Name: "enter_imm", Volatility: 'i', SetsSettings: true}},
		"rotate":               {{Name: "rotate", Volatility: 'v', ChangesCatalog: true}},
		"rotate_stable":        {{Name: "rotate_stable", Volatility: 's', ChangesCatalog: true}},
		"over":                 {{Name: "over", Volatility: 'i', BuiltIn: true}, {Name: "over", Volatility: 'v'}},
		"odd":                  {{Name: "odd", Volatility: 'x', BuiltIn: true}},
		// Operators and casts (cachepolicy.Implicit), as the catalog
		// lists every one of the name.
		"operator =":   {{Name: "int4eq", Volatility: 'i', BuiltIn: true}, {Name: "date_eq_timestamptz", Volatility: 's', BuiltIn: true}},
		"operator >":   {{Name: "int4gt", Volatility: 'i', BuiltIn: true}},
		"operator %":   {{Name: "similarity_op", Volatility: 's'}},
		"operator ===": {{Name: "same_flag", Volatility: 'i'}},
		"operator @>":  {{Name: "arraycontains", Volatility: 'i', BuiltIn: true}, {Name: "enter_op", Volatility: 'i', SetsSettings: true}},
		"operator &&":  {{Name: "lock_overlap", Volatility: 'v'}},
		"operator <<<": nil, // no such operator
		"cast int4":    {{Name: "int4", Volatility: 'i', BuiltIn: true}},
		"cast text":    nil, // through output functions
		"cast band":    {{Name: "band_of", Volatility: 's'}},
		"weighted_sum": {{Name: "weighted_sum", Volatility: 'i'}, {Name: "add_weighted", Volatility: 's'}},
		"json_agg":     {{Name: "json_agg", Volatility: 'i', BuiltIn: true}, {Name: "json_agg_transfn", Volatility: 's', BuiltIn: true}},
	},
}

const defaultTTL = time.Minute

func TestDecide(t *testing.T) {
	never := func(table string) cachepolicy.Rule { return cachepolicy.Rule{Table: table, Never: true} }
	ttl := func(table, query string, d time.Duration) cachepolicy.Rule {
		r := cachepolicy.Rule{Table: table, TTL: d, HasTTL: true}
		if query != "" {
			r.Query = regexp.MustCompile(query)
		}
		return r
	}
	no := func(reason string) cachepolicy.Decision { return cachepolicy.Decision{Reason: reason, Rule: -1} }
	yes := func(tables ...string) cachepolicy.Decision {
		return cachepolicy.Decision{Cacheable: true, Reason: "cacheable", Tables: tables, TTL: defaultTTL, Rule: -1}
	}
	withRule := func(d cachepolicy.Decision, rule int, ttl time.Duration) cachepolicy.Decision {
		d.Rule, d.TTL = rule, ttl
		return d
	}
	tests := []struct {
		name  string
		sql   string
		rules []cachepolicy.Rule
		want  cachepolicy.Decision
	}{
		// Analysis
		{"not a candidate", "SELECT * FROM users FOR UPDATE", nil, no("FOR UPDATE")},
		{"several statements", "SELECT 1; SELECT 2", nil, no("several statements")},
		{"constant", "SELECT 1", nil, yes()},
		// Relations
		{"table", "SELECT * FROM users WHERE id = $1", nil, yes("users")},
		{"view with bases", "SELECT * FROM v_active", nil, yes("orders", "users", "v_active")},
		{"view over view", "SELECT * FROM v_top", nil, yes("orders", "users", "v_active", "v_top")},
		{"view over a system view", "SELECT * FROM v_locks", nil,
			no("public.v_locks reads system catalog pg_catalog.pg_locks")},
		{"view over a foreign table", "SELECT * FROM v_remote", nil,
			no("public.v_remote reads foreign table public.remote")},
		{"partition and root", "SELECT * FROM events_2024", nil, yes("events", "events_2024")},
		{"partitioned root", "SELECT * FROM events", nil, yes("events")},
		{"matview", "SELECT * FROM mv", nil, yes("mv")},
		{"several schemas", "SELECT * FROM orders", nil, yes("orders")},
		{"qualified", "SELECT * FROM archive.orders JOIN users USING (id)", nil, yes("orders", "users")},
		{"system catalog", "SELECT * FROM pg_class", nil, no("system catalog pg_catalog.pg_class")},
		{"temporary", "SELECT * FROM scratch", nil, no("temporary table pg_temp_3.scratch")},
		{"temp shadows unqualified", "SELECT * FROM shadow", nil, no("temporary table pg_temp_1.shadow")},
		{"qualified avoids temp", "SELECT * FROM public.shadow", nil, yes("shadow")},
		{"sequence", "SELECT last_value FROM seq", nil, no("sequence public.seq")},
		{"foreign", "SELECT * FROM remote", nil, no("foreign table public.remote")},
		{"object identifier column", "SELECT * FROM audit", nil, no("column public.audit.rel of type regclass, printed by a catalog lookup")},
		{"view over one", "SELECT * FROM v_audit", nil,
			no("public.v_audit reads column public.audit.rel of type regclass, printed by a catalog lookup")},
		{"composite", "SELECT * FROM ctype", nil, no("relation public.ctype has kind 'c'")},
		{"unknown relation", "SELECT * FROM nosuch", nil, no("unknown relation nosuch")},
		{"empty facts", "SELECT * FROM empty", nil, no("unknown relation empty")},
		{"qualified miss", "SELECT * FROM archive.users", nil, no("unknown relation archive.users")},
		{"CTE, no table", "WITH x AS (SELECT * FROM users) SELECT * FROM x", nil, yes("users")},
		{"CTE, table of that name", "WITH w AS (SELECT * FROM users) SELECT * FROM w", nil, yes("users", "w")},
		// Functions
		{"immutable", "SELECT lower(name), count(*) FROM users GROUP BY 1", nil, yes("users")},
		{"built-in stable", "SELECT to_char(1, '9'), jsonb_path_query_tz('{}', '$')", nil, yes()},
		{"user immutable", "SELECT my_immutable(1)", nil, yes()},
		{"stable overload of arguments only", "SELECT length(name) FROM users", nil, yes("users")},
		{"catalog lookup", "SELECT to_regclass('public.users')", nil, no("to_regclass() reads the catalog or server state")},
		{"privilege", "SELECT has_table_privilege('users', 'SELECT')", nil, no("has_table_privilege() reads the catalog or server state")},
		{"now", "SELECT * FROM users WHERE ts > now()", nil, no("now() reads the clock/session")},
		{"current_setting", "SELECT current_setting('x')", nil, no("current_setting() reads the clock/session")},
		{"age", "SELECT age(ts) FROM users", nil, no("age() reads the clock/session")},
		{"statistics", "SELECT pg_stat_get_numscans(1)", nil, no("pg_stat_get_numscans() reads the clock/session")},
		{"user stable", "SELECT my_stable(id) FROM users", nil, no("user-defined STABLE function my_stable() may read tables (a cache.rules TTL may bound it)")},
		{"volatile", "SELECT random()", nil, no("volatile function random()")},
		{"sets settings", "SELECT enter_imm('x')", nil, no("enter_imm() may change the session's settings")},
		{"worst overload", "SELECT over(1)", nil, no("volatile function over()")},
		{"unknown volatility", "SELECT odd(1)", nil, no("volatile function odd()")},
		{"unknown function", "SELECT nosuchfn()", nil, no("unknown function nosuchfn")},
		{"relation before function", "SELECT random() FROM nosuch", nil, no("unknown relation nosuch")},
		// Operators and casts
		{"built-in operators", "SELECT * FROM users WHERE id = $1 AND n > 2 AND name::text = $2::int::text", nil, yes("users")},
		{"user immutable operator", "SELECT 1 === 2", nil, yes()},
		{"user stable operator", "SELECT * FROM users WHERE name % 'jon'", nil,
			no("user-defined STABLE function similarity_op() (run by operator %) may read tables (a cache.rules TTL may bound it)")},
		{"volatile operator", "SELECT ARRAY[1] && ARRAY[2]", nil, no("volatile function lock_overlap() (run by operator &&)")},
		{"operator that sets settings", "SELECT ARRAY[1] @> ARRAY[2]", nil, no("enter_op() (run by operator @>) may change the session's settings")},
		{"no such operator", "SELECT 1 <<< 2", nil, yes()},
		{"operator not looked up", "SELECT 1 ### 2", nil, no("unknown function operator ###")},
		{"user aggregate of a stable function", "SELECT weighted_sum(n) FROM users", nil,
			no("user-defined STABLE function add_weighted() (run by weighted_sum) may read tables (a cache.rules TTL may bound it)")},
		{"built-in aggregate of a stable function of its arguments", "SELECT json_agg(n) FROM users", nil, yes("users")},
		{"user stable cast", "SELECT n::band FROM users", nil, no("user-defined STABLE function band_of() (run by cast band) may read tables (a cache.rules TTL may bound it)")},
		// Rules
		{"never by table", "SELECT * FROM users", []cachepolicy.Rule{never("public.users")},
			cachepolicy.Decision{Reason: "rule 0: never", Tables: []string{"users"}, Rule: 0}},
		{"TTL by bare table", "SELECT * FROM orders", []cachepolicy.Rule{never("public.users"), ttl("orders", "", 5*time.Second)},
			withRule(yes("orders"), 1, 5*time.Second)},
		{"table rule through a view", "SELECT * FROM v_active", []cachepolicy.Rule{ttl("public.users", "", time.Second)},
			withRule(yes("orders", "users", "v_active"), 0, time.Second)},
		{"table rule, other schema", "SELECT * FROM archive.orders", []cachepolicy.Rule{never("public.orders")},
			yes("orders")},
		{"user code bounded by a TTL rule", "SELECT * FROM users WHERE name % 'jon'", []cachepolicy.Rule{ttl("", `%`, 5*time.Second)},
			withRule(yes("users"), 0, 5*time.Second)},
		{"user code, rule without a TTL", "SELECT my_stable(id) FROM users", []cachepolicy.Rule{ttl("users", "", 0)},
			no("user-defined STABLE function my_stable() may read tables (a cache.rules TTL may bound it)")},
		{"user code, never rule", "SELECT my_stable(id) FROM users", []cachepolicy.Rule{never("users")},
			cachepolicy.Decision{Reason: "rule 0: never", Tables: []string{"users"}, Rule: 0}},
		{"volatile not bounded by a TTL rule", "SELECT random() FROM users", []cachepolicy.Rule{ttl("users", "", time.Minute)},
			no("volatile function random()")},
		{"catalog reader not bounded by a TTL rule", "SELECT to_regclass('users') FROM users", []cachepolicy.Rule{ttl("users", "", time.Minute)},
			no("to_regclass() reads the catalog or server state")},
		{"regex TTL", "SELECT * FROM users /* report */", []cachepolicy.Rule{ttl("", `report`, 10*time.Second)},
			withRule(yes("users"), 0, 10*time.Second)},
		{"first match wins", "SELECT * FROM users /* report */",
			[]cachepolicy.Rule{ttl("", `report`, 10*time.Second), never("users")},
			withRule(yes("users"), 0, 10*time.Second)},
		{"table and query both needed", "SELECT * FROM users",
			[]cachepolicy.Rule{ttl("users", `report`, time.Second)}, yes("users")},
		{"TTL zero: until invalidated", "SELECT * FROM users", []cachepolicy.Rule{ttl("users", "", 0)},
			withRule(yes("users"), 0, 0)},
		{"catch-all rule", "SELECT 1", []cachepolicy.Rule{{}}, withRule(yes(), 0, defaultTTL)},
		{"no rule matches", "SELECT * FROM users", []cachepolicy.Rule{never("orders"), ttl("", "nomatch", time.Hour)},
			yes("users")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := cachepolicy.Analyze(tt.sql)
			got := cachepolicy.Decide(a, tt.sql, testFacts, tt.rules, defaultTTL)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide(%q) (-want +got):\n%s", tt.sql, diff)
			}
		})
	}
}

// TestDecideKeepsFacts checks that Decide does not write into the facts
// it is given, which the proxy shares between sessions.
func TestDecideKeepsFacts(t *testing.T) {
	base := make([]string, 1, 4)
	base[0] = "users"
	f := cachepolicy.Facts{Relations: map[string][]relInfo{
		"v":     {{Schema: "public", Name: "v", Kind: 'v', Base: base, Root: "x"}},
		"users": testFacts.Relations["users"],
	}}
	sql := "SELECT * FROM v"
	d := cachepolicy.Decide(cachepolicy.Analyze(sql), sql, f, nil, 0)
	if diff := cmp.Diff([]string{"users", "v", "x"}, d.Tables); diff != "" {
		t.Errorf("Tables (-want +got):\n%s", diff)
	}
	if got := base[:cap(base)][1]; got != "" {
		t.Errorf("Base's spare capacity was written: %q", got)
	}
}

func TestWritesOnlyNamed(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{`UPDATE users SET name = 'x' WHERE id = 1`, true},
		{`INSERT INTO users VALUES (1, lower('X')) ON CONFLICT (id) DO UPDATE SET name = excluded.name`, true},
		{`DELETE FROM orders WHERE id IN (SELECT id FROM w)`, true},
		{`UPDATE users SET seen = now()`, true},
		{`WITH d AS (DELETE FROM w RETURNING *) INSERT INTO users SELECT * FROM d`, true},
		{`UPDATE events_2024 SET n = 1`, true},             // a partition: no children
		{`UPDATE users SET name = my_stable(name)`, false}, // user code may write anywhere
		{`UPDATE users SET n = over(1)`, false},            // one of the overloads is user code
		{`UPDATE users SET n = nosuch(1)`, false},
		{`UPDATE users SET n = 1 WHERE name = 'x'`, true}, // built-in operators
		{`UPDATE users SET n = 1 WHERE name::text = $1`, true},
		{`UPDATE users SET n = 1 WHERE name % 'x'`, false}, // a user-defined operator's function
		{`UPDATE users SET n = 1 WHERE flag === true`, false},
		{`UPDATE audited SET n = 1`, false}, // triggers
		{`UPDATE events SET n = 1`, false},  // partitioned: rows land in partitions
		{`UPDATE parent SET n = 1`, false},  // inheritance children
		{`UPDATE v_users SET n = 1`, false}, // a view writes its base
		{`UPDATE missing SET n = 1`, false},
		{`TRUNCATE users`, true},
		{`ALTER TABLE users ADD COLUMN z int`, false},
		{`CALL p()`, false},
		{`SELECT 1`, true}, // writes nothing
		{`SELECT now(), lower('x') FOR UPDATE`, true},
		{`SELECT my_stable(1)`, false},
		{`UPDATE users SET`, false},
	} {
		a := cachepolicy.Analyze(tc.sql)
		if got := cachepolicy.WritesOnlyNamed(a, testFacts); got != tc.want {
			t.Errorf("WritesOnlyNamed(%q) = %t, want %t", tc.sql, got, tc.want)
		}
	}
}

func TestSettingsSetter(t *testing.T) {
	tests := []struct {
		calls, writes []string
		want          string
	}{
		{nil, nil, ""},
		{[]string{"lower", "now", "my_stable"}, nil, ""},
		{[]string{"lower", "enter", "enter_imm"}, nil, "enter"},
		{[]string{"lower", "not_looked_up"}, nil, "not_looked_up"},
		{[]string{"lower"}, []string{"users", "audited"}, ""},
		{nil, []string{"users", "entered"}, "enter"},
		{nil, []string{"not_looked_up"}, "the triggers of not_looked_up"},
		{[]string{"operator =", "operator @>"}, nil, "enter_op() (run by operator @>)"},
		{[]string{"cast text", "operator <<<"}, nil, ""},
	}
	for _, tt := range tests {
		if got := cachepolicy.SettingsSetter(tt.calls, tt.writes, testFacts); got != tt.want {
			t.Errorf("SettingsSetter(%q, %q) = %q; want %q", tt.calls, tt.writes, got, tt.want)
		}
	}
}

// TestCatalogChanger: a volatile function that may run DDL, called or run
// by a write's triggers, is named; a non-volatile one cannot run DDL.
func TestCatalogChanger(t *testing.T) {
	tests := []struct {
		calls, writes []string
		want          string
	}{
		{nil, nil, ""},
		{[]string{"lower", "enter", "rotate_stable"}, nil, ""},
		{[]string{"lower", "rotate"}, nil, "rotate()"},
		{[]string{"not_looked_up"}, nil, "not_looked_up"},
		{nil, []string{"users", "entered"}, ""},
	}
	for _, tt := range tests {
		if got := cachepolicy.CatalogChanger(tt.calls, tt.writes, testFacts); got != tt.want {
			t.Errorf("CatalogChanger(%q, %q) = %q; want %q", tt.calls, tt.writes, got, tt.want)
		}
	}
}
