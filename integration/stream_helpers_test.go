package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sqlcache/sqlcache/invalidator"
	"github.com/sqlcache/sqlcache/invalidator/pglogical"
)

// streamRecorder is a pglogical.Handler that records every call.
type streamRecorder struct {
	stream atomic.Pointer[pglogical.Stream] // set by startStream, for Reset

	mu      sync.Mutex // protects the fields below
	applies [][]invalidator.Change
	// freshAtReset is FreshAsOf during each Reset call after the first
	// (during the first, the stream may not be known yet).
	resets       int
	freshAtReset []time.Time
}

func (r *streamRecorder) Reset(db string) {
	var fresh time.Time
	s := r.stream.Load()
	if s != nil {
		fresh = s.FreshAsOf()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets++
	if s != nil {
		r.freshAtReset = append(r.freshAtReset, fresh)
	}
}

func (r *streamRecorder) Apply(db string, changes []invalidator.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applies = append(r.applies, slices.Clone(changes))
}

// mark returns how many Apply calls have been recorded, for since.
func (r *streamRecorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.applies)
}

// since returns the Apply calls recorded after mark.
func (r *streamRecorder) since(mark int) [][]invalidator.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applies[mark:])
}

// resetCount returns the number of Reset calls.
func (r *streamRecorder) resetCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resets
}

// count returns how many commits applied after mark include a change of
// kind to public.table. A transaction's changes are applied again once a
// heartbeat sees it visible: each commit counts once, by its position.
func (r *streamRecorder) count(mark int, table string, kind invalidator.ChangeKind) int {
	commits := make(map[uint64]bool)
	for _, changes := range r.since(mark) {
		for _, c := range changes {
			if c.Schema == "public" && c.Table == table && c.Kind == kind {
				commits[c.Pos] = true
				break
			}
		}
	}
	return len(commits)
}

// change is a Change without its position, for comparisons.
type change struct {
	Table string
	Kind  invalidator.ChangeKind
}

func (c change) String() string { return c.Table + "/" + c.Kind.String() }

// waitApply waits up to limit for one Apply call after mark whose changes
// (of schema public, ignoring positions) are exactly want, and returns it.
func (r *streamRecorder) waitApply(t *testing.T, mark int, limit time.Duration, want ...change) []invalidator.Change {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		applies := r.since(mark)
		for _, changes := range applies {
			var got []change
			for _, c := range changes {
				if c.Schema == "public" {
					got = append(got, change{c.Table, c.Kind})
				}
			}
			if slices.Equal(got, want) {
				return changes
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Apply of %v within %v; got %v", want, limit, applies)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// logBuffer collects a stream's log lines, and passes them to t.Log.
type logBuffer struct {
	t   testing.TB
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf.Write(p)
	b.mu.Unlock()
	b.t.Logf("stream: %s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startStream starts a stream of database postgres as the superuser, with
// cfg's changes, and closes it when the test ends.
func startStream(t *testing.T, p *Postgres, edit func(*pglogical.Config)) (*pglogical.Stream, *streamRecorder, *logBuffer) {
	t.Helper()
	rec := &streamRecorder{}
	logs := &logBuffer{t: t}
	cfg := pglogical.Config{
		DSN:               p.URL("postgres", "", "postgres"),
		Database:          "postgres",
		CreatePublication: true,
		Logger:            slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Handler:           rec,
	}
	if edit != nil {
		edit(&cfg)
	}
	s := pglogical.Start(cfg)
	rec.stream.Store(s)
	t.Cleanup(s.Close)
	return s, rec, logs
}

// waitUntil polls cond every 2ms for up to limit and returns how long it
// took, or fails the test naming what.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// waitStreamFresh waits until s is fresh as of now.
func waitStreamFresh(t *testing.T, s *pglogical.Stream, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	if !s.WaitFresh(ctx, time.Now()) {
		t.Fatalf("stream not fresh within %v: %+v", limit, s.Status())
	}
}

// slotExists reports whether the replication slot exists.
func slotExists(t *testing.T, admin *pgx.Conn, name string) bool {
	t.Helper()
	var n int
	if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&n); err != nil {
		t.Fatalf("reading pg_replication_slots: %v", err)
	}
	return n > 0
}

// dropSlot drops a replication slot, waiting for a walsender that still
// holds it to exit (it does so shortly after its client closes).
func dropSlot(t *testing.T, admin *pgx.Conn, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := admin.Exec(t.Context(), `SELECT pg_drop_replication_slot($1)`, name)
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "55006") || time.Now().After(deadline) {
			t.Fatalf("dropping slot %s: %v", name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// streamSummary describes calls for failure messages.
func streamSummary(applies [][]invalidator.Change) string {
	var b strings.Builder
	for _, a := range applies {
		fmt.Fprintf(&b, "%v\n", a)
	}
	return b.String()
}

// errorsAs is errors.As, for the test files that have no other use for
// package errors.
func errorsAs(err error, target any) bool { return errors.As(err, target) }
