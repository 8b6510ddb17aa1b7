package main

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParsePgbench(t *testing.T) {
	out := `transaction type: bench/scripts/hot-select.sql
number of transactions actually processed: 73355
number of failed transactions: 0 (0.000%)
latency average = 0.327 ms
initial connection time = 9.734 ms
tps = 24449.123456 (without initial connection time)
`
	got, err := parsePgbench(out)
	if err != nil {
		t.Fatal(err)
	}
	if got.tps != 24449.123456 || got.avgMs != 0.327 {
		t.Errorf("parsePgbench = %+v", got)
	}
	if _, err := parsePgbench(strings.Replace(out, "transactions: 0", "transactions: 3", 1)); err == nil {
		t.Error("failed transactions not reported")
	}
	if _, err := parsePgbench("pgbench: error: connection refused"); err == nil {
		t.Error("missing tps not reported")
	}
}

func TestP99FromLogs(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "log")
	var a, b strings.Builder
	for i := 1; i <= 100; i++ {
		w := &a
		if i%2 == 0 {
			w = &b
		}
		// client_id transaction_no time(µs) script_no time_epoch time_us
		w.WriteString("0 1 " + strconv.Itoa(i*1000) + " 0 1700000000 123\n")
	}
	os.WriteFile(prefix+".123", []byte(a.String()), 0o644)
	os.WriteFile(prefix+".123.1", []byte(b.String()), 0o644)
	p99, err := p99FromLogs(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if p99 != 99 {
		t.Errorf("p99 = %v ms, want 99", p99)
	}
	if left, _ := filepath.Glob(prefix + ".*"); len(left) != 0 {
		t.Errorf("logs not removed: %v", left)
	}
}

func TestMedian(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{nan, 5}, 5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(median([]float64{nan})) {
		t.Error("median of nothing is not NaN")
	}
}

func TestPromMetrics(t *testing.T) {
	m := promMetrics{}
	for _, l := range strings.Split(`# HELP sqlcache_cache_hits_total x
sqlcache_cache_hits_total 42
sqlcache_relayed_bytes_total{direction="to_backend"} 10
sqlcache_relayed_bytes_total{direction="to_client"} 1.5e+06`, "\n") {
		m.addLine(l)
	}
	if m["sqlcache_cache_hits_total"] != 42 || m["sqlcache_relayed_bytes_total"] != 1500010 ||
		m[`sqlcache_relayed_bytes_total{direction="to_client"}`] != 1.5e6 {
		t.Errorf("metrics = %v", m)
	}
}

func TestPickList(t *testing.T) {
	got, err := pickList("targets", "pgpool, direct", allTargets)
	if err != nil || !slices.Equal(got, []string{tDirect, tPgpool}) {
		t.Errorf("pickList = %v, %v", got, err)
	}
	if _, err := pickList("targets", "direct,nope", allTargets); err == nil {
		t.Error("unknown name accepted")
	}
}

func TestSummarizeRatioPerRound(t *testing.T) {
	targets := []*target{{name: tDirect}, {name: tSqlcache}, {name: tPgpool, failed: "failed to start: x"}}
	samples := map[string][]sample{
		tDirect:   {{round: 1, tps: 100}, {round: 2, tps: 200}, {round: 3, tps: 100}},
		tSqlcache: {{round: 1, tps: 150}, {round: 2, tps: 300}, {round: 3, err: errors.New("boom")}},
	}
	rows := summarize(targets, samples)
	if rows[1].ratio != 1.5 || rows[1].tps != 225 || rows[1].errs != 1 {
		t.Errorf("sqlcache row = %+v", rows[1])
	}
	if rows[2].failed != "failed to start: x" {
		t.Errorf("pgpool row = %+v", rows[2])
	}
}

func TestChartTicks(t *testing.T) {
	if got := ticks125(0.2, 50); !slices.Equal(got, []float64{0.2, 0.5, 1, 2, 5, 10, 20, 50}) {
		t.Errorf("ticks125 = %v", got)
	}
	if tickBelow(0.13) != 0.1 || tickAbove(1300) != 2000 {
		t.Errorf("tickBelow(0.13) = %v, tickAbove(1300) = %v", tickBelow(0.13), tickAbove(1300))
	}
}

func TestWholeSeconds(t *testing.T) {
	if wholeSeconds(1500*time.Millisecond) != 2 || wholeSeconds(0) != 1 {
		t.Error("wholeSeconds")
	}
}
