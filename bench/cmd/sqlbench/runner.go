package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// sample is one measured run of a workload against a target.
type sample struct {
	round    int
	tps      float64
	avgMs    float64
	p99Ms    float64
	hitRatio float64 // NaN when unknown or nothing cacheable ran
	invalPS  float64 // sqlcache invalidating events per second; NaN otherwise
	resets   float64 // sqlcache change-stream resets during the run
	err      error
}

// cacheCounters is a cache's counters at one moment.
type cacheCounters struct {
	hits, misses, invalidations float64
	resets                      float64 // sqlcache_stream_resets_total
	known                       bool    // false: no cache or not readable
}

// runner runs every workload against every target.
type runner struct {
	env     *env
	opts    options
	pgPort  int
	targets []*target
	// results[workload][target] lists samples in round order.
	results map[string]map[string][]sample
}

// runAll runs, per workload and round, every target in turn.
func (r *runner) runAll(ctx context.Context, ws []workload) error {
	r.results = map[string]map[string][]sample{}
	for _, w := range ws {
		fmt.Printf("==> workload %s: %s\n", w.name, w.title)
		r.results[w.name] = map[string][]sample{}
		for round := 1; round <= r.opts.rounds; round++ {
			if err := r.runRound(ctx, w, round); err != nil {
				return err
			}
		}
		if w.writes {
			if err := execSQL(ctx, r.pgPort, benchDB, "VACUUM ANALYZE"); err != nil {
				return fmt.Errorf("after %s: %w", w.name, err)
			}
		}
	}
	return nil
}

// runRound runs one round of a workload: every target once.
func (r *runner) runRound(ctx context.Context, w workload, round int) error {
	line := fmt.Sprintf("    round %d/%d:", round, r.opts.rounds)
	for _, t := range r.targets {
		if !t.up() {
			continue
		}
		s, err := r.measure(ctx, w, t, round)
		if err != nil {
			return err // the context ended
		}
		r.results[w.name][t.name] = append(r.results[w.name][t.name], s)
		if s.err != nil {
			line += fmt.Sprintf(" %s failed;", t.name)
			fmt.Printf("    %s %s round %d: %v\n", w.name, t.name, round, s.err)
		} else {
			line += fmt.Sprintf(" %s %.0f;", t.name, s.tps)
		}
	}
	fmt.Println(line)
	return nil
}

// measure runs the warm-up and the measured run of w against t. Errors of
// the run go in the sample; only the context ending is returned.
func (r *runner) measure(ctx context.Context, w workload, t *target, round int) (sample, error) {
	s, err := r.measureOnce(ctx, w, t, round)
	s.err = annotate(t.name, s.err)
	return s, err
}

// pgpoolOpenTxn is pgbench's complaint when pgpool-II in raw mode leaves
// an autocommitted extended-protocol write inside the transaction it
// opened itself (pgpool2 issue #172).
const pgpoolOpenTxn = "end of script reached without completing the last transaction"

// annotate explains known failures of a target.
func annotate(target string, err error) error {
	if err != nil && target == tPgpool && strings.Contains(err.Error(), pgpoolOpenTxn) {
		return fmt.Errorf("%w [pgpool-II raw mode keeps autocommitted extended-protocol UPDATEs in an open transaction, see bench/README.md]", err)
	}
	return err
}

// measureOnce is measure without the annotation.
func (r *runner) measureOnce(ctx context.Context, w workload, t *target, round int) (sample, error) {
	s := sample{round: round, hitRatio: math.NaN(), invalPS: math.NaN()}
	if w.writes {
		if err := r.resetWrites(ctx); err != nil {
			s.err = err
			return s, ctx.Err()
		}
	}
	run := r.pgbench(w, t, r.opts.warmupSeconds(), "")
	if _, err := run.run(ctx, r.env.tools.pgbench, r.env.dir); err != nil {
		s.err = fmt.Errorf("warm-up: %w", err)
		return s, ctx.Err()
	}
	before := r.counters(ctx, t)
	run = r.pgbench(w, t, r.opts.durationSeconds(), r.env.path(fmt.Sprintf("log-%s-%s-%d", w.name, t.name, round)))
	start := time.Now()
	out, err := run.run(ctx, r.env.tools.pgbench, r.env.dir)
	elapsed := time.Since(start)
	if err != nil {
		s.err = err
		return s, ctx.Err()
	}
	after := r.counters(ctx, t)
	s.tps, s.avgMs, s.p99Ms = out.tps, out.avgMs, out.p99Ms
	s.hitRatio, s.invalPS = cacheFigures(before, after, elapsed, t.name == tSqlcache || t.name == tNoStream)
	s.resets = after.resets - before.resets
	return s, ctx.Err()
}

// pgbench returns the invocation of w against t for seconds.
func (r *runner) pgbench(w workload, t *target, seconds int, logPrefix string) pgbenchRun {
	return pgbenchRun{port: t.port, args: w.args, seconds: seconds, clients: r.opts.clients,
		threads: r.opts.threads, scale: r.opts.scale, logPrefix: logPrefix}
}

// resetWrites undoes what the last write run left behind, as pgbench does
// itself without -n: vacuum the small hot tables, empty the history.
func (r *runner) resetWrites(ctx context.Context) error {
	return execSQL(ctx, r.pgPort, benchDB,
		"VACUUM pgbench_branches, pgbench_tellers", "TRUNCATE pgbench_history")
}

// counters reads the target's cache counters; unknown for targets without
// a readable cache.
func (r *runner) counters(ctx context.Context, t *target) cacheCounters {
	switch t.name {
	case tSqlcache, tNoStream:
		m, err := scrape(ctx, t.admin)
		if err != nil {
			return cacheCounters{}
		}
		return cacheCounters{hits: m["sqlcache_cache_hits_total"], misses: m["sqlcache_cache_misses_total"],
			invalidations: m["sqlcache_cache_invalidations_total"], resets: m["sqlcache_stream_resets_total"], known: true}
	case tPgpool:
		hits, selects, err := pgpoolCache(ctx, t.port)
		if err != nil {
			return cacheCounters{}
		}
		return cacheCounters{hits: hits, misses: selects, known: true}
	}
	return cacheCounters{}
}

// cacheFigures returns the hit ratio and (for sqlcache) invalidations per
// second between two readings.
func cacheFigures(before, after cacheCounters, elapsed time.Duration, invalidations bool) (hitRatio, invalPS float64) {
	hitRatio, invalPS = math.NaN(), math.NaN()
	if !before.known || !after.known {
		return hitRatio, invalPS
	}
	hits, misses := after.hits-before.hits, after.misses-before.misses
	if hits+misses > 0 {
		hitRatio = hits / (hits + misses)
	}
	if invalidations {
		invalPS = (after.invalidations - before.invalidations) / elapsed.Seconds()
	}
	return hitRatio, invalPS
}
