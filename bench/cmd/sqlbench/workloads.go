package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// workload is one pgbench invocation, run against every target.
type workload struct {
	name   string   // as in -workloads
	title  string   // for the report
	args   []string // pgbench arguments that define it
	writes bool     // it changes the data: reset between runs
}

// Workload names, in the order they run.
const (
	wHotPrepared  = "hot-prepared"
	wFullPrepared = "full-prepared"
	wHotSimple    = "hot-simple"
	wFullSimple   = "full-simple"
	wExpensive    = "expensive"
	wTPCB         = "tpcb"
	wMixed        = "mixed"
	wMixedSimple  = "mixed-simple"
	wReadOnlyTx   = "readonly-tx"
)

var allWorkloads = []string{wHotPrepared, wFullPrepared, wHotSimple, wFullSimple, wExpensive, wTPCB, wMixed, wMixedSimple, wReadOnlyTx}

// workloadsFor returns the named workloads with their scripts under dir.
func workloadsFor(names []string, dir string) ([]workload, error) {
	script := func(name string) string { return filepath.Join(dir, name) }
	defs := map[string]workload{
		wHotPrepared: {title: "1a. Point reads, hot set (aid in 1..10,000), -M prepared",
			args: []string{"-M", "prepared", "-f", script("hot-select.sql")}},
		wFullPrepared: {title: "1b. Point reads, full table (builtin -S), -M prepared",
			args: []string{"-M", "prepared", "-S"}},
		wHotSimple: {title: "2a. Point reads, hot set (aid in 1..10,000), -M simple",
			args: []string{"-M", "simple", "-f", script("hot-select.sql")}},
		wFullSimple: {title: "2b. Point reads, full table (builtin -S), -M simple",
			args: []string{"-M", "simple", "-S"}},
		wExpensive: {title: "3. Expensive reads (dashboard.sql: top-10, sums, join + GROUP BY; one branch of :scale), -M prepared",
			args: []string{"-M", "prepared", "-f", script("dashboard.sql")}},
		wTPCB: {title: "4. TPC-B-like read/write (builtin tpcb-like), -M prepared",
			args: []string{"-M", "prepared", "-b", "tpcb-like"}, writes: true},
		wMixed: {title: "5a. Mixed: 95% reads (91% hot point reads, 4% top-10), 5% hot-set updates, -M prepared",
			args: []string{"-M", "prepared", "-f", script("hot-select.sql") + "@91",
				"-f", script("dashboard-one.sql") + "@4", "-f", script("hot-update.sql") + "@5"}, writes: true},
		// As drivers that interpolate parameters send it: the keys are
		// constants in the SQL text.
		wMixedSimple: {title: "5b. Mixed, as 5a, -M simple",
			args: []string{"-M", "simple", "-f", script("hot-select.sql") + "@91",
				"-f", script("dashboard-one.sql") + "@4", "-f", script("hot-update.sql") + "@5"}, writes: true},
		// Not one of the benchmark issue's workloads: what reads inside
		// transactions gain.
		wReadOnlyTx: {title: "6. Read-only transactions: BEGIN READ ONLY, 3 hot-set point reads, COMMIT, -M prepared",
			args: []string{"-M", "prepared", "-f", script("hot-readonly-tx.sql")}},
	}
	var ws []workload
	for _, n := range names {
		w, ok := defs[n]
		if !ok {
			return nil, fmt.Errorf("unknown workload %q (have %v)", n, allWorkloads)
		}
		w.name = n
		ws = append(ws, w)
	}
	return ws, nil
}

// commandLine is the workload's pgbench invocation as the report shows it,
// with script paths relative to the working directory.
func (w workload) commandLine(o options) string {
	wd, _ := os.Getwd()
	args := []string{"-n", "-c", fmt.Sprint(o.clients), "-j", fmt.Sprint(o.threads), "-T", fmt.Sprint(o.durationSeconds()), "-D", fmt.Sprintf("scale=%d", o.scale)}
	for _, a := range w.args {
		if rel, err := filepath.Rel(wd, a); err == nil && filepath.IsAbs(a) {
			a = rel
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}
