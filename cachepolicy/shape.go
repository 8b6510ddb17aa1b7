package cachepolicy

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Shape returns the fingerprint of sql's parse tree with constants left
// out (pg_query's fingerprint): two texts of one shape read and call the
// same relations and functions. It is about ten times cheaper than
// Analyze, so a proxy can analyze one text per shape and reuse that
// analysis for the others, as long as ReusableFor allows.
func Shape(sql string) (uint64, error) {
	return pg_query.FingerprintToUInt64(sql)
}

// ReusableFor reports whether a, the analysis of one text of a shape, is
// also the analysis of sql, another text of the same shape. Only a
// cacheable-candidate SELECT without parameters qualifies, because only
// constants differ between the texts and a candidate's analysis depends on
// no constant but one that reads the clock ('now', 'today', …), which sql
// must not hold. Parameters are another matter: the fingerprint does not
// tell `id = $1` from `id = 7`, nor $1 from $2, and RowParams do; so a
// text that may hold one ('$' anywhere) is analyzed afresh, as is
// anything else (SET values, EXPLAIN options, write statements).
func ReusableFor(a *Analysis, sql string) bool {
	if !a.Candidate || a.Statements != 1 || len(a.Session) > 0 || len(a.RowParams) > 0 {
		return false
	}
	return !mentionsClockWord(sql) && !strings.Contains(sql, "$")
}

// mentionsClockWord is a cheap over-approximation of ReadsClock over a
// whole text: any occurrence of the words, in any case, anywhere.
func mentionsClockWord(sql string) bool {
	lower := strings.ToLower(sql)
	for _, w := range [...]string{"now", "today", "tomorrow", "yesterday"} {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}
