package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"
)

// memResult is the memory measurement: sqlcache's RSS growth while its
// cache fills with many small distinct entries, next to its own accounting.
type memResult struct {
	wanted      int     // entries asked for (rows read, one each)
	entries     float64 // sqlcache_cache_entries after the fill
	misses      float64 // cacheable requests relayed and filled
	rssBefore   int64
	rssAfter    int64
	cacheBytes  float64 // sqlcache_cache_bytes after the fill
	payload     float64 // answer bytes relayed to clients during the fill
	dropped     float64 // entries invalidated or evicted during the fill
	resets      float64 // sqlcache_stream_resets_total during the fill
	fillSeconds float64
	timedOut    bool   // the fill was stopped at -memory-timeout
	note        string // a problem of its sqlcache (see target.note)
	err         error
}

// rssGrowth is RSS after minus before.
func (m *memResult) rssGrowth() float64 { return float64(m.rssAfter - m.rssBefore) }

// memTable holds one row per entry to cache.
const memTable = "sqlbench_mem"

// measureMemory fills a fresh sqlcache (cache on) with o.memEntries
// distinct point reads and reads its RSS and metrics before and after.
// Failures are reported in the result; only the context ending is returned.
func measureMemory(ctx context.Context, e *env, o options, pgPort int) (*memResult, error) {
	m := &memResult{wanted: o.memEntries}
	fmt.Printf("==> memory: filling a fresh sqlcache with %d distinct entries (at most %s)\n", o.memEntries, o.memTimeout)
	if err := createMemTable(ctx, pgPort, o.memEntries); err != nil {
		m.err = err
		return m, ctx.Err()
	}
	t, err := e.startTarget(ctx, tMemory, pgPort, o)
	if err != nil {
		m.err = err
		return m, ctx.Err()
	}
	defer e.stopProc(t.proc)
	m.note = t.note
	m.err = fillAndMeasure(ctx, e, o, t, m)
	if m.err == nil {
		fmt.Printf("    %.0f entries in %.0fs; RSS +%s, cache_bytes %s, payload %s\n", m.entries, m.fillSeconds,
			mib(m.rssGrowth()), mib(m.cacheBytes), mib(m.payloadHeld()))
	}
	return m, ctx.Err()
}

// createMemTable creates sqlbench_mem(id, v) with n rows.
func createMemTable(ctx context.Context, pgPort, n int) error {
	return execSQL(ctx, pgPort, benchDB,
		"DROP TABLE IF EXISTS "+memTable,
		fmt.Sprintf("CREATE TABLE %s AS SELECT g AS id, (g::bigint * 7919 %% 1000003)::int AS v FROM generate_series(1, %d) g", memTable, n),
		"ALTER TABLE "+memTable+" ADD PRIMARY KEY (id)",
		"VACUUM ANALYZE "+memTable)
}

// fillAndMeasure runs the fill and records RSS and metrics around it.
func fillAndMeasure(ctx context.Context, e *env, o options, t *target, m *memResult) error {
	before, err := scrape(ctx, t.admin)
	if err != nil {
		return err
	}
	if m.rssBefore, err = vmRSS(t.proc.pid()); err != nil {
		return err
	}
	start := time.Now()
	if err := fill(ctx, e, o, t.port); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return err
		}
		m.timedOut = true
	}
	m.fillSeconds = time.Since(start).Seconds()
	after, err := scrape(ctx, t.admin)
	if err != nil {
		return err
	}
	if m.rssAfter, err = vmRSS(t.proc.pid()); err != nil {
		return err
	}
	m.entries = after["sqlcache_cache_entries"]
	m.cacheBytes = after["sqlcache_cache_bytes"]
	m.misses = delta(before, after, "sqlcache_cache_misses_total")
	m.payload = delta(before, after, `sqlcache_relayed_bytes_total{direction="to_client"}`)
	m.dropped = delta(before, after, "sqlcache_cache_invalidated_entries_total") +
		delta(before, after, "sqlcache_cache_evictions_total")
	m.resets = delta(before, after, "sqlcache_stream_resets_total")
	return nil
}

// payloadHeld is the payload of the entries still cached: the fill's
// payload per filled entry times the entries.
func (m *memResult) payloadHeld() float64 {
	if m.misses == 0 {
		return 0
	}
	return m.payload / m.misses * m.entries
}

// lostEntries reports whether a noticeable share of the filled entries was
// dropped before the end, which makes RSS growth per entry overstated
// (the dropped entries' memory is not yet returned to the OS).
func (m *memResult) lostEntries() bool {
	return m.entries < 0.95*m.misses
}

// fill reads every row of sqlbench_mem once through sqlcache with
// pgbench's prepared protocol, each client its own slice of ids; stopped
// (context.DeadlineExceeded) at o.memTimeout.
func fill(ctx context.Context, e *env, o options, port int) error {
	per := (o.memEntries + o.clients - 1) / o.clients
	fctx, cancel := context.WithTimeout(ctx, o.memTimeout)
	defer cancel()
	run := pgbenchRun{port: port, clients: o.clients, threads: o.threads, scale: o.scale,
		args: []string{"-M", "prepared", "-t", strconv.Itoa(per), "-D", "n=0", "-D", "per=" + strconv.Itoa(per),
			"-f", filepath.Join(o.scripts, "memory-fill.sql")}}
	_, err := run.run(fctx, e.tools.pgbench, e.dir)
	if fctx.Err() != nil && ctx.Err() == nil {
		return context.DeadlineExceeded
	}
	return err
}

// mib formats bytes as MiB.
func mib(b float64) string {
	return fmt.Sprintf("%.1f MiB", b/(1<<20))
}
