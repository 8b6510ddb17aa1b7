package proxy

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlcache/sqlcache/invalidator"
	"github.com/sqlcache/sqlcache/invalidator/pglogical"
)

// InvalidationMode says how sqlcache learns of writes that do not pass
// through it.
type InvalidationMode string

const (
	// InvalidationLogical follows each database's logical replication
	// stream; while a stream is down or behind, that database is not
	// served from the cache.
	InvalidationLogical InvalidationMode = "logical"
	// InvalidationNone sees only writes through this proxy; other writes
	// are bounded by TTLs alone.
	InvalidationNone InvalidationMode = "none"
)

// InvalidationConfig configures change-stream invalidation.
type InvalidationConfig struct {
	// Mode is logical or none; "" means logical.
	Mode InvalidationMode
	// MaxLag is how far behind a stream may be before its database is
	// served from the backend only. If zero, 1 second.
	MaxLag time.Duration
	// Publication to stream; "" means "sqlcache".
	Publication string
	// CreatePublication creates the publication if it is missing
	// (FOR ALL TABLES, which needs a superuser).
	CreatePublication bool
	// Slot names a permanent replication slot; "" means a temporary slot
	// per stream, which retains nothing if sqlcache dies.
	Slot string
	// Heartbeat is how often each stream re-establishes freshness. If
	// zero, a quarter of MaxLag, at most 100ms.
	Heartbeat time.Duration
	// ReleaseIdle is how long a database keeps its stream and catalog
	// connection after its last session ends (Proxy.dbLeave). If zero,
	// 30 seconds.
	ReleaseIdle time.Duration
}

// streams runs one change stream per database that clients use.
type streams struct {
	p   *Proxy
	cfg InvalidationConfig

	mu sync.Mutex // protects byDB
	// byDB holds each database's stream, started by the first session.
	byDB map[string]*pglogical.Stream
}

func newStreams(p *Proxy, cfg InvalidationConfig) *streams {
	return &streams{p: p, cfg: cfg, byDB: make(map[string]*pglogical.Stream)}
}

// streamConfig returns the stream configuration for database db.
func (ss *streams) streamConfig(db string) (pglogical.Config, error) {
	dsn, err := serviceDSNFor(ss.p.cfg.ServiceDSN, db)
	if err != nil {
		return pglogical.Config{}, err
	}
	return pglogical.Config{
		DSN:               dsn,
		Database:          db,
		Publication:       ss.cfg.Publication,
		CreatePublication: ss.cfg.CreatePublication,
		Slot:              ss.cfg.Slot,
		Heartbeat:         ss.cfg.Heartbeat,
		Logger:            ss.p.log.With("stream", db),
		Handler:           streamHandler{ss.p},
	}, nil
}

// get returns db's stream, starting it if needed; nil when streams are
// off or cannot be configured.
func (ss *streams) get(db string) *pglogical.Stream {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if st, ok := ss.byDB[db]; ok {
		return st
	}
	cfg, err := ss.streamConfig(db)
	if err != nil {
		ss.p.log.Error("change stream not started: nothing will be served from the cache for this database", "database", db, "err", err)
		ss.byDB[db] = nil
		return nil
	}
	st := pglogical.Start(cfg)
	ss.byDB[db] = st
	return st
}

// remove takes db's stream out of the set, for the caller to close; the
// next get starts a new one.
func (ss *streams) remove(db string) *pglogical.Stream {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := ss.byDB[db]
	delete(ss.byDB, db)
	return st
}

func (ss *streams) close() {
	ss.mu.Lock()
	all := make([]*pglogical.Stream, 0, len(ss.byDB))
	for _, st := range ss.byDB {
		if st != nil {
			all = append(all, st)
		}
	}
	ss.mu.Unlock()
	for _, st := range all {
		st.Close()
	}
}

// streamHandler turns stream events into invalidation; it is the only
// place where an invalidator.Change becomes one.
type streamHandler struct{ p *Proxy }

func (h streamHandler) Reset(db string) {
	n := h.p.store.InvalidateDB(db)
	h.p.planner.forget(db)
	h.p.metrics.invalidations.WithLabelValues("stream_reset").Add(float64(n))
	h.p.metrics.invalidationEvents.WithLabelValues("stream_reset").Inc()
	h.p.log.Info("change stream (re)started: dropped the database's cached answers", "database", db, "entries", n)
}

func (h streamHandler) Apply(db string, changes []invalidator.Change) {
	n := 0
	for _, c := range changes {
		if c.Kind == invalidator.Data && c.KeyColumn != "" {
			n += h.p.store.InvalidateRows(db, c.Table, c.KeyColumn, c.Keys)
			continue
		}
		n += h.p.store.InvalidateTable(db, c.Table)
		if c.Kind == invalidator.Schema {
			h.p.planner.forget(db)
		}
	}
	h.p.metrics.invalidations.WithLabelValues("stream").Add(float64(n))
	h.p.metrics.invalidationEvents.WithLabelValues("stream").Inc()
}

// CheckInvalidation verifies that change streaming can work for the
// service login's own database: what is missing, and how to fix it.
func (p *Proxy) CheckInvalidation(ctx context.Context) error {
	if p.streams == nil {
		return nil
	}
	if p.cfg.ServiceDSN == "" {
		return fmt.Errorf("invalidation.postgres.mode is logical but postgres.service_dsn is empty")
	}
	cfg, err := p.streams.streamConfig("")
	if err != nil {
		return err
	}
	return pglogical.Check(ctx, cfg)
}

// streamCollector exports each stream's state at scrape time.
type streamCollector struct {
	ss *streams

	connected, lagSeconds, lagBytes, info *prometheus.Desc
	resets, reconnects, changes           *prometheus.Desc
}

func newStreamCollector(ss *streams) *streamCollector {
	db := []string{"database"}
	return &streamCollector{
		ss:         ss,
		connected:  prometheus.NewDesc("sqlcache_stream_connected", "1 while the database's change stream is connected.", db, nil),
		lagSeconds: prometheus.NewDesc("sqlcache_stream_lag_seconds", "Age of the newest point up to which every commit has been applied (+Inf when unknown).", db, nil),
		lagBytes:   prometheus.NewDesc("sqlcache_stream_lag_bytes", "Server WAL position minus the applied position.", db, nil),
		info:       prometheus.NewDesc("sqlcache_stream_info", "The stream's replication slot.", []string{"database", "slot", "temporary"}, nil),
		resets:     prometheus.NewDesc("sqlcache_stream_resets_total", "Times the database's cached answers were dropped because changes may have been missed.", db, nil),
		reconnects: prometheus.NewDesc("sqlcache_stream_reconnects_total", "Stream reconnections.", db, nil),
		changes:    prometheus.NewDesc("sqlcache_stream_changes_total", "Table changes received from the stream.", db, nil),
	}
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connected, c.lagSeconds, c.lagBytes, c.info, c.resets, c.reconnects, c.changes} {
		ch <- d
	}
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	c.ss.mu.Lock()
	byDB := make(map[string]*pglogical.Stream, len(c.ss.byDB))
	for db, st := range c.ss.byDB {
		if st != nil {
			byDB[db] = st
		}
	}
	c.ss.mu.Unlock()
	for db, st := range byDB {
		s := st.Status()
		connected, lag := 0.0, math.Inf(1)
		if s.Connected {
			connected = 1
		}
		if !s.FreshAsOf.IsZero() {
			lag = time.Since(s.FreshAsOf).Seconds()
		}
		var lagBytes float64
		if s.ServerLSN > s.AppliedLSN {
			lagBytes = float64(s.ServerLSN - s.AppliedLSN)
		}
		ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, connected, db)
		ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, lag, db)
		ch <- prometheus.MustNewConstMetric(c.lagBytes, prometheus.GaugeValue, lagBytes, db)
		ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, db, s.Slot, fmt.Sprint(s.Temporary))
		ch <- prometheus.MustNewConstMetric(c.resets, prometheus.CounterValue, float64(s.Resets), db)
		ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(s.Reconnects), db)
		ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(s.Changes), db)
	}
}
