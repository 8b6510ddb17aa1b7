package integration

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestHostileInput sends malformed and hostile input. Each case must close
// only its own connection, with the right error where the protocol has one,
// and a valid client must succeed right after.
func TestHostileInput(t *testing.T) {
	pg := StartPostgres(t)
	sc := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr(), StartupTimeout: time.Second, MaxMessageBytes: 1 << 20})
	startup := func() []byte {
		b, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters: map[string]string{"user": "app", "database": "app"}}).Encode(nil)
		return b
	}
	// A session that is ready for queries, to send bad messages on.
	session := func(t *testing.T) *rawConn {
		c, frames := dialRaw(t, sc.Addr, map[string]string{"user": "app", "database": "app"})
		if last := frames[len(frames)-1]; last[0] != 'Z' {
			t.Fatalf("startup ended with %v", last)
		}
		return c
	}
	msg := func(typ byte, claim uint32, body string) []byte {
		b := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], claim)
		return append(b, body...)
	}

	for _, tc := range []struct {
		name string
		// send writes the bad input; wantCode is the SQLSTATE of the
		// FATAL error the client must get before the close ("" = just
		// closed).
		send     func(t *testing.T) *rawConn
		wantCode string
		wantText string
	}{
		{name: "truncated_startup", send: func(t *testing.T) *rawConn {
			c := rawDial(t, sc.Addr)
			c.writeRaw([]byte{0, 0, 0, 100, 0, 3, 0, 0, 'u', 's'})
			c.conn.(*net.TCPConn).CloseWrite()
			return c
		}},
		{name: "huge_startup_length", wantCode: "08P01", wantText: "invalid length of startup packet", send: func(t *testing.T) *rawConn {
			c := rawDial(t, sc.Addr)
			c.writeRaw([]byte{0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0})
			return c
		}},
		{name: "tiny_startup_length", wantCode: "08P01", wantText: "invalid length of startup packet", send: func(t *testing.T) *rawConn {
			c := rawDial(t, sc.Addr)
			c.writeRaw([]byte{0, 0, 0, 2})
			return c
		}},
		{name: "protocol_2", wantCode: "0A000", wantText: "unsupported frontend protocol", send: func(t *testing.T) *rawConn {
			c := rawDial(t, sc.Addr)
			c.writeRaw([]byte{0, 0, 0, 8, 0, 2, 0, 0})
			return c
		}},
		{name: "bytes_after_ssl_request", wantCode: "08P01", wantText: "unencrypted data after SSL request", send: func(t *testing.T) *rawConn {
			c := rawDial(t, sc.Addr)
			c.writeRaw(append([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}, startup()...))
			return c
		}},
		{name: "silent_client", send: func(t *testing.T) *rawConn {
			// startup_timeout is 1s here.
			return rawDial(t, sc.Addr)
		}},
		{name: "huge_message_length", wantCode: "08P01", wantText: "postgres.max_message_bytes", send: func(t *testing.T) *rawConn {
			c := session(t)
			c.writeRaw(msg('Q', 0x7ffffff0, "SELECT 1"))
			return c
		}},
		{name: "message_length_below_4", wantCode: "08P01", wantText: "invalid message length", send: func(t *testing.T) *rawConn {
			c := session(t)
			c.writeRaw(msg('Q', 2, ""))
			return c
		}},
		{name: "truncated_message", send: func(t *testing.T) *rawConn {
			c := session(t)
			c.writeRaw(msg('Q', 100, "SELECT"))
			c.conn.(*net.TCPConn).CloseWrite()
			return c
		}},
		{name: "unknown_message_type", wantCode: "08P01", wantText: "invalid frontend message type", send: func(t *testing.T) *rawConn {
			// Passed through: the backend judges it, as it would directly.
			c := session(t)
			c.writeRaw(msg('!', 4, ""))
			return c
		}},
		{name: "server_message_from_client", wantCode: "08P01", wantText: "invalid frontend message type", send: func(t *testing.T) *rawConn {
			c := session(t)
			c.writeRaw(msg('Z', 5, "I"))
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.send(t)
			start := time.Now()
			frames := c.readAll()
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("connection closed after %v", d)
			}
			if tc.wantCode != "" {
				last := frame(nil)
				if len(frames) > 0 {
					last = frames[len(frames)-1]
				}
				if last == nil || !isFatalFrame(last) || errorCode(last) != tc.wantCode || !bytes.Contains(last, []byte(tc.wantText)) {
					t.Errorf("got %v before the close; want a FATAL %s error containing %q", frames, tc.wantCode, tc.wantText)
				}
			} else {
				for _, f := range frames {
					if f[0] == 'Z' {
						t.Errorf("got %v; want the connection closed without a ReadyForQuery", frames)
					}
				}
			}
			checkHealthy(t, sc)
		})
	}

	t.Run("execute_without_bind", func(t *testing.T) {
		// An error, not a fatal one: the session goes on.
		c := session(t)
		got := c.roundTrip(1, &pgproto3.Execute{Portal: "nope"}, &pgproto3.Sync{})
		if len(got) != 2 || errorCode(got[0]) != "34000" || got[1][0] != 'Z' {
			t.Errorf("got %v; want error 34000 then ReadyForQuery", got)
		}
		got = c.roundTrip(1, &pgproto3.Query{String: "SELECT 1"})
		if got[len(got)-1][0] != 'Z' || got[0][0] != 'T' {
			t.Errorf("query after the error: %v", got)
		}
	})

	t.Run("random_garbage_connections", func(t *testing.T) {
		// 50 connections of random bytes at once, some after a valid
		// startup.
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(i), 42))
				conn, err := net.DialTimeout("tcp", sc.Addr, 5*time.Second)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				defer conn.Close()
				garbage := make([]byte, r.IntN(300)+1)
				for j := range garbage {
					garbage[j] = byte(r.Uint32())
				}
				if i%2 == 0 {
					garbage = append(startup(), garbage...)
				}
				conn.Write(garbage)
				// Half-close: a garbage prefix of a valid message
				// would otherwise wait for the rest, as PostgreSQL
				// does.
				conn.(*net.TCPConn).CloseWrite()
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				var sink bytes.Buffer
				sink.ReadFrom(conn)
			}()
		}
		wg.Wait()
		checkHealthy(t, sc)
	})
	if strings.Contains(sc.Output(), "panic") {
		t.Errorf("sqlcache panicked:\n%s", sc.Output())
	}
}

func rawDial(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// checkHealthy fails the test unless sqlcache runs and a valid client can
// log in and query.
func checkHealthy(t *testing.T, sc *Sqlcache) {
	t.Helper()
	if !sc.Alive() {
		t.Fatalf("sqlcache exited:\n%s", sc.Output())
	}
	conn := connect(t, sc.URL("app", "", "app"))
	var one int
	if err := conn.QueryRow(t.Context(), `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatalf("valid client after hostile input: %d, %v", one, err)
	}
}
