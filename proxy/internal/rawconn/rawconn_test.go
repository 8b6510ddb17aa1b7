package rawconn_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/sqlcache/sqlcache/proxy/internal/rawconn"
)

// pair returns the two ends of a loopback TCP connection, both wrapped.
func pair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.FailNow()
	}
	a, b = rawconn.Wrap(c), rawconn.Wrap(s)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestWrap(t *testing.T) {
	a, _ := pair(t)
	_, raw := a.(*rawconn.Conn)
	if want := runtime.GOOS == "linux"; raw != want {
		t.Errorf("Wrap(TCPConn) is a *rawconn.Conn: %v; want %v", raw, want)
	}
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if got := rawconn.Wrap(p); got != p {
		t.Errorf("Wrap(net.Pipe conn) = %T; want it unchanged", got)
	}
}

// TestLargeEcho writes more than the socket buffers hold in one Write, so
// both Write (EAGAIN, wait, resume) and Read (many partial reads) run
// their waiting paths.
func TestLargeEcho(t *testing.T) {
	a, b := pair(t)
	go io.Copy(b, b) // echo; io.Copy uses b's Read and Write
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	werr := make(chan error, 1)
	go func() {
		n, err := a.Write(want)
		if err == nil && n != len(want) {
			err = errors.New("short write")
		}
		werr <- err
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(a, got); err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("echoed bytes differ from those written")
	}
}

func TestEOF(t *testing.T) {
	a, b := pair(t)
	if _, err := b.Write([]byte("last")); err != nil {
		t.Fatal(err)
	}
	b.Close()
	got, err := io.ReadAll(a)
	if err != nil || string(got) != "last" {
		t.Fatalf("ReadAll = %q, %v; want \"last\", nil (Read ends with io.EOF)", got, err)
	}
	if n, err := a.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Errorf("Read after end = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestDeadline(t *testing.T) {
	a, _ := pair(t)
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := a.Read(make([]byte, 8))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past deadline: %v; want os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Read past deadline: %v is not a net.Error with Timeout()", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Errorf("Read past deadline: %#v; want a *net.OpError with Op read", err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	a, _ := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := a.Read(make([]byte, 8))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let Read wait in the poller
	a.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read on a closed conn: %v; want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
}

// TestReset: a peer that aborts the connection makes Read fail with
// ECONNRESET wrapped as net wraps it.
func TestReset(t *testing.T) {
	a, b := pair(t)
	if err := b.(interface{ SetLinger(int) error }).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	b.Close() // sends RST
	_, err := a.Read(make([]byte, 8))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after the peer's reset: %v; want ECONNRESET", err)
	}
	var se *os.SyscallError
	if !errors.As(err, &se) || se.Syscall != "read" {
		t.Errorf("Read after reset: %#v; want an *os.SyscallError for read", err)
	}
}

// TestNoAllocs: a cache hit is one Write of stored bytes and the read of
// the next request, and must allocate nothing (TestHitPathAllocations in
// proxy covers the session over in-memory pipes, not these conns).
func TestNoAllocs(t *testing.T) {
	a, b := pair(t)
	msg, buf := make([]byte, 64), make([]byte, 64)
	n := testing.AllocsPerRun(200, func() {
		if _, err := a.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, buf); err != nil {
			t.Fatal(err)
		}
	})
	if n > 0 {
		t.Errorf("a Write and a Read allocate %v times; want 0", n)
	}
}

// BenchmarkPingPong measures one small request and reply over loopback,
// the relay's unit of work, with net's Read/Write and with rawconn's.
func BenchmarkPingPong(b *testing.B) {
	for _, wrapped := range []bool{false, true} {
		name := "net"
		if wrapped {
			name = "rawconn"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			wrap := func(c net.Conn) net.Conn {
				if wrapped {
					return rawconn.Wrap(c)
				}
				return c
			}
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c = wrap(c)
				defer c.Close()
				buf := make([]byte, 128)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			c = wrap(c)
			defer c.Close()
			msg, buf := make([]byte, 128), make([]byte, 128)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestHappensBefore is for the race detector (go test -race): what one
// goroutine stored before writing to a connection is visible to the
// goroutine that read those bytes, as with net's own Read and Write. The
// raw system calls are invisible to the detector; without rawconn telling
// it so, this reports a data race on shared.
func TestHappensBefore(t *testing.T) {
	a, b := pair(t)
	var shared int
	go func() {
		shared = 42
		a.Write([]byte{1})
	}()
	if _, err := io.ReadFull(b, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if shared != 42 {
		t.Errorf("shared = %d after the read; want 42", shared)
	}
}
