package pgwire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// Small limits so that short inputs reach the streamed and refused paths.
const (
	fuzzLimit     = 64
	fuzzInlineMax = 16
)

// countingReader counts the Read calls that reach the source.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

func FuzzReader(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add([]byte{
		'Q',         // Query
		0, 0, 0, 13, // length, self included
		'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0, // query string
		'S',        // Sync
		0, 0, 0, 4, // length: empty body
	}, true)
	f.Add([]byte{
		'd',         // CopyData
		0, 0, 0, 24, // length: body of 20, over the inline max of 16
		'0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
		'0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
		'c',        // CopyDone
		0, 0, 0, 4, // length
	}, false)
	f.Add([]byte{
		'd',         // CopyData
		0, 0, 0, 24, // length: body of 20, streamed
		'0', '1', '2', // body cut short
	}, true)
	f.Add([]byte{
		'D',           // DataRow
		0x40, 0, 0, 0, // length: 1 GiB, over the limit of 64
	}, false)
	f.Add([]byte{
		'Q',        // Query
		0, 0, 0, 3, // length below its own 4 bytes
	}, false)
	f.Add([]byte{
		'X',                    // Terminate
		0xff, 0xff, 0xff, 0xff, // length -1
	}, true)
	f.Add([]byte{
		'Z',        // ReadyForQuery
		0, 0, 0, 5, // length
		'I', // status
		'Z', // next message cut inside the length field
		0, 0,
	}, true)

	f.Fuzz(func(t *testing.T, data []byte, oneByte bool) {
		read := func(copyStreamed bool) (out []byte, headers [][5]byte, err error) {
			src := &countingReader{r: bytes.NewReader(data)}
			var rd io.Reader = src
			if oneByte {
				rd = iotest.OneByteReader(src)
			}
			r := pgwire.NewReader(rd, fuzzLimit)
			r.SetInlineMax(fuzzInlineMax)
			// Each message consumes at least 5 bytes, so more calls than
			// that mean the Reader is going round in circles.
			for range len(data)/5 + 2 {
				ready, reads := r.Ready(), src.reads
				m, err := r.Next()
				if ready && src.reads != reads {
					t.Fatalf("Next read from the source after Ready() = true")
				}
				if err != nil {
					return out, headers, err
				}
				checkMessage(t, m)
				if m.Len > fuzzLimit {
					t.Fatalf("message of %d bytes over the limit of %d", m.Len, fuzzLimit)
				}
				if m.Streamed() != (m.Len > fuzzInlineMax) {
					t.Fatalf("Streamed() = %v for a body of %d with inline max %d", m.Streamed(), m.Len, fuzzInlineMax)
				}
				h := m.Header()
				headers = append(headers, h)
				if !m.Streamed() {
					out = append(out, m.Raw...)
					continue
				}
				out = append(out, h[:]...)
				if copyStreamed {
					w := bytes.NewBuffer(out)
					err := r.CopyBody(w)
					out = w.Bytes()
					if err != nil {
						return out, headers, err
					}
				}
			}
			t.Fatalf("Next did not fail after %d messages from %d bytes", len(data)/5+2, len(data))
			return nil, nil, nil
		}

		// Decoding and re-encoding the frames gives back the input consumed.
		out, headers, err := read(true)
		if !bytes.HasPrefix(data, out) {
			t.Fatalf("re-encoded frames are not a prefix of the input:\n got %q\nfrom %q", out, data)
		}
		rest := data[len(out):]
		var tooLarge *pgwire.TooLargeError
		var invalid *pgwire.InvalidLengthError
		switch {
		case err == io.EOF:
			if len(rest) != 0 {
				t.Fatalf("io.EOF with %d bytes unread", len(rest))
			}
		case err == io.ErrUnexpectedEOF:
			// Only part of a message is left (none when a streamed body
			// was cut: CopyBody passed on what there was).
			if len(rest) >= 5 && int(binary.BigEndian.Uint32(rest[1:]))+1 <= len(rest) {
				t.Fatalf("io.ErrUnexpectedEOF with a whole message left: %q", rest)
			}
		case errors.As(err, &tooLarge):
			if len(rest) < 5 || tooLarge.Type != rest[0] || tooLarge.Len != int(int32(binary.BigEndian.Uint32(rest[1:])))-4 || tooLarge.Len <= fuzzLimit {
				t.Fatalf("%+v does not describe the header of %q", tooLarge, rest)
			}
		case errors.As(err, &invalid):
			if len(rest) < 5 || invalid.Type != rest[0] || invalid.Len != int32(binary.BigEndian.Uint32(rest[1:])) || invalid.Len >= 4 {
				t.Fatalf("%+v does not describe the header of %q", invalid, rest)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}

		// Skipping streamed bodies frames the same messages.
		_, skipped, err2 := read(false)
		if diff := cmp.Diff(headers, skipped); diff != "" {
			t.Fatalf("headers with bodies skipped (-copied +skipped):\n%s", diff)
		}
		if err2.Error() != err.Error() {
			t.Fatalf("error with bodies skipped = %v; copied = %v", err2, err)
		}
	})
}

func FuzzParseStartup(f *testing.F) {
	f.Add([]byte{
		0, 0, 0, 22, // length
		0, 3, 0, 0, // protocol 3.0
		'u', 's', 'e', 'r', 0, // key
		'a', 'l', 'i', 'c', 'e', 0, // value
		0, // terminator
	})
	f.Add([]byte{
		0, 0, 0, 22, // length
		0, 3, 0, 9, // protocol 3.9, unknown minor
		'u', 's', 'e', 'r', 0, // key
		'a', 'l', 'i', 'c', 'e', 0, // value
		0, // terminator
	})
	f.Add([]byte{
		0, 0, 0, 8, // length
		0x04, 0xd2, 0x16, 0x2f, // SSLRequest code 1234.5679
	})
	f.Add([]byte{
		0, 0, 0, 8, // length
		0x04, 0xd2, 0x16, 0x30, // GSSENCRequest code 1234.5680
	})
	f.Add([]byte{
		0, 0, 0, 16, // length
		0x04, 0xd2, 0x16, 0x2e, // CancelRequest code 1234.5678
		0, 0, 0x30, 0x39, // process ID
		0xde, 0xad, 0xbe, 0xef, // secret key
	})
	f.Add([]byte{
		0, 0, 0, 13, // length
		0, 2, 0, 0, // protocol 2.0
		'u', 0, 'a', 0, 0, // user u=a
	})
	f.Add([]byte{
		0, 0, 0, 4, // length below the minimum of 8
	})

	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(p []byte) {
			s, err := pgwire.ParseStartup(p)
			if err != nil {
				return
			}
			if !bytes.Equal(s.Raw, p) {
				t.Fatalf("Raw = %q; want the input %q", s.Raw, p)
			}
			switch s.Kind {
			case pgwire.SSLRequest, pgwire.GSSENCRequest:
				if len(p) != 8 {
					t.Fatalf("%v of %d bytes", s.Kind, len(p))
				}
			case pgwire.CancelRequest:
				// Re-encoding gives the packet back when its length field
				// is right (always true of one from ReadStartup).
				enc, err := s.Cancel.Encode(nil)
				if err != nil {
					t.Fatalf("re-encode %+v: %v", s.Cancel, err)
				}
				if binary.BigEndian.Uint32(p) == uint32(len(p)) && !bytes.Equal(enc, p) {
					t.Fatalf("CancelRequest re-encoded as %q; want %q", enc, p)
				}
			case pgwire.StartupMessage:
				if s.Version>>16 != 3 {
					t.Fatalf("accepted protocol %d.%d", s.Version>>16, s.Version&0xffff)
				}
				// Parameters survive re-encoding.
				enc, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: s.Params}).Encode(nil)
				if err != nil {
					t.Fatalf("re-encode: %v", err)
				}
				s2, err := pgwire.ParseStartup(enc)
				if err != nil {
					t.Fatalf("re-parse %q: %v", enc, err)
				}
				if diff := cmp.Diff(s.Params, s2.Params); diff != "" {
					t.Fatalf("parameters after re-encoding (-first +second):\n%s", diff)
				}
			default:
				t.Fatalf("unknown kind %v", s.Kind)
			}
		}
		check(data)
		r := pgwire.NewReader(bytes.NewReader(data), 0)
		if p, err := r.ReadStartup(pgwire.MaxStartupPacket); err == nil {
			check(p)
		}
	})
}

func FuzzSeverity(f *testing.F) {
	f.Add([]byte{
		'S', 'F', 'A', 'T', 'A', 'L', 0, // localized severity
		'V', 'F', 'A', 'T', 'A', 'L', 0, // severity
		'C', '2', '8', 'P', '0', '1', 0, // SQLSTATE
		'M', 'n', 'o', 0, // message
		0, // terminator
	})
	f.Add([]byte{
		'S', 'F', 'E', 'H', 'L', 'E', 'R', 0, // localized severity only
		0, // terminator
	})
	f.Add([]byte{
		'V', 'P', 'A', 'N', 'I', 'C', // severity, unterminated
	})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, body []byte) {
		sev := pgwire.Severity(body) // must not panic
		if fatal := pgwire.IsFatal(body); fatal != (sev == "FATAL" || sev == "PANIC") {
			t.Fatalf("IsFatal = %v with severity %q", fatal, sev)
		}
		// On a body pgproto3 accepts, normalized by re-encoding (one field
		// per code, empty ones left out), Severity agrees with pgproto3.
		var e pgproto3.ErrorResponse
		if e.Decode(body) != nil {
			return
		}
		enc, err := e.Encode(nil)
		if err != nil {
			return // over 1 GiB
		}
		want := e.SeverityUnlocalized
		if want == "" {
			want = e.Severity
		}
		if got := pgwire.Severity(enc[5:]); got != want {
			t.Fatalf("Severity(%q) = %q; pgproto3 says %q", enc[5:], got, want)
		}
	})
}

func FuzzDataRowValues(f *testing.F) {
	f.Add([]byte{
		0, 2, // two columns
		0, 0, 0, 3, 'a', 'b', 'c', // "abc"
		0xff, 0xff, 0xff, 0xff, // NULL
	})
	f.Add([]byte{
		0, 1, // one column
		0, 0, 0, 9, 'x', // length past the end
	})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, body []byte) {
		values, err := pgwire.DataRowValues(body) // must not panic
		if err != nil {
			return
		}
		// What decoded encodes to a body that decodes the same.
		enc, err := (&pgproto3.DataRow{Values: values}).Encode(nil)
		if err != nil {
			return
		}
		again, err := pgwire.DataRowValues(enc[5:])
		if err != nil {
			t.Fatalf("re-encoded %q: %v", enc[5:], err)
		}
		if diff := cmp.Diff(values, again); diff != "" {
			t.Fatalf("decode, encode, decode differs (-first +second):\n%s", diff)
		}
	})
}

func FuzzStripSASL(f *testing.F) {
	f.Add([]byte{
		0, 0, 0, 10, // AuthenticationSASL
		'S', 'C', 'R', 'A', 'M', '-', 'S', 'H', 'A', '-', '2', '5', '6', '-', 'P', 'L', 'U', 'S', 0, // mechanism
		'S', 'C', 'R', 'A', 'M', '-', 'S', 'H', 'A', '-', '2', '5', '6', 0, // mechanism
		0, // terminator
	}, "SCRAM-SHA-256-PLUS")
	f.Add([]byte{
		0, 0, 0, 10, // AuthenticationSASL
		'S', 'C', 'R', 'A', 'M', '-', 'S', 'H', 'A', '-', '2', '5', '6', 0, // mechanism
		0, // terminator
	}, "SCRAM-SHA-256-PLUS")
	f.Add([]byte{
		0, 0, 0, 5, // AuthenticationMD5Password
		1, 2, 3, 4, // salt
	}, "SCRAM-SHA-256-PLUS")

	f.Fuzz(func(t *testing.T, body []byte, name string) {
		in := bytes.Clone(body)
		out, ok, err := pgwire.StripSASLMechanism(body, name)
		if !bytes.Equal(body, in) {
			t.Fatalf("input changed from %q to %q", in, body)
		}
		var before pgproto3.AuthenticationSASL
		if decErr := before.Decode(body); (decErr == nil) != (err == nil) {
			t.Fatalf("StripSASLMechanism error %v, pgproto3 decode error %v", err, decErr)
		}
		if err != nil {
			return
		}
		if !ok {
			if !bytes.Equal(out, body) {
				t.Fatalf("no %q offered, yet the body changed to %q", name, out)
			}
			if slices.Contains(before.AuthMechanisms, name) {
				t.Fatalf("%q offered in %q but not stripped", name, body)
			}
			return
		}
		var after pgproto3.AuthenticationSASL
		if err := after.Decode(out); err != nil {
			t.Fatalf("stripped body %q does not decode: %v", out, err)
		}
		want := slices.DeleteFunc(slices.Clone(before.AuthMechanisms), func(m string) bool { return m == name })
		if diff := cmp.Diff(want, after.AuthMechanisms); diff != "" && (len(want) != 0 || len(after.AuthMechanisms) != 0) {
			t.Fatalf("mechanisms after stripping %q (-want +got):\n%s", name, diff)
		}
	})
}
