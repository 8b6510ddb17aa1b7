package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sqlcache/sqlcache/proxy/internal/cache"
)

// metrics are the proxy's Prometheus collectors, registered on a registry
// of the Proxy's own so that several proxies (tests) never collide.
type metrics struct {
	reg *prometheus.Registry

	clientsCurrent  prometheus.Gauge
	clientsTotal    prometheus.Counter
	clientsRejected *prometheus.CounterVec // by reason
	backendErrors   prometheus.Counter
	bytes           *prometheus.CounterVec // by direction
	bytesToBackend  prometheus.Counter
	bytesToClient   prometheus.Counter
	queries         *prometheus.CounterVec // by protocol
	querySimple     prometheus.Counter
	queryExtended   prometheus.Counter
	queryFunction   prometheus.Counter
	cancels         *prometheus.CounterVec // by result
	relayLatency    prometheus.Histogram

	hits               prometheus.Counter
	hitsInBlock        prometheus.Counter
	txDefaultsReads    *prometheus.CounterVec // by result
	misses             prometheus.Counter
	bypasses           *prometheus.CounterVec // by reason
	stampedeWaits      prometheus.Counter
	ownWriteWaits      prometheus.Counter
	invalidations      *prometheus.CounterVec // entries removed, by cause
	invalidationEvents *prometheus.CounterVec // invalidating events, by cause
	evictions          *prometheus.CounterVec // by reason
	fillLatency        prometheus.Histogram
	fillsDropped       *prometheus.CounterVec // by reason
	accessChecks       *prometheus.CounterVec // by result
	readBacks          *prometheus.CounterVec // by result
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		clientsCurrent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sqlcache_client_connections",
			Help: "Client connections currently open.",
		}),
		clientsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqlcache_client_connections_total",
			Help: "Client connections accepted.",
		}),
		clientsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlcache_client_connections_rejected_total",
			Help: "Client connections closed by sqlcache before or instead of relaying, by reason.",
		}, []string{"reason"}),
		backendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sqlcache_backend_connect_errors_total",
			Help: "Failed attempts to connect to the PostgreSQL backend.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlcache_relayed_bytes_total",
			Help: "Bytes relayed, by direction: to_backend, to_client.",
		}, []string{"direction"}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlcache_queries_total",
			Help: "Queries relayed, by protocol: simple (Query), extended (Execute), function (FunctionCall).",
		}, []string{"protocol"}),
		cancels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlcache_cancel_requests_total",
			Help: "CancelRequests received, by result: forwarded, unknown (no session has that key), failed.",
		}, []string{"result"}),
		relayLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sqlcache_relay_latency_seconds",
			Help:    "Time from relaying a Sync, Query or FunctionCall to the backend to its ReadyForQuery.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
		}),
	}
	m.hits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sqlcache_cache_hits_total",
		Help: "Requests answered from the cache.",
	})
	m.hitsInBlock = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sqlcache_cache_hits_in_transaction_total",
		Help: "Requests answered from the cache inside a read committed transaction block that had run only cacheable reads (also counted in sqlcache_cache_hits_total).",
	})
	m.txDefaultsReads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlcache_session_transaction_defaults_read_total",
		Help: "Reads of a session's default_transaction_isolation and idle_in_transaction_session_timeout before a BEGIN, by result: ok, failed.",
	}, []string{"result"})
	m.misses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sqlcache_cache_misses_total",
		Help: "Cacheable requests not in the cache, relayed and filled.",
	})
	m.bypasses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlcache_cache_bypasses_total",
		Help: "Reads relayed without consulting the cache, by reason.",
	}, []string{"reason"})
	m.stampedeWaits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sqlcache_cache_stampede_waits_total",
		Help: "Misses answered by waiting for another session's fill of the same key.",
	})
	m.ownWriteWaits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sqlcache_cache_own_write_waits_total",
		Help: "Cache reads that first waited for the change stream to apply what the session's own earlier writes may have changed beyond the tables they name (triggers, rules, user functions).",
	})
	m.invalidations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlcache_cache_invalidated_entries_total",
		Help: "Cached entries dropped by invalidation, by cause: write, unclassified, admin, stream, stream_reset, catalog.",
	}, []string{"cause"})
	m.invalidationEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlcache_cache_invalidations_total",
		Help: "Invalidating events, by cause: write, unclassified, admin, stream, stream_reset, catalog.",
	}, []string{"cause"})
	m.evictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlcache_cache_evictions_total",
		Help: "Entries evicted, by reason: capacity, ttl.",
	}, []string{"reason"})
	m.fillLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sqlcache_cache_fill_latency_seconds",
		Help:    "Time from relaying a cacheable miss to storing its answer.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
	})
	m.fillsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlcache_cache_fills_dropped_total",
		Help: "Complete answers not stored, by reason (invalidated during fill, too large).",
	}, []string{"reason"})
	m.accessChecks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlcache_catalog_access_checks_total",
		Help: "Checks of a database's privileges, row security, views, columns, roles and settings (cache.catalog_check), by result: ok, failed.",
	}, []string{"result"})
	m.readBacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlcache_session_settings_read_back_total",
		Help: "Read-backs of a session's settings after it changed them in a way sqlcache could not follow (set_config, a function, SET in a transaction), by result: ok, failed.",
	}, []string{"result"})
	m.reg.MustRegister(m.hits, m.misses, m.bypasses, m.stampedeWaits, m.ownWriteWaits, m.invalidations,
		m.invalidationEvents, m.evictions, m.fillLatency, m.fillsDropped, m.accessChecks, m.readBacks,
		m.hitsInBlock, m.txDefaultsReads)
	m.bytesToBackend = m.bytes.WithLabelValues("to_backend")
	m.bytesToClient = m.bytes.WithLabelValues("to_client")
	m.querySimple = m.queries.WithLabelValues("simple")
	m.queryExtended = m.queries.WithLabelValues("extended")
	m.queryFunction = m.queries.WithLabelValues("function")
	m.reg.MustRegister(
		m.clientsCurrent, m.clientsTotal, m.clientsRejected, m.backendErrors,
		m.bytes, m.queries, m.cancels, m.relayLatency,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// registerStore exports the store's size.
func (m *metrics) registerStore(s *cache.Store) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sqlcache_cache_entries",
			Help: "Entries in the cache.",
		}, func() float64 { return float64(s.Stats().Entries) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sqlcache_cache_row_entries",
			Help: "Entries in the cache that answer about one row, which writes of other rows keep.",
		}, func() float64 { return float64(s.Stats().RowEntries) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sqlcache_cache_bytes",
			Help: "Bytes the cache accounts for: keys, answers and bookkeeping.",
		}, func() float64 { return float64(s.Stats().Bytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sqlcache_cache_unadmitted_total",
			Help: "Misses whose answers were not stored: the cache was full and the query had not missed before.",
		}, func() float64 { return float64(s.Stats().Unadmitted) }),
	)
}
