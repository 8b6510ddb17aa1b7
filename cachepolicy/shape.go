package cachepolicy

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Shape returns the fingerprint of sql's parse tree with constants left
// out (pg_query's fingerprint): two texts of one shape read and call the
// same relations and functions. It is about ten times cheaper than
// Analyze, so a proxy can analyze one text per shape and reuse that
// analysis for the others, as long as Reuse allows.
func Shape(sql string) (uint64, error) {
	return pg_query.FingerprintToUInt64(sql)
}

// Reuse returns the analysis of sql, another text of the same shape as
// a's, from a, if it can. Only a cacheable-candidate SELECT without
// parameters qualifies, because only constants differ between the texts
// and a candidate's analysis depends on no constant but one that reads the
// clock ('now', 'today', …), which sql must not hold, and the integer
// constants of its RowParams, which Reuse reads from sql. It requires the
// two texts' tokens to be the same, one for one, but for the constants'
// text, so that the trees are the same but for the constants' values and
// each constant is the same token: texts of one shape can differ in more
// (`id = 7` and `id = 7.0` or `id = -7`; the fingerprint also leaves out
// digits in relation names, so `events_2024` and `events_2025` are of one
// shape). Parameters are another
// matter: the fingerprint does not tell `id = $1` from `id = 7`, nor $1 from
// $2, and RowParams do; so a text that may hold one ('$' anywhere) is
// analyzed afresh, as is anything else (SET values, EXPLAIN options, write
// statements).
func Reuse(a *Analysis, sql string) (*Analysis, bool) {
	if !a.Candidate || a.Statements != 1 || len(a.Session) > 0 ||
		slices.ContainsFunc(a.RowParams, func(p RowParam) bool { return !isConst(p) }) ||
		mentionsClockWord(sql) || strings.ContainsAny(sql, "$\x00") || !utf8.ValidString(sql) {
		// The fingerprint stops at a NUL byte and reads invalid UTF-8,
		// which Analyze rejects.
		return nil, false
	}
	lexemes, starts, ends, ok := lex(sql)
	if !ok || !slices.Equal(lexemes, a.Lexemes) {
		return nil, false
	}
	if len(a.RowParams) == 0 {
		return a, true
	}
	b := *a
	b.RowParams = slices.Clone(a.RowParams)
	for i, p := range b.RowParams {
		c, ok := decimal(sql[starts[p.Token]:ends[p.Token]])
		if !ok {
			return nil, false
		}
		b.RowParams[i].Const = c
	}
	return &b, true
}

// decimal returns the canonical form of an integer constant's text: only
// plain decimal digits (not 0x1F, 1_000 or 1e3) are read.
func decimal(s string) (string, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return "", false
	}
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return "", false
	}
	return strconv.FormatInt(v, 10), true
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
