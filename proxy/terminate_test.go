package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// lockedBuffer is a bytes.Buffer safe for a logger and a test to share.
type lockedBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTerminateIsNotALostBackend: a backend that closes as soon as it
// reads the client's Terminate, as PostgreSQL does, may do so before the
// session has begun closing; that is not logged as a lost backend. The
// race is run many times because it is one.
func TestTerminateIsNotALostBackend(t *testing.T) {
	var logs lockedBuffer
	p, err := New(Config{
		Backend:      "127.0.0.1:1",
		Cache:        CacheConfig{Enabled: true},
		Invalidation: InvalidationConfig{Mode: InvalidationNone},
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	for range 200 {
		client, backend := startSession(t, p)
		go func() {
			r := pgwire.NewReader(backend, 0)
			for {
				msg, err := r.Next()
				if err != nil || msg.Type == pgwire.MsgTerminate {
					backend.Close()
					return
				}
			}
		}()
		if _, err := client.Write([]byte{pgwire.MsgTerminate, 0, 0, 0, 4}); err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(client); err != nil || len(b) > 0 {
			t.Fatalf("after Terminate the client read %q, %v; want nothing, then the end", b, err)
		}
	}
	if out := logs.String(); strings.Contains(out, "backend connection lost") {
		t.Errorf("a backend that closed after Terminate was logged as lost:\n%s", out)
	}
}
