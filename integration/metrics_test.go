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
		name, value, ok := strings.Cut(sc2.Text(), " ")
		if !ok || name != series {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric %s: %v", series, err)
		}
		return v
	}
	return 0
}
