package cachepolicy

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Shape is a text's tokens, comments left out, with the constants'
// values set aside: texts of one shape have the same parse tree but for
// the values of their constants. Hash is the same for texts of one shape
// (and, rarely, for others: Reuse compares the tokens). Scanning a text
// costs a fraction of analyzing it, so a proxy can analyze one text per
// shape and reuse that analysis for the others, as long as Reuse allows.
type Shape struct {
	Hash    uint64
	sql     string
	lexemes []Lexeme
	starts  []int32
	ends    []int32
}

// shapeSeed seeds Shape hashes: they are compared within a process only.
var shapeSeed = maphash.MakeSeed()

// ShapeOf returns the shape of sql, or an error if it cannot be scanned.
func ShapeOf(sql string) (*Shape, error) {
	lexemes, starts, ends, ok := lex(sql)
	if !ok {
		return nil, errors.New("shape: the text does not scan")
	}
	var h maphash.Hash
	h.SetSeed(shapeSeed)
	var kind [5]byte
	for _, l := range lexemes {
		binary.LittleEndian.PutUint32(kind[:4], uint32(l.Kind))
		kind[4] = byte(len(l.Text))
		h.Write(kind[:])
		h.WriteString(l.Text)
	}
	return &Shape{Hash: h.Sum64(), sql: sql, lexemes: lexemes, starts: starts, ends: ends}, nil
}

// Reuse returns the analysis of sh's text from a, the analysis of another
// text of the same shape, if it can. Only a cacheable-candidate SELECT
// without parameters qualifies, because only constants differ between the
// texts and a candidate's analysis depends on no constant but one that
// reads the clock ('now', 'today', …), which the text must not hold, and
// the integer constants of its RowParams, which Reuse reads from the text
// by their token's index. A text that may hold a parameter ('$' anywhere)
// is analyzed afresh, as is anything but a candidate (SET values, EXPLAIN
// options, write statements).
func Reuse(a *Analysis, sh *Shape) (*Analysis, bool) {
	sql := sh.sql
	if !a.Candidate || a.Statements != 1 || len(a.Session) > 0 ||
		slices.ContainsFunc(a.RowParams, func(p RowParam) bool { return !isConst(p) }) ||
		mentionsClockWord(sql) || strings.ContainsAny(sql, "$\x00") || !utf8.ValidString(sql) ||
		len(a.Lexemes) == 0 || !slices.Equal(sh.lexemes, a.Lexemes) {
		// Analyze rejects a NUL byte and invalid UTF-8.
		return nil, false
	}
	if len(a.RowParams) == 0 {
		return a, true
	}
	b := *a
	b.RowParams = slices.Clone(a.RowParams)
	for i, p := range b.RowParams {
		c, ok := decimal(sql[sh.starts[p.Token]:sh.ends[p.Token]])
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
