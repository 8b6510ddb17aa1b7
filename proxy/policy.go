package proxy

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// policiesSQL returns the row security policies that filter reads of the
// relations among $1 whose row security is on, with their USING
// expressions and whether those run user-defined code that may read
// tables: a function or an operator that PostgreSQL records the policy
// depending on, whose function (the operator's, for an operator) is
// user-defined and not IMMUTABLE. Functions called by name are judged by
// their text too (policyDependsOnMore).
const policiesSQL = `
SELECT p.polrelid, p.polname, c.relname, pg_get_expr(p.polqual, p.polrelid),
       EXISTS (SELECT FROM pg_depend d JOIN pg_proc f ON f.oid = CASE d.refclassid
                   WHEN 'pg_operator'::regclass THEN (SELECT o.oprcode FROM pg_operator o WHERE o.oid = d.refobjid)
                   ELSE d.refobjid END
               WHERE d.classid = 'pg_policy'::regclass AND d.objid = p.oid AND d.refobjid >= 16384
                 AND d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass)
                 AND f.oid >= 16384 AND f.provolatile <> 'i')
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
WHERE p.polrelid = ANY($1) AND c.relrowsecurity AND p.polcmd IN ('r', '*') AND p.polqual IS NOT NULL`

// lookupPolicies makes uncacheable the answers that read, directly or
// through a view, a relation whose row security policy depends on more
// than the row, the role and the session's settings (policyDependsOnMore). Such a policy is a
// dependency no statement names: a cached answer of the relation would
// outlive, say, a membership row the policy reads. readers maps each
// relation looked up to the names whose answers read it.
func lookupPolicies(ctx context.Context, conn *pgx.Conn, readers map[uint32][]string, rels map[string]relFacts) error {
	rows, err := conn.Query(ctx, policiesSQL, slices.Collect(maps.Keys(readers)))
	if err != nil {
		return fmt.Errorf("catalog row security policies: %w", err)
	}
	var oid uint32
	var policy, table, using string
	var userCode bool
	_, err = pgx.ForEachRow(rows, []any{&oid, &policy, &table, &using, &userCode}, func() error {
		var reason string
		switch {
		case policyDependsOnMore(using):
			reason = fmt.Sprintf("row security policy %s on %s reads more than the row, the role and settings: %s", policy, table, using)
		case userCode:
			reason = fmt.Sprintf("row security policy %s on %s runs a user-defined function that may read tables: %s", policy, table, using)
		default:
			return nil
		}
		for _, name := range readers[oid] {
			rf := rels[name]
			if rf.reason == "" {
				rf.reason = reason
			}
			rels[name] = rf
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("catalog row security policies: %w", err)
	}
	return nil
}

// policyCall matches, in an expression as pg_get_expr prints it, a
// function call (a name, quoted or not, right before its parenthesis; IN (
// and ANY ( have a space), a subquery, and the SQL value functions that read the clock or
// the search path. CURRENT_USER, SESSION_USER and CURRENT_ROLE are allowed:
// the cache key carries the role. A type modifier such as varchar(10)
// matches too, which only costs caching.
var policyCall = regexp.MustCompile(`(?i)[a-z0-9_$"]\(|\bselect\b|\b(current_date|current_time|current_timestamp|localtime|localtimestamp|current_schema|current_catalog)\b`)

// settingRead matches current_setting('name') with a constant name, as
// pg_get_expr prints it, with or without missing_ok; its group is the
// name. A setting is in the cache key when the session sets it (SET,
// startup options, or a read-back after set_config(), which asks for the
// settings policies read: readBackSQL), and role, database and server
// defaults are watched by the access checks. So a policy on a setting,
// the usual way to keep tenants apart, keeps its answers cacheable.
var settingRead = regexp.MustCompile(`(?i)\bcurrent_setting\('((?:[^']|'')*)'::text(?:, (?:true|false))?\)`)

// policyDependsOnMore says whether a policy's USING expression may depend
// on anything besides the row's own columns, constants, the role and the
// session's settings that keys carry: another table (a subquery), a
// function (which may read tables or the clock), the clock, or a setting
// left out of keys (notSettings: application_name).
func policyDependsOnMore(using string) bool {
	for _, m := range settingRead.FindAllStringSubmatch(using, -1) {
		if notSettings[strings.ToLower(m[1])] {
			return true
		}
	}
	return policyCall.MatchString(settingRead.ReplaceAllString(using, "setting"))
}
