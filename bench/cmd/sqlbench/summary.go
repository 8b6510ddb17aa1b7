package main

import (
	"fmt"
	"math"
)

// row is one target's line in a workload's table: medians over rounds.
type row struct {
	target   string
	failed   string  // why there is no figure; empty when there is
	tps      float64 // median
	ratio    float64 // median over rounds of tps / direct's tps in the same round
	avgMs    float64
	p99Ms    float64
	hitRatio float64
	invalPS  float64
	resets   float64 // sqlcache change-stream resets over its measured runs
	runs     int     // successful measured runs
	errs     int     // failed measured runs
}

// summarize turns one workload's samples into rows, one per target in
// order, failed targets included.
func summarize(targets []*target, samples map[string][]sample) []row {
	direct := map[int]float64{} // round → direct tps
	for _, s := range samples[tDirect] {
		if s.err == nil {
			direct[s.round] = s.tps
		}
	}
	var rows []row
	for _, t := range targets {
		if !t.up() {
			rows = append(rows, row{target: t.name, failed: t.failed})
			continue
		}
		rows = append(rows, summarizeTarget(t.name, samples[t.name], direct))
	}
	return rows
}

// summarizeTarget computes one target's medians.
func summarizeTarget(name string, ss []sample, direct map[int]float64) row {
	r := row{target: name}
	var tps, ratio, avg, p99, hit, inval []float64
	var lastErr error
	for _, s := range ss {
		if s.err != nil {
			r.errs++
			lastErr = s.err
			continue
		}
		r.runs++
		r.resets += s.resets
		tps, avg, p99 = append(tps, s.tps), append(avg, s.avgMs), append(p99, s.p99Ms)
		hit, inval = append(hit, s.hitRatio), append(inval, s.invalPS)
		if d, ok := direct[s.round]; ok && d > 0 {
			ratio = append(ratio, s.tps/d)
		}
	}
	if r.runs == 0 {
		r.failed = "failed: no successful run"
		if lastErr != nil {
			r.failed = "failed: " + oneLine(lastErr.Error())
		}
		return r
	}
	r.tps, r.ratio, r.avgMs, r.p99Ms = median(tps), median(ratio), median(avg), median(p99)
	r.hitRatio, r.invalPS = median(hit), median(inval)
	return r
}

// cells formats a row for a table: target, TPS, × direct, avg ms, p99 ms,
// hit ratio, invalidations/s.
func (r row) cells() []string {
	if r.failed != "" {
		return []string{r.target, r.failed, "", "", "", "", ""}
	}
	tps := fmt.Sprintf("%.0f", r.tps)
	if r.errs > 0 {
		tps += fmt.Sprintf(" (%d of %d runs failed)", r.errs, r.errs+r.runs)
	}
	return []string{r.target, tps, fmtNum(r.ratio, "%.2f×"), fmtNum(r.avgMs, "%.3f"),
		fmtNum(r.p99Ms, "%.3f"), fmtPercent(r.hitRatio), fmtNum(r.invalPS, "%.0f")}
}

var tableHeader = []string{"target", "TPS (median)", "× direct", "avg latency ms", "p99 latency ms", "hit ratio", "invalidations/s"}

// fmtNum formats x, or "n/a" for NaN.
func fmtNum(x float64, format string) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return fmt.Sprintf(format, x)
}

// fmtPercent formats a ratio as a percentage, or "n/a" for NaN.
func fmtPercent(x float64) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*x)
}

// oneLine keeps the first line of s, shortened.
func oneLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			s = s[:i]
			break
		}
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
