package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// promMetrics are the values of a Prometheus text exposition, by series
// (`name{labels}` as exposed) and, summed over label sets, by name.
type promMetrics map[string]float64

// scrape fetches http://admin/metrics.
func scrape(ctx context.Context, admin string) (promMetrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", admin, resp.Status)
	}
	m := promMetrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		m.addLine(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s/metrics: %w", admin, err)
	}
	return m, nil
}

// addLine adds one sample line ("name{labels} value") to m.
func (m promMetrics) addLine(line string) {
	if line == "" || line[0] == '#' {
		return
	}
	sp := strings.LastIndexByte(line, ' ')
	if sp < 0 {
		return
	}
	v, err := strconv.ParseFloat(line[sp+1:], 64)
	if err != nil {
		return
	}
	name := line[:sp]
	if i := strings.IndexByte(name, '{'); i >= 0 {
		m[name] = v
	}
	if i := strings.IndexByte(name, '{'); i >= 0 {
		name = name[:i]
	}
	m[name] += v
}

// delta returns after[name] - before[name].
func delta(before, after promMetrics, name string) float64 {
	return after[name] - before[name]
}

// vmRSS returns a process's resident set size in bytes from
// /proc/<pid>/status.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing VmRSS %q: %w", fields[1], err)
			}
			return kb * 1024, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading /proc/%d/status: %w", pid, err)
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
