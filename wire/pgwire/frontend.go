package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// ErrMalformed is returned by the frontend body parsers for a body that does
// not hold what its type promises.
var ErrMalformed = errors.New("pgwire: malformed message body")

// The parsers below read the frontend messages a cache must look into
// without allocating: every returned slice aliases body. pgproto3 decodes
// the same messages into strings and slices of its own, which costs an
// allocation per field on a path that runs for every request.

// cstring splits a NUL-terminated string off the front of b.
func cstring(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// QueryBody returns the SQL text of a Query message.
func QueryBody(body []byte) ([]byte, error) {
	sql, rest, ok := cstring(body)
	if !ok || len(rest) != 0 {
		return nil, ErrMalformed
	}
	return sql, nil
}

// ParseBody holds the fields of a Parse message.
type ParseBody struct {
	Name  []byte
	Query []byte
	OIDs  []byte // the parameter type count and OIDs, as sent
}

// ParseParse splits a Parse message body.
func ParseParse(body []byte) (ParseBody, error) {
	name, rest, ok := cstring(body)
	if !ok {
		return ParseBody{}, ErrMalformed
	}
	query, rest, ok := cstring(rest)
	if !ok || len(rest) < 2 {
		return ParseBody{}, ErrMalformed
	}
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+4*n {
		return ParseBody{}, ErrMalformed
	}
	return ParseBody{Name: name, Query: query, OIDs: rest}, nil
}

// BindBody holds the fields of a Bind message that name things; Args is the
// rest (parameter formats, values and result formats), as sent.
type BindBody struct {
	Portal    []byte
	Statement []byte
	Args      []byte
}

// ParseBind splits a Bind message body. It checks only the names; the
// backend validates the rest.
func ParseBind(body []byte) (BindBody, error) {
	portal, rest, ok := cstring(body)
	if !ok {
		return BindBody{}, ErrMalformed
	}
	stmt, rest, ok := cstring(rest)
	if !ok {
		return BindBody{}, ErrMalformed
	}
	return BindBody{Portal: portal, Statement: stmt, Args: rest}, nil
}

// ParseExecute returns the portal and row limit of an Execute message.
func ParseExecute(body []byte) (portal []byte, maxRows uint32, err error) {
	portal, rest, ok := cstring(body)
	if !ok || len(rest) != 4 {
		return nil, 0, ErrMalformed
	}
	return portal, binary.BigEndian.Uint32(rest), nil
}

// ParseTarget returns the object kind ('S' statement, 'P' portal) and name
// of a Describe or Close message.
func ParseTarget(body []byte) (kind byte, name []byte, err error) {
	if len(body) < 2 {
		return 0, nil, ErrMalformed
	}
	name, rest, ok := cstring(body[1:])
	if !ok || len(rest) != 0 || (body[0] != 'S' && body[0] != 'P') {
		return 0, nil, ErrMalformed
	}
	return body[0], name, nil
}

// AppendParse appends a Parse message.
func AppendParse(dst []byte, name, query, oids []byte) []byte {
	n := 4 + len(name) + 1 + len(query) + 1 + len(oids)
	dst = append(dst, MsgParse, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	dst = append(dst, name...)
	dst = append(dst, 0)
	dst = append(dst, query...)
	dst = append(dst, 0)
	return append(dst, oids...)
}

// AppendQuery appends a Query message. sql must not hold a NUL byte.
func AppendQuery(dst []byte, sql string) []byte {
	n := 4 + len(sql) + 1
	dst = append(dst, MsgQuery, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	dst = append(dst, sql...)
	return append(dst, 0)
}

// AppendSync appends a Sync message.
func AppendSync(dst []byte) []byte {
	return append(dst, MsgSync, 0, 0, 0, 4)
}

// CommandTag returns the tag of a CommandComplete body ("SELECT 3").
func CommandTag(body []byte) []byte {
	tag, _, ok := cstring(body)
	if !ok {
		return body
	}
	return tag
}

// ParameterStatus returns the name and value of a ParameterStatus body.
func ParameterStatus(body []byte) (name, value []byte, err error) {
	name, rest, ok := cstring(body)
	if !ok {
		return nil, nil, ErrMalformed
	}
	value, rest, ok = cstring(rest)
	if !ok || len(rest) != 0 {
		return nil, nil, ErrMalformed
	}
	return name, value, nil
}

// eachParam calls fn for each parameter in the Args of a Bind, in order,
// with its value (nil if NULL) and whether it is in binary format, until
// fn returns false. It returns ErrMalformed if args are truncated or their
// format codes are not 0, 1 or one per parameter.
func eachParam(args []byte, fn func(i int, value []byte, null, binaryFormat bool) bool) error {
	if len(args) < 2 {
		return ErrMalformed
	}
	nf := int(binary.BigEndian.Uint16(args))
	if len(args) < 2+2*nf+2 {
		return ErrMalformed
	}
	formats := args[2 : 2+2*nf]
	rest := args[2+2*nf:]
	nv := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if nf > 1 && nf != nv {
		return ErrMalformed
	}
	for i := range nv {
		if len(rest) < 4 {
			return ErrMalformed
		}
		n := int(int32(binary.BigEndian.Uint32(rest)))
		rest = rest[4:]
		if n > len(rest) {
			return ErrMalformed
		}
		bin := nf == 1 && binary.BigEndian.Uint16(formats) == 1 ||
			nf > 1 && binary.BigEndian.Uint16(formats[2*i:]) == 1
		var value []byte
		if n >= 0 {
			value, rest = rest[:n], rest[n:]
		}
		if !fn(i, value, n < 0, bin) {
			return nil
		}
	}
	return nil
}

// Param returns parameter i (0-based) of the Args of a Bind: its value,
// whether it is in binary format, and whether it is NULL. It returns
// ErrMalformed if args do not hold that many parameters or are malformed
// (see eachParam).
func Param(args []byte, i int) (value []byte, binaryFormat, null bool, err error) {
	if i < 0 {
		return nil, false, false, ErrMalformed
	}
	found := false
	err = eachParam(args, func(j int, v []byte, isNull, bin bool) bool {
		if j < i {
			return true
		}
		found, value, null, binaryFormat = true, v, isNull, bin
		return false
	})
	if err == nil && !found {
		err = ErrMalformed
	}
	return value, binaryFormat, null, err
}

// AnyParam reports whether pred holds for the value of any non-NULL
// parameter, in text or binary format (binary text, varchar, name or json
// is the same characters), given the Args of a Bind.
func AnyParam(args []byte, pred func(value []byte) bool) (bool, error) {
	holds := false
	err := eachParam(args, func(_ int, v []byte, null, _ bool) bool {
		holds = !null && pred(v)
		return !holds
	})
	return holds, err
}
