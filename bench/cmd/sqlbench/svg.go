package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// The chart: grouped bars of each target's TPS ratio to direct PostgreSQL,
// one group per workload, on a logarithmic axis with a line at 1×.
const (
	chartBarW     = 22
	chartGroupGap = 26
	chartLeft     = 60
	chartTop      = 56
	chartPlotH    = 300
	chartBottom   = 50
)

var chartColors = map[string]string{
	tSqlcache:  "#1f77b4",
	tNoCache:   "#9ecae1",
	tPgbouncer: "#ff7f0e",
	tPgpool:    "#2ca02c",
}

// chart is the data to draw.
type chart struct {
	workloads []workload
	targets   []string                      // bars per group: every target but direct
	ratio     map[string]map[string]float64 // workload → target → ratio (NaN: none)
	failed    map[string]map[string]bool    // workload → target → failed
	lo, hi    float64                       // axis range
}

// newChart takes the ratios from the report.
func newChart(rep *report) *chart {
	c := &chart{workloads: rep.workloads, ratio: map[string]map[string]float64{},
		failed: map[string]map[string]bool{}, lo: 0.5, hi: 2}
	for _, t := range rep.targets {
		if t.name != tDirect {
			c.targets = append(c.targets, t.name)
		}
	}
	for _, w := range rep.workloads {
		c.ratio[w.name] = map[string]float64{}
		c.failed[w.name] = map[string]bool{}
		for _, r := range rep.rows[w.name] {
			v := math.NaN()
			if r.failed == "" {
				v = r.ratio
			}
			c.failed[w.name][r.target] = r.failed != ""
			c.ratio[w.name][r.target] = v
			if v > 0 {
				c.lo, c.hi = math.Min(c.lo, v), math.Max(c.hi, v)
			}
		}
	}
	// Room below the lowest bar so that it stays visible.
	c.lo, c.hi = tickBelow(c.lo*0.8), tickAbove(c.hi)
	return c
}

// ticks125 returns 1-2-5 steps (…, 0.1, 0.2, 0.5, 1, 2, 5, 10, …) in [lo, hi].
func ticks125(lo, hi float64) []float64 {
	var ts []float64
	for e := math.Floor(math.Log10(lo)) - 1; e <= math.Ceil(math.Log10(hi))+1; e++ {
		for _, m := range []float64{1, 2, 5} {
			if v := m * math.Pow(10, e); v >= lo*0.999 && v <= hi*1.001 {
				ts = append(ts, v)
			}
		}
	}
	return ts
}

// tickBelow returns the largest 1-2-5 step ≤ x; tickAbove the smallest ≥ x.
func tickBelow(x float64) float64 {
	ts := ticks125(x/10, x)
	return ts[len(ts)-1]
}

func tickAbove(x float64) float64 {
	return ticks125(x, x*10)[0]
}

// y maps a ratio to the plot's y coordinate.
func (c *chart) y(v float64) float64 {
	f := (math.Log10(v) - math.Log10(c.lo)) / (math.Log10(c.hi) - math.Log10(c.lo))
	return chartTop + chartPlotH*(1-f)
}

func (c *chart) groupW() int { return len(c.targets)*chartBarW + chartGroupGap }

// writeSVG draws the chart.
func (c *chart) writeSVG(w io.Writer, title string) {
	width := max(720, chartLeft+len(c.workloads)*c.groupW()+20)
	height := chartTop + chartPlotH + chartBottom
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		width, height, width, height)
	fmt.Fprintf(w, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(w, `<text x="%d" y="18" font-size="12" font-weight="bold">%s</text>`+"\n", chartLeft, html.EscapeString(title))
	c.writeLegend(w)
	c.writeAxis(w, width)
	for i, wl := range c.workloads {
		c.writeGroup(w, wl, chartLeft+i*c.groupW()+chartGroupGap/2)
	}
	fmt.Fprintln(w, "</svg>")
}

// writeLegend draws one coloured square and name per target.
func (c *chart) writeLegend(w io.Writer) {
	x := chartLeft
	for _, t := range c.targets {
		fmt.Fprintf(w, `<rect x="%d" y="28" width="12" height="12" fill="%s"/><text x="%d" y="38">%s</text>`+"\n",
			x, chartColors[t], x+16, t)
		x += 24 + 7*len(t)
	}
}

// writeAxis draws the grid lines with their labels and the 1× line.
func (c *chart) writeAxis(w io.Writer, width int) {
	for _, v := range ticks125(c.lo, c.hi) {
		y := c.y(v)
		stroke := `stroke="#ddd"`
		if v == 1 {
			stroke = `stroke="#333" stroke-dasharray="4 3"`
		}
		fmt.Fprintf(w, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" %s/>`+"\n", chartLeft, width-20, y, y, stroke)
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end">%s×</text>`+"\n", chartLeft-6, y+4, trimFloat(v))
	}
	fmt.Fprintf(w, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">TPS ÷ direct PostgreSQL (log scale)</text>`+"\n",
		chartTop+chartPlotH/2, chartTop+chartPlotH/2)
}

// writeGroup draws one workload's bars from x, with its name below.
func (c *chart) writeGroup(w io.Writer, wl workload, x int) {
	base := c.y(c.lo)
	for i, t := range c.targets {
		bx := x + i*chartBarW
		v, ok := c.ratio[wl.name][t]
		if !ok || math.IsNaN(v) || v <= 0 {
			label := "n/a"
			if c.failed[wl.name][t] {
				label = "failed"
			}
			fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="middle" font-size="9" fill="#c00" transform="rotate(-90 %d %.1f)">%s</text>`+"\n",
				bx+chartBarW/2+3, base-4, bx+chartBarW/2+3, base-4, label)
			continue
		}
		top := c.y(math.Max(v, c.lo))
		fmt.Fprintf(w, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s, %s: %s× direct</title></rect>`+"\n",
			bx+1, top, chartBarW-2, base-top, chartColors[t], html.EscapeString(wl.name), t, trimFloat(v))
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="middle" font-size="9">%s</text>`+"\n", bx+chartBarW/2, top-3, barLabel(v))
	}
	cx := x + len(c.targets)*chartBarW/2
	fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="middle">%s</text>`+"\n", cx, base+16, html.EscapeString(wl.name))
}

// barLabel formats a ratio compactly.
func barLabel(v float64) string {
	if v >= 10 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// trimFloat formats v without trailing zeros.
func trimFloat(v float64) string {
	s := strings.TrimRight(fmt.Sprintf("%.3f", v), "0")
	return strings.TrimSuffix(s, ".")
}
