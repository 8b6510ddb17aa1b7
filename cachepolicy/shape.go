package cachepolicy

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	pg_query "github.com/pganalyze/pg_query_go/v6"
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

// Size returns about how many bytes sh holds: its text, which its
// analyses' lexemes point into too, and its tokens.
func (sh *Shape) Size() int {
	return len(sh.sql) + len(sh.lexemes)*int(unsafe.Sizeof(Lexeme{})+8) + 64
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
		mentionsClockWord(sql) || strings.ContainsAny(sql, "$\x00\\") || hasContinuation(sql) ||
		containsFold(sql, "uescape") || !utf8.ValidString(sql) ||
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
	if s[0] != '0' || s == "0" {
		return s, true // canonical already: no copy
	}
	return strconv.FormatInt(v, 10), true
}

// mentionsClockWord is a cheap over-approximation of ReadsClock over a
// whole text: any occurrence of the words, in any case, anywhere. Only
// ASCII letters lower-case to the words' letters, so comparing in place
// with strings.EqualFold finds every occurrence strings.ToLower would
// (and a few more), without a copy.
func mentionsClockWord(sql string) bool {
	for i := 0; i < len(sql); i++ {
		switch sql[i] | 0x20 {
		case 'n', 't', 'y':
			for _, w := range [...]string{"now", "today", "tomorrow", "yesterday"} {
				if len(sql)-i >= len(w) && strings.EqualFold(sql[i:i+len(w)], w) {
					return true
				}
			}
		}
	}
	return false
}

// hasContinuation reports a quote followed by white space holding a
// newline and another quote: two string constants PostgreSQL joins into
// one ('n'<newline>'ow' is 'now'), so that the words in the text are not
// the words of the constants. A backslash (E'\x6eow') and UESCAPE hide
// words the same way; Reuse leaves all three to a full analysis.
func hasContinuation(sql string) bool {
	for i := strings.IndexByte(sql, '\''); i >= 0 && i < len(sql); {
		j := i + 1
		newline := false
		for j < len(sql) && strings.IndexByte(" \t\n\r\f\v", sql[j]) >= 0 {
			newline = newline || sql[j] == '\n' || sql[j] == '\r'
			j++
		}
		if newline && j < len(sql) && sql[j] == '\'' {
			return true
		}
		k := strings.IndexByte(sql[i+1:], '\'')
		if k < 0 {
			return false
		}
		i += 1 + k
	}
	return false
}

// containsFold reports whether sql contains word (lower case ASCII) in any
// case.
func containsFold(sql, word string) bool {
	for i := 0; i+len(word) <= len(sql); i++ {
		if sql[i]|0x20 == word[0] && strings.EqualFold(sql[i:i+len(word)], word) {
			return true
		}
	}
	return false
}

// Skeleton hashes sql with each integer written in it set aside: the
// maximal runs of ASCII digits that no identifier, parameter or decimal
// point touches. Texts that differ only in such integers have one
// skeleton, so a proxy can find a text of sql's shape scanned before and
// Respell it for sql without scanning sql. It reports false when sql has
// no such integer.
func Skeleton(sql string) (uint64, bool) {
	var h maphash.Hash
	h.SetSeed(shapeSeed)
	found := false
	from := 0
	for i := 0; i < len(sql); {
		if !isDigit(sql[i]) {
			i++
			continue
		}
		j := i
		for j < len(sql) && isDigit(sql[j]) {
			j++
		}
		if freeStanding(sql, i, j) {
			h.WriteString(sql[from:i])
			h.WriteByte(0) // where the integer was: sql holds no NUL that Reuse accepts
			from, found = j, true
		}
		i = j
	}
	h.WriteString(sql[from:])
	return h.Sum64(), found
}

// Respell returns the shape of sql, which must be sh's text with some of
// its integer constants written differently, or false. The result is what
// ShapeOf(sql) returns (FuzzRespell checks it) and costs no scan: every
// byte outside sh's integer constants must be the same, and each constant
// must stay an integer constant, which a run of ASCII digits is when no
// identifier, parameter or decimal point touches it and its value fits
// PostgreSQL's ICONST (int4; a larger one scans as FCONST).
func (sh *Shape) Respell(sql string) (*Shape, bool) {
	n := len(sh.starts)
	pos := make([]int32, 2*n) // one allocation for starts and ends
	out := &Shape{Hash: sh.Hash, sql: sql, lexemes: sh.lexemes, starts: pos[:n:n], ends: pos[n:]}
	delta := 0 // len(sql) - len(sh.sql), up to the current token
	done := 0  // sh.sql[:done] is matched
	for k, l := range sh.lexemes {
		s, e := int(sh.starts[k]), int(sh.ends[k])
		if l.Kind != int32(pg_query.Token_ICONST) || s < done || !sh.plainInt(s, e) {
			out.starts[k], out.ends[k] = int32(s+delta), int32(e+delta)
			continue
		}
		ts := s + delta
		if ts > len(sql) || sql[done+delta:ts] != sh.sql[done:s] {
			return nil, false
		}
		te := ts
		for te < len(sql) && isDigit(sql[te]) {
			te++
		}
		if _, err := strconv.ParseInt(sql[ts:te], 10, 32); err != nil {
			return nil, false
		}
		delta += (te - ts) - (e - s)
		out.starts[k], out.ends[k] = int32(ts), int32(te)
		done = e
	}
	if done+delta > len(sql) || sql[done+delta:] != sh.sql[done:] {
		return nil, false
	}
	return out, true
}

// plainInt reports whether sh.sql[s:e] is an integer that Respell may
// replace: ASCII digits only (not 0x1F or 1_000), touched by nothing that
// would make other digits scan differently.
func (sh *Shape) plainInt(s, e int) bool {
	if s >= e || e > len(sh.sql) || strings.TrimLeft(sh.sql[s:e], "0123456789") != "" {
		return false
	}
	return freeStanding(sh.sql, s, e)
}

// freeStanding reports whether nothing next to sql[i:j] touches it as a
// number (touchesNumber).
func freeStanding(sql string, i, j int) bool {
	return (i == 0 || !touchesNumber(sql[i-1])) && (j == len(sql) || !touchesNumber(sql[j]))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// touchesNumber reports whether c, next to a run of digits, may make the
// digits part of another token: an identifier (letters, digits, '_',
// '$' and every non-ASCII byte), a parameter ($1), a decimal point, an
// exponent or a hexadecimal, octal or binary prefix (letters).
func touchesNumber(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '$' || c == '.' || c >= 0x80
}
