package integration

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rawConn is a protocol-level client that records every backend message as
// the bytes received. It frames messages itself (not with wire/pgwire), so
// it does not share the proxy's framing code.
type rawConn struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// frame is one backend message as received: type, length and body.
type frame []byte

func (f frame) String() string {
	if len(f) > 80 {
		return fmt.Sprintf("%c %q…", f[0], []byte(f[5:80]))
	}
	return fmt.Sprintf("%c %q", f[0], []byte(f[5:]))
}

// diffFrames is cmp.Diff(want, got), but "" at once when the frames are
// equal: cmp walks a byte slice one element at a time, which takes about
// 3 seconds for a 300 kB DataRow under -race.
func diffFrames(want, got []frame) string {
	if slices.EqualFunc(want, got, func(a, b frame) bool { return bytes.Equal(a, b) }) {
		return ""
	}
	return cmp.Diff(want, got)
}

// dialRaw connects to addr, sends a StartupMessage and returns the client
// with the startup messages received up to ReadyForQuery.
func dialRaw(t testing.TB, addr string, params map[string]string) (*rawConn, []frame) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	startup := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: params}
	c.send(startup)
	return c, c.readUntilReady(1)
}

func (c *rawConn) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = m.Encode(buf); err != nil {
			c.t.Fatalf("encode %T: %v", m, err)
		}
	}
	c.writeRaw(buf)
}

func (c *rawConn) writeRaw(b []byte) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next reads one backend message.
func (c *rawConn) next() (frame, error) {
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
	if n < 0 || n > 64<<20 {
		return nil, fmt.Errorf("bad length %d for %q", n, hdr[0])
	}
	f := make(frame, 5+n)
	copy(f, hdr[:])
	_, err := io.ReadFull(c.r, f[5:])
	return f, err
}

// readUntilReady returns the messages up to and including the n-th
// ReadyForQuery.
func (c *rawConn) readUntilReady(n int) []frame {
	c.t.Helper()
	var out []frame
	for n > 0 {
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("read after %d messages %v: %v", len(out), out, err)
		}
		out = append(out, f)
		switch f[0] {
		case 'Z':
			n--
		case 'E':
			if len(out) > 0 && isFatalFrame(f) {
				return out
			}
		}
	}
	return out
}

// roundTrip sends msgs, which hold `syncs` requests answered by
// ReadyForQuery, and returns every message received.
func (c *rawConn) roundTrip(syncs int, msgs ...pgproto3.FrontendMessage) []frame {
	c.t.Helper()
	c.send(msgs...)
	return c.readUntilReady(syncs)
}

// readAll reads until the connection closes, returning what arrived.
func (c *rawConn) readAll() []frame {
	var out []frame
	for {
		f, err := c.next()
		if err != nil {
			return out
		}
		out = append(out, f)
	}
}

func isFatalFrame(f frame) bool {
	var e pgproto3.ErrorResponse
	if f[0] != 'E' || e.Decode(f[5:]) != nil {
		return false
	}
	return e.Severity == "FATAL" || e.Severity == "PANIC"
}

// errorCode returns the SQLSTATE of an ErrorResponse frame, or "".
func errorCode(f frame) string {
	var e pgproto3.ErrorResponse
	if f[0] != 'E' || e.Decode(f[5:]) != nil {
		return ""
	}
	return e.Code
}
