// Package pgwire frames the PostgreSQL v3 wire protocol for a proxy: it
// splits a byte stream into messages without copying them, reads the
// untyped startup packets (StartupMessage, SSLRequest, GSSENCRequest,
// CancelRequest), and builds the few messages a proxy must originate
// itself (ErrorResponse, ReadyForQuery).
//
// Decoding of individual message bodies is left to
// github.com/jackc/pgx/v5/pgproto3; pgwire only adds what pgproto3 does not
// offer a relay: zero-copy framing with a hard cap checked before any
// allocation, and bodies too large to buffer streamed through.
//
// It is not a client or a server, knows nothing of caching, and starts no
// goroutines.
package pgwire
