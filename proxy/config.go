package proxy

import (
	"crypto/tls"

	"fmt"
	"github.com/sqlcache/sqlcache/cachepolicy"
	"log/slog"
	"time"
)

// BackendTLSMode says whether and how sqlcache encrypts its connections to
// PostgreSQL; the names and meanings follow libpq's sslmode.
type BackendTLSMode string

const (
	// BackendTLSDisable never asks for TLS.
	BackendTLSDisable BackendTLSMode = "disable"
	// BackendTLSPrefer asks for TLS and goes on in plaintext if refused.
	BackendTLSPrefer BackendTLSMode = "prefer"
	// BackendTLSRequire insists on TLS; the certificate is checked only if
	// a CA is configured (libpq verify-ca behaviour in that case).
	BackendTLSRequire BackendTLSMode = "require"
	// BackendTLSVerifyFull insists on TLS with a certificate that chains
	// to the CA and names the backend host.
	BackendTLSVerifyFull BackendTLSMode = "verify-full"
)

// ParseBackendTLSMode validates a mode name.
func ParseBackendTLSMode(s string) (BackendTLSMode, error) {
	switch m := BackendTLSMode(s); m {
	case BackendTLSDisable, BackendTLSPrefer, BackendTLSRequire, BackendTLSVerifyFull:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want disable, prefer, require or verify-full)", s)
}

// Config configures a Proxy. The zero value of each field means its
// default, as documented on the field.
type Config struct {
	// Backend is the PostgreSQL server, host:port. Required.
	Backend string

	// ServiceDSN is sqlcache's own login for catalog lookups and the change
	// stream. Unused for now.
	ServiceDSN string

	// TLS, if set, terminates client TLS: SSLRequest is answered 'S'.
	// If nil, SSLRequest is answered 'N'.
	TLS *tls.Config

	// BackendTLSMode is how to talk to the backend; "" means prefer.
	BackendTLSMode BackendTLSMode
	// BackendTLS is the client TLS configuration for backend connections
	// (root CAs, server name). If nil, a default one is derived from the
	// mode: no verification for prefer and require, system roots and the
	// backend host name for verify-full.
	BackendTLS *tls.Config

	// MaxMessageBytes caps the body of any message a client sends; a longer
	// length claim gets an ErrorResponse and the connection closes. If zero,
	// 64 MiB.
	MaxMessageBytes int

	// StartupTimeout bounds the handshake: startup packets, TLS and
	// authentication. If zero, 30 seconds.
	StartupTimeout time.Duration

	// DialTimeout bounds each TCP connect to the backend. If zero, 10
	// seconds.
	DialTimeout time.Duration

	// Cache configures the query cache.
	Cache CacheConfig

	// Invalidation configures change-stream invalidation.
	Invalidation InvalidationConfig

	// Logger receives the proxy's logs. If nil, logs are discarded.
	Logger *slog.Logger
}

// CacheConfig configures the query cache.
type CacheConfig struct {
	// Enabled turns the cache on; when false sqlcache only relays.
	Enabled bool
	// MaxBytes is the memory budget of cached answers, keys and
	// bookkeeping included. If zero, 256 MiB.
	MaxBytes int64
	// MaxEntryBytes is the largest answer cached. If zero, 1 MiB.
	MaxEntryBytes int64
	// DefaultTTL bounds an entry's life when no rule sets one; zero means
	// until invalidated.
	DefaultTTL time.Duration
	// Rules override the TTL or forbid caching per table or query; the
	// first match wins.
	Rules []cachepolicy.Rule
	// CatalogCheck is how often decisions are re-checked against the
	// catalog, to notice schema changes made behind sqlcache's back, and
	// each database's access (privileges, row security, roles, role
	// settings) is compared with the last check. If zero, 30 seconds.
	CatalogCheck time.Duration
}

// DefaultMaxMessageBytes is the default of Config.MaxMessageBytes.
const DefaultMaxMessageBytes = 64 << 20

func (c *Config) withDefaults() Config {
	out := *c
	if out.BackendTLSMode == "" {
		out.BackendTLSMode = BackendTLSPrefer
	}
	if out.MaxMessageBytes <= 0 {
		out.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if out.StartupTimeout <= 0 {
		out.StartupTimeout = 30 * time.Second
	}
	if out.DialTimeout <= 0 {
		out.DialTimeout = 10 * time.Second
	}
	if out.Cache.MaxBytes <= 0 {
		out.Cache.MaxBytes = 256 << 20
	}
	if out.Cache.MaxEntryBytes <= 0 {
		out.Cache.MaxEntryBytes = 1 << 20
	}
	if out.Cache.CatalogCheck <= 0 {
		out.Cache.CatalogCheck = 30 * time.Second
	}
	if out.Invalidation.Mode == "" {
		out.Invalidation.Mode = InvalidationLogical
	}
	if out.Invalidation.MaxLag <= 0 {
		out.Invalidation.MaxLag = time.Second
	}
	if out.Invalidation.Publication == "" {
		out.Invalidation.Publication = "sqlcache"
	}
	if out.Invalidation.Heartbeat <= 0 {
		out.Invalidation.Heartbeat = min(out.Invalidation.MaxLag/4, 100*time.Millisecond)
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out
}
