package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/sqlcache/sqlcache/cachepolicy"
)

// AdminHandler serves the admin HTTP API:
//
//	GET  /metrics                       Prometheus
//	GET  /healthz                       the process is up
//	GET  /readyz                        accepting, and the backend answers
//	GET  /cache                         cache statistics and top entries (JSON)
//	POST /cache/invalidate?database=d&table=t   drop entries (all of d without table; everything without both)
//	GET  /explain?database=d&sql=…      the cache decision for a statement (JSON)
//	GET  /debug/pprof/…                 Go profiles
func (p *Proxy) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /cache", p.serveCache)
	mux.HandleFunc("POST /cache/invalidate", p.serveInvalidate)
	mux.HandleFunc("GET /explain", p.serveExplain)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// CacheReport is the body of GET /cache.
type CacheReport struct {
	Enabled     bool          `json:"enabled"`
	Entries     int           `json:"entries"`
	Bytes       int64         `json:"bytes"`
	MaxBytes    int64         `json:"max_bytes"`
	Hits        uint64        `json:"hits"`
	Misses      uint64        `json:"misses"`
	HitRatio    float64       `json:"hit_ratio"`
	Evictions   uint64        `json:"evictions"`
	Expirations uint64        `json:"expirations"`
	Top         []EntryReport `json:"top"`
}

// EntryReport describes one cached entry.
type EntryReport struct {
	Query    string   `json:"query"`
	Database string   `json:"database"`
	Tables   []string `json:"tables"`
	Hits     uint64   `json:"hits"`
	Bytes    int      `json:"bytes"`
	AgeMS    int64    `json:"age_ms"`
	TTLMS    int64    `json:"ttl_ms"`
}

func (p *Proxy) serveCache(w http.ResponseWriter, r *http.Request) {
	st := p.store.Stats()
	hits, misses := counterValue(p.metrics.hits), counterValue(p.metrics.misses)
	rep := CacheReport{
		Enabled: p.cacheEnabled, Entries: st.Entries, Bytes: st.Bytes, MaxBytes: st.MaxBytes,
		Hits: hits, Misses: misses, Evictions: st.Evictions, Expirations: st.Expirations,
		Top: []EntryReport{},
	}
	if hits+misses > 0 {
		rep.HitRatio = float64(hits) / float64(hits+misses)
	}
	for _, e := range p.store.Top(20) {
		rep.Top = append(rep.Top, EntryReport{
			Query: e.Label, Database: e.DB, Tables: e.Tables, Hits: e.Hits, Bytes: e.Bytes,
			AgeMS: e.Age.Milliseconds(), TTLMS: e.TTL.Milliseconds(),
		})
	}
	writeJSON(w, rep)
}

func (p *Proxy) serveInvalidate(w http.ResponseWriter, r *http.Request) {
	db, table := r.URL.Query().Get("database"), r.URL.Query().Get("table")
	var n int
	switch {
	case db == "" && table != "":
		http.Error(w, "table needs database", http.StatusBadRequest)
		return
	case db == "":
		n = p.store.InvalidateAll()
	case table == "":
		n = p.store.InvalidateDB(db)
	default:
		// The store knows relations by name: "schema.name" (as
		// cache.rules spell them) drops that name's answers in every
		// schema, which may drop more, never fewer.
		name := table[strings.LastIndexByte(table, '.')+1:]
		if name == "" {
			http.Error(w, "table: want name or schema.name", http.StatusBadRequest)
			return
		}
		n = p.store.InvalidateTable(db, name)
	}
	p.metrics.invalidations.WithLabelValues("admin").Add(float64(n))
	p.metrics.invalidationEvents.WithLabelValues("admin").Inc()
	p.log.Info("cache invalidated by admin request", "database", db, "table", table, "entries", n)
	writeJSON(w, map[string]int{"invalidated": n})
}

// Explanation is the body of GET /explain.
type Explanation struct {
	Cacheable bool     `json:"cacheable"`
	Reason    string   `json:"reason"`
	Tables    []string `json:"tables"`
	Writes    []string `json:"writes,omitempty"`
	// Row, for an answer or a write tied to one row: "table.key = $n" (or
	// "= 7" for a constant).
	Row string `json:"row,omitempty"`
	// OwnWriteWait is set for a statement that writes when the change
	// stream keeps the cache current: whether the writing session's next
	// cache read waits for the stream, which alone sees what triggers,
	// rules and user functions change.
	OwnWriteWait *bool `json:"own_write_wait,omitempty"`
	// SettingsChangedBy names what the statement runs that may change the
	// session's settings (a user-defined function, or the triggers of a
	// table it writes): after it sqlcache reads the session's settings
	// back (readBackSQL) before the session uses the cache again. Empty if
	// nothing.
	SettingsChangedBy string `json:"settings_changed_by,omitempty"`
	// TTL is how long a cached answer lives: a duration, or "until
	// invalidated"; empty when the statement is not cached.
	TTL  string `json:"ttl,omitempty"`
	Rule int    `json:"rule"`
}

func (p *Proxy) serveExplain(w http.ResponseWriter, r *http.Request) {
	sql, db := r.URL.Query().Get("sql"), r.URL.Query().Get("database")
	if sql == "" || db == "" {
		http.Error(w, "need sql and database", http.StatusBadRequest)
		return
	}
	writeJSON(w, p.Explain(r.Context(), db, sql))
}

// Explain says whether sql, run in database db, would be cached, and why.
func (p *Proxy) Explain(ctx context.Context, db, sql string) Explanation {
	// Counted as a session of db while it looks things up, so that the
	// catalog connection and planner state it makes are released
	// release_idle later, as a session's are, whatever the name.
	p.dbJoin(db)
	pl := p.planner.decide(ctx, db, newPlan(sql, cachepolicy.Analyze(sql)))
	p.dbLeave(db)
	d := pl.decision
	e := Explanation{Cacheable: d.Cacheable, Reason: d.Reason, Tables: d.Tables, Writes: pl.analysis.Writes, Rule: d.Rule}
	if !p.cacheEnabled {
		e.Cacheable, e.Reason = false, "cache.enabled is false"
	}
	switch {
	case !e.Cacheable:
	case d.TTL > 0:
		e.TTL = d.TTL.String()
	default:
		e.TTL = "until invalidated"
	}
	if r := d.Row; r != nil {
		e.Row = rowText(*r)
	} else if r := pl.writeRow; r != nil {
		e.Row = rowText(*r)
	}
	if wait := !pl.writesOnly; p.planner.streamed && mayWrite(pl.analysis) && !d.Cacheable &&
		(wait || len(pl.analysis.Writes) > 0) {
		e.OwnWriteWait = &wait
	}
	e.SettingsChangedBy = pl.setsSettings
	if e.Tables == nil {
		e.Tables = []string{}
	}
	return e
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func counterValue(c prometheus.Counter) uint64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return uint64(m.GetCounter().GetValue())
}

// rowText shows a RowRead as "table.key = $n" or "table.key = 7".
func rowText(r cachepolicy.RowRead) string {
	if key, ok := r.Key(); ok {
		return fmt.Sprintf("%s.%s = %s", r.Table, r.Column, key)
	}
	return fmt.Sprintf("%s.%s = $%d", r.Table, r.Column, r.Param)
}
