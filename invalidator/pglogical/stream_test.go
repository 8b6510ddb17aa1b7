package pglogical_test

import (
	"context"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlcache/sqlcache/invalidator/pglogical"
)

// unreachableDSN returns a DSN of a port where nothing listens.
func unreachableDSN(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "postgres://app@" + addr + "/db?sslmode=disable&connect_timeout=1"
}

// TestStreamUnreachable: a stream whose server is unreachable never
// panics or blocks its caller, reports the error, is never fresh, and
// Close ends all its goroutines.
func TestStreamUnreachable(t *testing.T) {
	before := runtime.NumGoroutine()
	s := pglogical.Start(pglogical.Config{DSN: unreachableDSN(t), Database: "db", MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	deadline := time.Now().Add(5 * time.Second)
	for s.Status().LastError == "" {
		if time.Now().After(deadline) {
			t.Fatal("no error reported")
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := s.Status()
	if st.Connected || !st.FreshAsOf.IsZero() || !strings.Contains(st.LastError, "connect") || !st.Temporary {
		t.Errorf("status %+v; want not connected, not fresh, a connect error, temporary", st)
	}

	// WaitFresh waits for its context, or for Close.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if s.WaitFresh(ctx, time.Time{}) {
		t.Error("WaitFresh: true while unreachable")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if s.WaitFresh(context.Background(), time.Time{}) {
			t.Error("WaitFresh: true after Close")
		}
	}()
	time.Sleep(10 * time.Millisecond)
	s.Close()
	wg.Wait()
	s.Close()

	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close; %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFailureLoggedBeforeStatus: whoever sees an error in Status finds it
// in the log already. The handler holds the stream's first warning until
// the test has the stream, then reads Status: the error must not be in it
// yet.
func TestFailureLoggedBeforeStatus(t *testing.T) {
	var stream atomic.Pointer[pglogical.Stream]
	ready := make(chan struct{})
	seen := make(chan string, 1)
	h := &funcHandler{handle: func(r slog.Record) {
		<-ready
		select {
		case seen <- stream.Load().Status().LastError:
		default:
		}
	}}
	s := pglogical.Start(pglogical.Config{DSN: unreachableDSN(t), Database: "db", Logger: slog.New(h),
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	defer s.Close()
	stream.Store(s)
	close(ready)
	select {
	case got := <-seen:
		if got != "" {
			t.Errorf("Status showed %q before the failure was logged", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure logged")
	}
}

// funcHandler passes records at Warn and above to handle.
type funcHandler struct{ handle func(slog.Record) }

func (h *funcHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *funcHandler) Handle(_ context.Context, r slog.Record) error {
	h.handle(r)
	return nil
}
func (h *funcHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *funcHandler) WithGroup(string) slog.Handler      { return h }

func TestCheckBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  pglogical.Config
		want string
	}{
		{"bad slot name", pglogical.Config{DSN: "postgres://x@127.0.0.1:1/db", Slot: "No"}, "invalid replication slot name"},
		{"bad DSN", pglogical.Config{DSN: "postgres://x@127.0.0.1:notaport/db"}, "bad DSN"},
		{"unreachable", pglogical.Config{}, "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.DSN == "" {
				tt.cfg.DSN = unreachableDSN(t)
			}
			err := pglogical.Check(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check: %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
