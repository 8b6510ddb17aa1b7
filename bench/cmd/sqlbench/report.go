package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// report is everything a results file says.
type report struct {
	started   time.Time
	took      time.Duration
	commit    string // short
	dirty     bool   // the working tree differs from commit
	machine   string
	versions  string
	opts      options
	args      []string // the command line's flags
	targets   []*target
	workloads []workload
	rows      map[string][]row // by workload
	mem       *memResult       // nil: not measured
}

// collectEnvironment fills in the machine, versions and commit.
func (rep *report) collectEnvironment(t tools, sqlcacheBin string) {
	rep.machine = machineInfo()
	rep.versions = strings.Join([]string{
		"sqlcache " + strings.TrimPrefix(firstLineOf(sqlcacheBin, "version"), "sqlcache "),
		"Go " + runtime.Version(),
		versionOf(filepath.Join(t.pgBinDir, "postgres")),
		versionOf(t.pgbench),
		versionOf(t.pgbouncer),
		versionOf(t.pgpool),
	}, "; ")
	rep.commit = strings.TrimSpace(gitOutput("rev-parse", "--short", "HEAD"))
	if rep.commit == "" {
		rep.commit = "unknown"
	}
	rep.dirty = strings.TrimSpace(gitOutput("status", "--porcelain", "--untracked-files=no")) != ""
}

func gitOutput(args ...string) string {
	out, _ := exec.Command("git", args...).Output()
	return string(out)
}

// machineInfo describes the CPUs and memory from /proc.
func machineInfo() string {
	model := procField("/proc/cpuinfo", "model name")
	mem := procField("/proc/meminfo", "MemTotal")
	var kb float64
	fmt.Sscanf(mem, "%f", &kb)
	return fmt.Sprintf("%d CPUs (%s), %.1f GiB RAM, %s/%s", runtime.NumCPU(), model, kb/(1<<20), runtime.GOOS, runtime.GOARCH)
}

// procField returns the value of the first "key: value" line of a /proc
// file, or "unknown".
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// writeText prints the tables to w, aligned.
func (rep *report) writeText(w io.Writer) {
	for _, wl := range rep.workloads {
		fmt.Fprintf(w, "\n%s\n", wl.title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(tableHeader, "\t"))
		var failures []string
		for _, r := range rep.rows[wl.name] {
			cells := r.cells()
			if r.failed != "" {
				cells[1] = "failed (below)"
				failures = append(failures, fmt.Sprintf("  %s: %s", r.target, r.failed))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		tw.Flush()
		for _, f := range failures {
			fmt.Fprintln(w, f)
		}
		if n := resetNote(rep.rows[wl.name]); n != "" {
			fmt.Fprintln(w, "  "+n)
		}
	}
	for _, n := range rep.notes() {
		fmt.Fprintf(w, "\nNote: %s\n", n)
	}
	if rep.mem != nil {
		fmt.Fprintln(w, "\nMemory")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, kv := range rep.mem.lines() {
			fmt.Fprintf(tw, "  %s\t%s\n", kv[0], kv[1])
		}
		tw.Flush()
	}
}

// writeMarkdown writes the results file; chart is the SVG's file name.
func (rep *report) writeMarkdown(w io.Writer, chart string) {
	fmt.Fprintf(w, "# sqlcache benchmark, %s\n\n", rep.started.UTC().Format("2006-01-02 15:04 UTC"))
	rep.writeSetup(w)
	for _, n := range rep.notes() {
		fmt.Fprintf(w, "**Note:** %s\n\n", n)
	}
	fmt.Fprintf(w, "![TPS relative to direct PostgreSQL, per workload and target](%s)\n", chart)
	for _, wl := range rep.workloads {
		fmt.Fprintf(w, "\n## %s\n\n`pgbench %s`\n\n", wl.title, wl.commandLine(rep.opts))
		writeMarkdownTable(w, tableHeader, rep.rowCells(wl.name))
		if n := resetNote(rep.rows[wl.name]); n != "" {
			fmt.Fprintf(w, "\n%s\n", n)
		}
	}
	if rep.mem != nil {
		fmt.Fprintf(w, "\n## Memory: %d small distinct entries through sqlcache\n\n", rep.mem.wanted)
		writeMarkdownTable(w, []string{"figure", "value"}, rep.mem.lines())
		fmt.Fprintln(w, "\n"+memoryNote)
	}
}

// writeSetup writes the machine, versions and method.
func (rep *report) writeSetup(w io.Writer) {
	commit := rep.commit
	if rep.dirty {
		commit += " (with uncommitted changes in the working tree)"
	}
	o := rep.opts
	fmt.Fprintf(w, "- Machine: %s\n- Versions: %s\n- Commit: %s\n", rep.machine, rep.versions, commit)
	fmt.Fprintf(w, "- Command: `go run ./bench/cmd/sqlbench %s` (took %s)\n", strings.Join(rep.args, " "), rep.took.Round(time.Second))
	fmt.Fprintf(w, "- Method: `pgbench -n -c %d -j %d -T %d` after an unmeasured %d s warm-up, scale %d, %d rounds; "+
		"in every round each target runs once, in this order: %s. Figures are medians over rounds; "+
		"× direct is the median of each round's ratio to direct PostgreSQL in that round. "+
		"p99 is from pgbench's per-transaction log. Hit ratio is hits / (hits + misses) during the measured run "+
		"(sqlcache: /metrics; pgpool-II: SHOW pool_cache); n/a where there is no readable cache or nothing "+
		"cacheable ran (reads inside transactions that wrote bypass sqlcache's cache). Invalidations/s: sqlcache's "+
		"invalidating events (sqlcache_cache_invalidations_total).\n\n",
		o.clients, o.threads, o.durationSeconds(), o.warmupSeconds(), o.scale, o.rounds, targetNames(rep.targets))
	rows := [][]string{}
	for _, t := range rep.targets {
		rows = append(rows, []string{t.name, targetInfo[t.name]})
	}
	writeMarkdownTable(w, []string{"target", "what"}, rows)
	fmt.Fprintln(w)
}

// notes lists problems that did not stop the run but bear on its figures.
func (rep *report) notes() []string {
	var ns []string
	for _, t := range rep.targets {
		if t.note != "" {
			ns = append(ns, t.note)
		}
	}
	if rep.mem != nil && rep.mem.note != "" {
		ns = append(ns, "memory measurement: "+rep.mem.note)
	}
	return ns
}

// resetNote says when sqlcache's change stream was reset during the
// measured runs: each reset drops the database's cached answers.
func resetNote(rows []row) string {
	for _, r := range rows {
		if r.resets > 0 {
			return fmt.Sprintf("%s: its change stream was reset %.0f times during the measured runs "+
				"(each reset drops the database's cached answers).", r.target, r.resets)
		}
	}
	return ""
}

// rowCells returns the table cells of a workload's rows.
func (rep *report) rowCells(workload string) [][]string {
	var cells [][]string
	for _, r := range rep.rows[workload] {
		cells = append(cells, r.cells())
	}
	return cells
}

func targetNames(ts []*target) string {
	var names []string
	for _, t := range ts {
		names = append(names, t.name)
	}
	return strings.Join(names, ", ")
}

// writeMarkdownTable writes a GitHub-flavoured Markdown table.
func writeMarkdownTable(w io.Writer, header []string, rows [][]string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(header, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(header)))
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

// memoryNote explains the memory figures.
const memoryNote = `RSS is VmRSS of the sqlcache process from /proc before and after the
fill (a fresh instance with cache.max_bytes 4GiB, so nothing is evicted,
and invalidation.postgres.mode none, so nothing but the fill changes the
cache).
The payload is the answer bytes relayed to the clients while filling, as
sqlcache_relayed_bytes_total{direction="to_client"} counts them, per
filled entry times the entries still cached: what a cache has to keep at
the very least. cache_bytes is sqlcache's own
accounting of keys, answers and bookkeeping. RSS growth includes Go's heap
head-room (GOGC), so it is what the operating system sees, not the live
heap.`

// lines returns the memory figures as label/value pairs.
func (m *memResult) lines() [][]string {
	if m.err != nil {
		return [][]string{{"result", "failed: " + oneLine(m.err.Error())}}
	}
	per := func(b float64) string {
		if m.entries == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.0f B", b/m.entries)
	}
	fill := fmt.Sprintf("%.0f s (%.0f entries/s)", m.fillSeconds, m.misses/m.fillSeconds)
	if m.timedOut {
		fill += ", stopped at -memory-timeout"
	}
	held := m.payloadHeld()
	lines := [][]string{
		{"entries filled (cache misses)", fmt.Sprintf("%.0f of %d", m.misses, m.wanted)},
		{"entries cached at the end (sqlcache_cache_entries)", fmt.Sprintf("%.0f", m.entries)},
		{"entries dropped during the fill (invalidated, evicted)", fmt.Sprintf("%.0f (change-stream resets: %.0f)", m.dropped, m.resets)},
		{"fill time", fill},
		{"RSS before → after", mib(float64(m.rssBefore)) + " → " + mib(float64(m.rssAfter))},
		{"RSS growth", mib(m.rssGrowth()) + ", " + per(m.rssGrowth()) + " per cached entry"},
		{"sqlcache_cache_bytes", mib(m.cacheBytes) + ", " + per(m.cacheBytes) + " per cached entry"},
		{"cached payload (answer bytes of the cached entries)", mib(held) + ", " + per(held) + " per cached entry"},
		{"RSS growth / payload", ratioOf(m.rssGrowth(), held)},
		{"cache_bytes / payload", ratioOf(m.cacheBytes, held)},
		{"RSS growth / cache_bytes", ratioOf(m.rssGrowth(), m.cacheBytes)},
	}
	if m.lostEntries() {
		lines = append(lines, []string{"warning", "entries were dropped during the fill, so RSS growth (which still holds " +
			"their memory) overstates the cost per cached entry; cache_bytes / payload is unaffected"})
	}
	return lines
}

func ratioOf(a, b float64) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", a/b)
}
