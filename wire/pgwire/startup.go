package pgwire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// MaxStartupPacket is the largest startup packet PostgreSQL accepts
// (MAX_STARTUP_PACKET_LENGTH in libpq/pqcomm.h).
const MaxStartupPacket = 10000

// Request codes that stand in the protocol version field of a startup packet.
const (
	CodeCancelRequest = 80877102
	CodeSSLRequest    = 80877103
	CodeGSSENCRequest = 80877104
)

// StartupKind says which startup packet was received.
type StartupKind int

const (
	StartupMessage StartupKind = iota
	SSLRequest
	GSSENCRequest
	CancelRequest
)

func (k StartupKind) String() string {
	switch k {
	case StartupMessage:
		return "StartupMessage"
	case SSLRequest:
		return "SSLRequest"
	case GSSENCRequest:
		return "GSSENCRequest"
	case CancelRequest:
		return "CancelRequest"
	}
	return fmt.Sprintf("StartupKind(%d)", int(k))
}

// ErrUnsupportedProtocol is returned for a StartupMessage whose major
// protocol version is not 3.
var ErrUnsupportedProtocol = errors.New("unsupported frontend protocol")

// Startup is a decoded startup packet.
type Startup struct {
	Kind StartupKind
	// Raw is the packet as received, length included; it aliases the
	// Reader's buffer.
	Raw []byte
	// Version is the protocol version of a StartupMessage.
	Version uint32
	// Params of a StartupMessage (user, database, options, …).
	Params map[string]string
	// Cancel holds the process ID and secret of a CancelRequest.
	Cancel pgproto3.CancelRequest
}

// ParseStartup classifies and decodes a packet returned by ReadStartup.
func ParseStartup(p []byte) (Startup, error) {
	if len(p) < 8 {
		return Startup{}, &InvalidLengthError{Len: int32(len(p))}
	}
	code := binary.BigEndian.Uint32(p[4:])
	s := Startup{Raw: p, Version: code}
	switch code {
	case CodeSSLRequest, CodeGSSENCRequest:
		if len(p) != 8 {
			return Startup{}, &InvalidLengthError{Len: int32(len(p))}
		}
		s.Kind = SSLRequest
		if code == CodeGSSENCRequest {
			s.Kind = GSSENCRequest
		}
		return s, nil
	case CodeCancelRequest:
		s.Kind = CancelRequest
		if err := s.Cancel.Decode(p[4:]); err != nil {
			return Startup{}, fmt.Errorf("CancelRequest: %w", err)
		}
		return s, nil
	}
	if code>>16 != 3 {
		return Startup{}, fmt.Errorf("%w %d.%d (server supports 3.0 to 3.x)", ErrUnsupportedProtocol, code>>16, code&0xffff)
	}
	// pgproto3 knows only the minor versions it speaks; the backend answers
	// others with NegotiateProtocolVersion, so decode the parameters as 3.0
	// and relay the packet unchanged.
	body := make([]byte, len(p)-4)
	copy(body, p[4:])
	binary.BigEndian.PutUint32(body, pgproto3.ProtocolVersion30)
	var m pgproto3.StartupMessage
	if err := m.Decode(body); err != nil {
		return Startup{}, fmt.Errorf("StartupMessage: %w", err)
	}
	s.Params = m.Parameters
	return s, nil
}
