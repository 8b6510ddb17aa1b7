package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/sqlcache/sqlcache/cachepolicy"
	"github.com/sqlcache/sqlcache/proxy"
)

// defaults lists every configuration key with its default. It is the
// source of truth for which keys exist: a key not listed is an error, and
// every key listed can be set by the environment variable SQLCACHE_ plus the
// key in upper case with dots as underscores.
var defaults = map[string]any{
	"postgres.listen":              "127.0.0.1:6432",
	"postgres.backend":             "127.0.0.1:5432",
	"postgres.service_dsn":         "",
	"postgres.tls.cert_file":       "",
	"postgres.tls.key_file":        "",
	"postgres.backend_tls.mode":    "prefer",
	"postgres.backend_tls.ca_file": "",
	"postgres.max_message_bytes":   "64MiB",
	"postgres.startup_timeout":     "30s",
	"admin.listen":                 "127.0.0.1:9187",
	"log.level":                    "info",
	"log.format":                   "text",
	"shutdown_timeout":             "30s",
	"cache.enabled":                true,
	"cache.max_bytes":              "256MiB",
	"cache.max_entry_bytes":        "1MiB",
	"cache.default_ttl":            "0s",
	"cache.rules":                  []any{},
	"cache.catalog_check":          "30s",

	"invalidation.postgres.mode":               "logical",
	"invalidation.postgres.max_lag":            "1s",
	"invalidation.postgres.release_idle":       "30s",
	"invalidation.postgres.publication":        "sqlcache",
	"invalidation.postgres.create_publication": true,
	"invalidation.postgres.slot":               "",
	"invalidation.postgres.startup_check":      "warn",
}

// maxMessageLimit is the largest postgres.max_message_bytes accepted: the
// PostgreSQL protocol's own limit on a message.
const maxMessageLimit = 1 << 30

// config is the validated configuration.
type config struct {
	Proxy           proxy.Config
	Listen          string
	AdminListen     string
	LogLevel        slog.Level
	LogFormat       string
	ShutdownTimeout time.Duration
	// StartupCheckFail: exit when change streaming cannot work, rather
	// than warn (invalidation.postgres.startup_check).
	StartupCheckFail bool
}

// configError is a problem with the configuration; the process exits 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

// newViper returns a viper with the defaults and the environment bound.
func newViper() *viper.Viper {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix("SQLCACHE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	// An empty variable wins over the file too: SQLCACHE_ADMIN_LISTEN=
	// turns the admin listener off, as --admin-listen "" does.
	v.AllowEmptyEnv(true)
	v.AutomaticEnv()
	return v
}

// loadConfig reads the file (if any) into v and validates everything.
func loadConfig(v *viper.Viper, file string) (*config, error) {
	if file != "" {
		if _, err := os.Stat(file); err != nil {
			return nil, configErrorf("config file: %v", err)
		}
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, configErrorf("config file %s: %v", file, err)
		}
		if err := checkKeys(v); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	return parseConfig(v)
}

// checkKeys rejects keys the configuration does not have, so that a typo
// is an error instead of a silently ignored setting.
func checkKeys(v *viper.Viper) error {
	var unknown []string
	for _, k := range v.AllKeys() {
		if _, ok := defaults[k]; !ok && !(isEmpty(v.Get(k)) && isSection(k)) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return configErrorf("unknown key %s (see config.example.yaml for the keys)", strings.Join(unknown, ", "))
}

// isEmpty reports whether a section's value is no value of its own: a
// section whose keys are all commented out is null in YAML, which viper
// lists as a key of its own and reads as its defaults (a map).
func isEmpty(val any) bool {
	switch val.(type) {
	case nil, map[string]any:
		return true
	}
	return false
}

// isSection reports whether k is a section of keys (postgres.tls), which
// YAML gives as an empty value when all its keys are commented out.
func isSection(k string) bool {
	for d := range defaults {
		if strings.HasPrefix(d, k+".") {
			return true
		}
	}
	return false
}

func parseConfig(v *viper.Viper) (*config, error) {
	g := getter{v: v}
	c := &config{
		Listen:      g.addr("postgres.listen", true),
		AdminListen: g.optionalAddr("admin.listen"),
		LogFormat:   g.oneOf("log.format", "text", "json"),
	}
	c.Proxy.Backend = g.addr("postgres.backend", false)
	c.Proxy.ServiceDSN = g.dsn("postgres.service_dsn")
	c.Proxy.MaxMessageBytes = int(g.size("postgres.max_message_bytes", 1<<10, maxMessageLimit))
	c.Proxy.StartupTimeout = g.duration("postgres.startup_timeout", time.Millisecond)
	c.ShutdownTimeout = g.duration("shutdown_timeout", 0)
	c.Proxy.TLS = g.serverTLS("postgres.tls.cert_file", "postgres.tls.key_file")
	mode, err := proxy.ParseBackendTLSMode(g.str("postgres.backend_tls.mode"))
	if err != nil {
		g.fail("postgres.backend_tls.mode", err)
	}
	c.Proxy.BackendTLSMode = mode
	if roots := g.caFile("postgres.backend_tls.ca_file"); roots != nil {
		c.Proxy.BackendTLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	c.Proxy.Cache = proxy.CacheConfig{
		Enabled:       g.boolean("cache.enabled"),
		MaxBytes:      g.size("cache.max_bytes", 1<<20, 1<<40),
		MaxEntryBytes: g.size("cache.max_entry_bytes", 1<<10, 1<<30),
		DefaultTTL:    g.duration("cache.default_ttl", 0),
		Rules:         g.rules("cache.rules"),
		CatalogCheck:  g.duration("cache.catalog_check", 100*time.Millisecond),
	}
	c.Proxy.Invalidation = proxy.InvalidationConfig{
		Mode:              proxy.InvalidationMode(g.oneOf("invalidation.postgres.mode", "logical", "none")),
		MaxLag:            g.duration("invalidation.postgres.max_lag", time.Millisecond),
		Publication:       g.str("invalidation.postgres.publication"),
		CreatePublication: g.boolean("invalidation.postgres.create_publication"),
		Slot:              g.str("invalidation.postgres.slot"),
		ReleaseIdle:       g.duration("invalidation.postgres.release_idle", 100*time.Millisecond),
	}
	c.StartupCheckFail = g.oneOf("invalidation.postgres.startup_check", "warn", "fail") == "fail"
	if c.Proxy.Cache.MaxEntryBytes > c.Proxy.Cache.MaxBytes/2 {
		g.fail("cache.max_entry_bytes", fmt.Errorf("must be at most half of cache.max_bytes"))
	}
	switch lvl := g.oneOf("log.level", "debug", "info", "warn", "error"); lvl {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "warn":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		c.LogLevel = slog.LevelInfo
	}
	if err := errors.Join(g.errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// getter reads keys and collects one error per bad key, each naming it.
type getter struct {
	v    *viper.Viper
	errs []error
}

func (g *getter) fail(key string, err error) {
	g.errs = append(g.errs, configErrorf("%s: %v", key, err))
}

func (g *getter) str(key string) string {
	switch val := g.v.Get(key).(type) {
	case string:
		return val
	case nil:
		return ""
	case int, int64, float64, bool:
		return fmt.Sprint(val)
	default:
		g.fail(key, fmt.Errorf("want a string, got %T", val))
		return ""
	}
}

func (g *getter) oneOf(key string, allowed ...string) string {
	s := g.str(key)
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	g.fail(key, fmt.Errorf("%q is not one of %s", s, strings.Join(allowed, ", ")))
	return allowed[0]
}

// addr validates host:port; a listen address may leave the host empty.
func (g *getter) addr(key string, listen bool) string {
	s := g.str(key)
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		g.fail(key, fmt.Errorf("%q is not host:port", s))
		return s
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (!listen && n == 0) {
		g.fail(key, fmt.Errorf("%q has an invalid port", s))
		return s
	}
	if !listen && host == "" {
		g.fail(key, fmt.Errorf("%q has no host", s))
	}
	return s
}

func (g *getter) optionalAddr(key string) string {
	if g.str(key) == "" {
		return ""
	}
	return g.addr(key, true)
}

func (g *getter) duration(key string, least time.Duration) time.Duration {
	s := g.str(key)
	d, err := time.ParseDuration(s)
	if err != nil {
		g.fail(key, fmt.Errorf("%q is not a duration (like 30s or 1m30s)", s))
		return 0
	}
	if d < least {
		g.fail(key, fmt.Errorf("%v is less than %v", d, least))
	}
	return d
}

var sizeRE = regexp.MustCompile(`^\s*(\d+)\s*([KMGT]i?B|kB|B)?\s*$`)

// size parses a byte count: a number, or one with a unit (KiB, MiB, GiB,
// and kB, KB, MB, GB taken as their binary namesakes, as PostgreSQL does;
// PostgreSQL spells the first kB).
func (g *getter) size(key string, least, most int64) int64 {
	s := g.str(key)
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		g.fail(key, fmt.Errorf("%q is not a size (like 1048576, 512KiB or 64MiB)", s))
		return 0
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "B": 0, "kB": 10, "KB": 10, "KiB": 10, "MB": 20, "MiB": 20, "GB": 30, "GiB": 30, "TB": 40, "TiB": 40}[m[2]]
	if err != nil || n > (1<<62)>>shift {
		g.fail(key, fmt.Errorf("%q is too large", s))
		return 0
	}
	n <<= shift
	if n < least || n > most {
		g.fail(key, fmt.Errorf("%d bytes is outside %d to %d", n, least, most))
	}
	return n
}

func (g *getter) dsn(key string) string {
	s := g.str(key)
	if s == "" {
		return ""
	}
	if _, err := pgconn.ParseConfig(s); err != nil {
		g.fail(key, errors.New("not a valid PostgreSQL connection string"))
	}
	return s
}

func (g *getter) serverTLS(certKey, keyKey string) *tls.Config {
	cert, key := g.str(certKey), g.str(keyKey)
	switch {
	case cert == "" && key == "":
		return nil
	case cert == "":
		g.fail(certKey, fmt.Errorf("must be set when %s is", keyKey))
		return nil
	case key == "":
		g.fail(keyKey, fmt.Errorf("must be set when %s is", certKey))
		return nil
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		g.fail(certKey, err)
		return nil
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

func (g *getter) caFile(key string) *x509.CertPool {
	path := g.str(key)
	if path == "" {
		return nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		g.fail(key, err)
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		g.fail(key, fmt.Errorf("%s holds no PEM certificate", path))
		return nil
	}
	return pool
}

func (g *getter) boolean(key string) bool {
	switch val := g.v.Get(key).(type) {
	case bool:
		return val
	case string:
		b, err := strconv.ParseBool(val)
		if err != nil {
			g.fail(key, fmt.Errorf("%q is not true or false", val))
		}
		return b
	default:
		g.fail(key, fmt.Errorf("want true or false, got %v", val))
		return false
	}
}

// rules parses cache.rules: a list of {table: "schema.name"} or
// {query: "regexp"}, each with cache: never or a ttl.
func (g *getter) rules(key string) []cachepolicy.Rule {
	raw := g.v.Get(key)
	if text, ok := raw.(string); ok {
		// From the environment: YAML (or JSON) flow text.
		if err := yaml.Unmarshal([]byte(text), &raw); err != nil {
			g.fail(key, fmt.Errorf("want a list of rules: %v", err))
			return nil
		}
	}
	list, ok := raw.([]any)
	if !ok {
		if raw == nil {
			return nil
		}
		g.fail(key, fmt.Errorf("want a list of rules, got %T", raw))
		return nil
	}
	var out []cachepolicy.Rule
	for i, item := range list {
		name := fmt.Sprintf("%s[%d]", key, i)
		m, ok := item.(map[string]any)
		if !ok {
			g.fail(name, fmt.Errorf("want a map like {table: public.t, ttl: 5s}, got %v", item))
			continue
		}
		if r, err := parseRule(m); err != nil {
			g.fail(name, err)
		} else {
			out = append(out, r)
		}
	}
	return out
}

func parseRule(m map[string]any) (cachepolicy.Rule, error) {
	var r cachepolicy.Rule
	for k, v := range m {
		s := fmt.Sprint(v)
		switch k {
		case "table":
			r.Table = s
		case "query":
			re, err := regexp.Compile(s)
			if err != nil {
				return r, fmt.Errorf("query: %v", err)
			}
			r.Query = re
		case "cache":
			if s != "never" {
				return r, fmt.Errorf("cache: %q (the only value is never)", s)
			}
			r.Never = true
		case "ttl":
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				return r, fmt.Errorf("ttl: %q is not a duration", s)
			}
			r.TTL, r.HasTTL = d, true
		default:
			return r, fmt.Errorf("unknown key %q (want table or query, and cache: never or ttl)", k)
		}
	}
	switch {
	case (r.Table == "") == (r.Query == nil):
		return r, errors.New("needs exactly one of table and query")
	case r.Never == r.HasTTL:
		return r, errors.New("needs exactly one of cache: never and ttl")
	}
	return r, nil
}
