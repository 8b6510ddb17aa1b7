package pgwire

import (
	"encoding/binary"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Message types a proxy must recognise. Frontend and backend share some
// letters ('S' is Sync from a client and ParameterStatus from a server), so
// the two sets are separate.
const (
	// Frontend.
	MsgBind         byte = 'B'
	MsgClose        byte = 'C'
	MsgCopyData     byte = 'd'
	MsgCopyDone     byte = 'c'
	MsgCopyFail     byte = 'f'
	MsgDescribe     byte = 'D'
	MsgExecute      byte = 'E'
	MsgFlush        byte = 'H'
	MsgFunctionCall byte = 'F'
	MsgParse        byte = 'P'
	MsgPassword     byte = 'p' // also GSSResponse, SASLInitialResponse, SASLResponse
	MsgQuery        byte = 'Q'
	MsgSync         byte = 'S'
	MsgTerminate    byte = 'X'

	// Backend.
	MsgAuthentication      byte = 'R'
	MsgBackendKeyData      byte = 'K'
	MsgCommandComplete     byte = 'C'
	MsgDataRow             byte = 'D'
	MsgErrorResponse       byte = 'E'
	MsgNegotiateProtocol   byte = 'v'
	MsgNoticeResponse      byte = 'N'
	MsgNotification        byte = 'A'
	MsgParameterStatus     byte = 'S'
	MsgReadyForQuery       byte = 'Z'
	MsgRowDescription      byte = 'T'
	MsgCopyInResponse      byte = 'G'
	MsgCopyOutResponse     byte = 'H'
	MsgCopyBothResponse    byte = 'W'
	MsgPortalSuspended     byte = 's'
	MsgEmptyQueryResponse  byte = 'I'
	MsgParseComplete       byte = '1'
	MsgBindComplete        byte = '2'
	MsgCloseComplete       byte = '3'
	MsgNoData              byte = 'n'
	MsgParameterDescriptor byte = 't'
)

// Authentication request codes (the first int32 of an 'R' message).
const (
	AuthOK                = 0
	AuthCleartextPassword = 3
	AuthMD5Password       = 5
	AuthGSS               = 7
	AuthGSSContinue       = 8
	AuthSSPI              = 9
	AuthSASL              = 10
	AuthSASLContinue      = 11
	AuthSASLFinal         = 12
)

// AuthCode returns the request code of an Authentication message body.
func AuthCode(body []byte) (uint32, bool) {
	if len(body) < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(body), true
}

// AuthNeedsResponse reports whether the client must answer an Authentication
// request with a message of its own.
func AuthNeedsResponse(code uint32) bool {
	switch code {
	case AuthOK, AuthSASLFinal:
		return false
	}
	return true
}

// TxStatus is the transaction status carried by ReadyForQuery.
type TxStatus byte

const (
	TxIdle   TxStatus = 'I'
	TxActive TxStatus = 'T'
	TxFailed TxStatus = 'E'
)

// ReadyStatus returns the transaction status of a ReadyForQuery body.
func ReadyStatus(body []byte) (TxStatus, bool) {
	if len(body) != 1 {
		return 0, false
	}
	return TxStatus(body[0]), true
}

// Severity of an ErrorResponse or NoticeResponse, non-localized ('V') when
// present, else localized ('S').
func Severity(body []byte) string {
	var localized string
	for len(body) > 0 && body[0] != 0 {
		code := body[0]
		end := 1
		for end < len(body) && body[end] != 0 {
			end++
		}
		if end == len(body) {
			break
		}
		switch code {
		case 'V':
			return string(body[1:end])
		case 'S':
			localized = string(body[1:end])
		}
		body = body[end+1:]
	}
	return localized
}

// IsFatal reports whether an ErrorResponse body ends the session.
func IsFatal(body []byte) bool {
	switch Severity(body) {
	case "FATAL", "PANIC":
		return true
	}
	return false
}

// AppendError appends an ErrorResponse with the given severity, SQLSTATE and
// message.
func AppendError(dst []byte, severity, code, message string) []byte {
	e := pgproto3.ErrorResponse{
		Severity:            severity,
		SeverityUnlocalized: severity,
		Code:                code,
		Message:             message,
	}
	out, err := e.Encode(dst)
	if err != nil {
		// Encode fails only for a message over 1 GiB, which a proxy
		// never builds; keep dst unchanged rather than send half.
		return dst
	}
	return out
}

// AppendReadyForQuery appends a ReadyForQuery with status s.
func AppendReadyForQuery(dst []byte, s TxStatus) []byte {
	return append(dst, MsgReadyForQuery, 0, 0, 0, 5, byte(s))
}

// StripSASLMechanism returns an AuthenticationSASL body without mechanism
// name, and whether it was present.
func StripSASLMechanism(body []byte, name string) ([]byte, bool, error) {
	var m pgproto3.AuthenticationSASL
	if err := m.Decode(body); err != nil {
		return nil, false, err
	}
	kept := m.AuthMechanisms[:0]
	for _, mech := range m.AuthMechanisms {
		if mech != name {
			kept = append(kept, mech)
		}
	}
	if len(kept) == len(m.AuthMechanisms) {
		return body, false, nil
	}
	m.AuthMechanisms = kept
	out, err := m.Encode(nil)
	if err != nil {
		return nil, false, err
	}
	return out[5:], true, nil
}

// DataRowValues returns the column values of a DataRow body, nil for a
// NULL. The values alias body.
func DataRowValues(body []byte) ([][]byte, error) {
	var row pgproto3.DataRow
	if err := row.Decode(body); err != nil {
		return nil, fmt.Errorf("%w: DataRow: %v", ErrMalformed, err)
	}
	return row.Values, nil
}
