// Command sqlbench compares sqlcache with PostgreSQL, PgBouncer and
// pgpool-II using pgbench: it starts a throwaway PostgreSQL and every
// target in a temp dir, runs the workloads interleaved over several rounds,
// and writes the medians as Markdown and an SVG chart to bench/results.
// Run it from the repository root after make build; see bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	duration, warmup time.Duration
	rounds           int
	clients, threads int
	scale            int
	workloads        []string
	targets          []string
	memory           bool
	memEntries       int
	memTimeout       time.Duration
	bin              string // sqlcache binary
	pglimit          string // pglimit binary; empty: no pglimit target
	scripts          string // pgbench scripts
	results          string // where results go
}

// durationSeconds and warmupSeconds are pgbench's -T: whole seconds, ≥ 1.
func (o options) durationSeconds() int { return wholeSeconds(o.duration) }
func (o options) warmupSeconds() int   { return wholeSeconds(o.warmup) }

func wholeSeconds(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "sqlbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o, os.Args[1:])
	stop()
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "sqlbench: interrupted; everything it started is stopped and its temp dir removed")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sqlbench:", err)
		os.Exit(1)
	}
}

// parseFlags parses and checks the flags.
func parseFlags(args []string) (options, error) {
	var o options
	var workloads, targets string
	fs := flag.NewFlagSet("sqlbench", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each pgbench run (whole seconds)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each run (whole seconds)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every workload against every target once")
	fs.IntVar(&o.clients, "clients", 8, "pgbench -c")
	fs.IntVar(&o.threads, "threads", 2, "pgbench -j")
	fs.IntVar(&o.scale, "scale", 10, "pgbench -i -s")
	fs.StringVar(&workloads, "workloads", "all", "comma-separated workloads: "+strings.Join(allWorkloads, ","))
	fs.StringVar(&targets, "targets", "all", "comma-separated targets: "+strings.Join(allTargets, ","))
	fs.BoolVar(&o.memory, "memory", true, "measure sqlcache's RSS with -memory-entries cached entries")
	fs.IntVar(&o.memEntries, "memory-entries", 1_000_000, "distinct small entries to cache for -memory")
	fs.DurationVar(&o.memTimeout, "memory-timeout", 90*time.Second, "stop filling the cache after this long")
	fs.StringVar(&o.bin, "sqlcache", "bin/sqlcache", "sqlcache binary (make build)")
	fs.StringVar(&o.pglimit, "pglimit", "", "pglimit binary (../shared/tools/pglimit, built); adds the target pglimit for your own side-by-side runs")
	fs.StringVar(&o.scripts, "scripts", "bench/scripts", "directory of the pgbench scripts")
	fs.StringVar(&o.results, "results", "bench/results", "directory for the results")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.workloads, err = pickList("workloads", workloads, allWorkloads); err != nil {
		return o, err
	}
	// tNoStream is chosen only by name, never by "all"; pglimit is in
	// "all" once -pglimit names its binary.
	all := slices.Clone(allTargets)
	if o.pglimit != "" {
		all = append(all, tPglimit)
	}
	choices := append(slices.Clone(all), tNoStream)
	if targets == "all" {
		targets = strings.Join(all, ",")
	}
	if o.targets, err = pickList("targets", targets, choices); err != nil {
		return o, err
	}
	return o, o.check()
}

// pickList parses a comma-separated subset of all ("all" for every one),
// keeping all's order.
func pickList(flagName, s string, all []string) ([]string, error) {
	if s == "all" {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(all, n) {
			return nil, fmt.Errorf("-%s: unknown %q (have %s)", flagName, n, strings.Join(all, ","))
		}
		want[n] = true
	}
	var picked []string
	for _, n := range all {
		if want[n] {
			picked = append(picked, n)
		}
	}
	return picked, nil
}

// check validates numbers and that the binary and scripts exist.
func (o *options) check() error {
	if o.rounds < 1 || o.clients < 1 || o.threads < 1 || o.scale < 1 || o.memEntries < o.clients {
		return errors.New("-rounds, -clients, -threads and -scale must be ≥ 1, -memory-entries ≥ -clients")
	}
	if o.clients%o.threads != 0 {
		return errors.New("-clients must be a multiple of -threads (pgbench)")
	}
	for _, p := range []*string{&o.bin, &o.scripts, &o.results} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("%s: %w", *p, err)
		}
		*p = abs
	}
	if !isExecutable(o.bin) {
		return fmt.Errorf("%s not found or not executable: run make build (from the repository root)", o.bin)
	}
	if _, err := os.Stat(filepath.Join(o.scripts, "hot-select.sql")); err != nil {
		return fmt.Errorf("pgbench scripts not found (run from the repository root): %w", err)
	}
	return nil
}

// run does the whole benchmark; everything it started is stopped and the
// temp dir removed before it returns, whatever happens.
func run(ctx context.Context, o options, args []string) (err error) {
	rep := &report{started: time.Now(), opts: o, args: args}
	fmt.Printf("==> sqlbench: %d workloads × %d targets × %d rounds × (%ds + %ds warm-up), memory %t\n",
		len(o.workloads), len(o.targets), o.rounds, o.durationSeconds(), o.warmupSeconds(), o.memory)
	t, err := ensureTools(ctx)
	if err != nil {
		return err
	}
	rep.collectEnvironment(t, o.bin)
	e, err := newEnv(t)
	if e != nil {
		defer func() { err = errors.Join(err, e.close()) }()
	}
	if err != nil {
		return err
	}
	if err := benchmark(ctx, e, o, rep); err != nil {
		return err
	}
	rep.took = time.Since(rep.started)
	rep.writeText(os.Stdout)
	return rep.save(o.results)
}

// benchmark starts the servers and runs the workloads and the memory
// measurement, filling rep.
func benchmark(ctx context.Context, e *env, o options, rep *report) error {
	pgPort, err := setupPostgres(ctx, e, o.scale)
	if err != nil {
		return err
	}
	fmt.Println("==> starting the targets")
	if rep.targets, err = e.startTargets(ctx, o.targets, pgPort, o); err != nil {
		return err
	}
	if rep.workloads, err = workloadsFor(o.workloads, o.scripts); err != nil {
		return err
	}
	r := &runner{env: e, opts: o, pgPort: pgPort, targets: rep.targets}
	if err := r.runAll(ctx, rep.workloads); err != nil {
		return err
	}
	rep.rows = map[string][]row{}
	for _, w := range rep.workloads {
		rep.rows[w.name] = summarize(rep.targets, r.results[w.name])
	}
	if o.memory {
		rep.mem, err = measureMemory(ctx, e, o, pgPort)
	}
	return err
}

// setupPostgres starts the throwaway PostgreSQL on a free port and fills
// database bench with pgbench -i; it returns the port.
func setupPostgres(ctx context.Context, e *env, scale int) (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	pgPort := ports[0]
	fmt.Printf("==> starting PostgreSQL on 127.0.0.1:%d, pgbench -i -s %d (temp dir %s)\n", pgPort, scale, e.dir)
	if _, err := e.startPostgres(ctx, pgPort); err != nil {
		return 0, err
	}
	if err := e.pgbenchInit(ctx, pgPort, scale); err != nil {
		return 0, err
	}
	// sqlcache's change stream needs a publication FOR ALL TABLES, which
	// PostgreSQL refuses while a table that gets updated or deleted from
	// lacks a replica identity; pgbench_history has no primary key.
	return pgPort, execSQL(ctx, pgPort, benchDB, "ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
}

// save writes <date>-<commit>.md/.svg and latest.md/.svg to dir.
func (rep *report) save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	base := rep.started.Format("2006-01-02") + "-" + rep.commit
	for _, name := range []string{base, "latest"} {
		if err := rep.saveAs(dir, name); err != nil {
			return err
		}
	}
	fmt.Printf("\n==> wrote %s and latest.md/.svg in %s (took %s)\n", base+".md", dir, rep.took.Round(time.Second))
	return nil
}

// saveAs writes name.md and name.svg.
func (rep *report) saveAs(dir, name string) error {
	var md, svg strings.Builder
	rep.writeMarkdown(&md, name+".svg")
	title := fmt.Sprintf("TPS ÷ direct PostgreSQL, same run, median of %d rounds (commit %s)", rep.opts.rounds, rep.commit)
	newChart(rep).writeSVG(&svg, title)
	for file, text := range map[string]string{name + ".md": md.String(), name + ".svg": svg.String()} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
			return fmt.Errorf("writing results: %w", err)
		}
	}
	return nil
}
