package integration

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
)

// metricValue returns the value of one series from sqlcache's /metrics, as
// written there (name with its labels), or 0 if it is absent.
func metricValue(t testing.TB, sc *Sqlcache, series string) float64 {
	t.Helper()
	sc2 := bufio.NewScanner(strings.NewReader(sc.Metrics(t)))
	for sc2.Scan() {
		line := sc2.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || line[:i] != series {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric %s: %v", series, err)
		}
		return v
	}
	return 0
}
