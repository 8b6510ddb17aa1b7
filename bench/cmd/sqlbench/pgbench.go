package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pgbenchRun is one pgbench invocation against a target.
type pgbenchRun struct {
	port      int
	args      []string // the workload's arguments
	seconds   int      // -T; 0: the workload's arguments say how long
	clients   int
	threads   int
	scale     int
	logPrefix string // non-empty: per-transaction log for p99
}

// pgbenchOut is what we read from a run.
type pgbenchOut struct {
	tps   float64
	avgMs float64
	p99Ms float64 // NaN without a log
}

// command builds the pgbench command line.
func (r pgbenchRun) command(ctx context.Context, pgbench, dir string) *exec.Cmd {
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(r.port), "-U", "postgres", "-n",
		"-c", strconv.Itoa(r.clients), "-j", strconv.Itoa(r.threads), "-D", "scale=" + strconv.Itoa(r.scale)}
	if r.seconds > 0 {
		args = append(args, "-T", strconv.Itoa(r.seconds))
	}
	if r.logPrefix != "" {
		args = append(args, "--log", "--log-prefix="+r.logPrefix)
	}
	args = append(append(args, r.args...), benchDB)
	cmd := exec.CommandContext(ctx, pgbench, args...)
	cmd.Dir = dir
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs pgbench and parses its report and log.
func (r pgbenchRun) run(ctx context.Context, pgbench, dir string) (pgbenchOut, error) {
	var stdout, stderr bytes.Buffer
	cmd := r.command(ctx, pgbench, dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return pgbenchOut{}, ctx.Err()
	}
	if err != nil {
		return pgbenchOut{}, fmt.Errorf("pgbench: %w: %s", err, pgbenchError(stderr.String(), stdout.String()))
	}
	out, err := parsePgbench(stdout.String())
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, lastLine(stderr.String()))
	}
	out.p99Ms = math.NaN()
	if r.logPrefix != "" {
		if out.p99Ms, err = p99FromLogs(r.logPrefix); err != nil {
			return out, err
		}
	}
	return out, nil
}

// pgbenchError picks the most telling line of a failed run's output: the
// first error pgbench or the server reported, else the last line.
func pgbenchError(stderr, stdout string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "error") || strings.Contains(l, "ERROR") || strings.Contains(l, "abort") {
			return strings.TrimSpace(l)
		}
	}
	return lastLine(stderr + "\n" + stdout)
}

var (
	tpsRe     = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	latencyRe = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	failedRe  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// parsePgbench reads tps and average latency from pgbench's report; a run
// with failed transactions is an error.
func parsePgbench(s string) (pgbenchOut, error) {
	var out pgbenchOut
	m := tpsRe.FindStringSubmatch(s)
	if m == nil {
		return out, fmt.Errorf("no tps in pgbench output")
	}
	out.tps, _ = strconv.ParseFloat(m[1], 64)
	if m = latencyRe.FindStringSubmatch(s); m == nil {
		return out, fmt.Errorf("no latency average in pgbench output")
	}
	out.avgMs, _ = strconv.ParseFloat(m[1], 64)
	if m = failedRe.FindStringSubmatch(s); m != nil && m[1] != "0" {
		return out, fmt.Errorf("pgbench: %s failed transactions", m[1])
	}
	return out, nil
}

// p99FromLogs reads the per-transaction logs pgbench wrote with
// --log-prefix=prefix (prefix.<pid> and prefix.<pid>.<thread>), returns the
// 99th percentile of latency in ms and removes the files.
func p99FromLogs(prefix string) (float64, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil || len(files) == 0 {
		return math.NaN(), fmt.Errorf("no pgbench log %s.*", prefix)
	}
	var lat []float64
	for _, f := range files {
		if lat, err = appendLatencies(lat, f); err != nil {
			return math.NaN(), err
		}
		os.Remove(f)
	}
	return percentile(lat, 0.99) / 1000, nil
}

// appendLatencies appends the latency (µs, third field) of every logged
// transaction in file to lat.
func appendLatencies(lat []float64, file string) ([]float64, error) {
	f, err := os.Open(file)
	if err != nil {
		return lat, fmt.Errorf("pgbench log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		if us, err := strconv.ParseFloat(fields[2], 64); err == nil {
			lat = append(lat, us)
		}
	}
	if err := sc.Err(); err != nil {
		return lat, fmt.Errorf("reading %s: %w", file, err)
	}
	return lat, nil
}

// percentile returns the p-quantile (nearest rank) of xs, sorting it; NaN
// for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	i := int(math.Ceil(p*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// median returns the median of the finite values of xs; NaN for none.
func median(xs []float64) float64 {
	var fs []float64
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			fs = append(fs, x)
		}
	}
	if len(fs) == 0 {
		return math.NaN()
	}
	slices.Sort(fs)
	n := len(fs)
	if n%2 == 1 {
		return fs[n/2]
	}
	return (fs[n/2-1] + fs[n/2]) / 2
}
