package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
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
