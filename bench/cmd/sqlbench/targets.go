package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Target names, in the order every round runs them.
const (
	tDirect    = "direct"
	tSqlcache  = "sqlcache"
	tNoCache   = "sqlcache-nocache"
	tPgbouncer = "pgbouncer"
	tPgpool    = "pgpool"
	// tPglimit is ../shared/tools/pglimit, the ceiling for a caching
	// proxy on this machine; only when -pglimit names its binary, never
	// by default.
	tPglimit = "pglimit"
	// tNoStream is sqlcache with its cache on and no change stream
	// (invalidation.postgres.mode none): what the stream costs PostgreSQL
	// and sqlcache, by difference with tSqlcache. Only when -targets
	// names it, never by default: without a stream, writes made directly
	// are not seen.
	tNoStream = "sqlcache-nostream"
	// tMemory is the memory measurement's own sqlcache, not a target of
	// the workloads.
	tMemory = "sqlcache-memory"
)

var allTargets = []string{tDirect, tSqlcache, tNoCache, tPgbouncer, tPgpool}

// targetInfo describes a target for the report.
var targetInfo = map[string]string{
	tDirect:    "PostgreSQL itself",
	tSqlcache:  "sqlcache, cache on",
	tNoCache:   "sqlcache, cache off (relay only)",
	tPgbouncer: "PgBouncer, session pooling",
	tPgpool:    "pgpool-II, in-memory query cache (shmem)",
	tPglimit:   "pglimit: replays replies by exact request bytes, no safety (the ceiling)",
	tNoStream:  "sqlcache, cache on, no change stream (invalidation.postgres.mode none)",
}

// target is something pgbench connects to.
type target struct {
	name   string
	port   int
	failed string // why it did not start; empty when it runs
	admin  string // sqlcache's admin host:port, for /metrics
	proc   *proc  // nil for direct
	note   string // a problem worth reporting that did not stop it
}

// up reports whether the target can be measured.
func (t *target) up() bool { return t.failed == "" }

// startTargets starts the chosen targets in front of Postgres on pgPort. A
// target that fails to start is returned with its reason, not dropped.
func (e *env) startTargets(ctx context.Context, names []string, pgPort int, o options) ([]*target, error) {
	var ts []*target
	for _, name := range names {
		t, err := e.startTarget(ctx, name, pgPort, o)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			t.failed = "failed to start: " + oneLine(err.Error())
			fmt.Printf("    %-17s %s\n", name, t.failed)
		} else {
			fmt.Printf("    %-17s ready on 127.0.0.1:%d\n", name, t.port)
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// startTarget starts one target and checks that it answers SELECT 1.
func (e *env) startTarget(ctx context.Context, name string, pgPort int, o options) (*target, error) {
	sqlcacheBin := o.bin
	ports, err := freePorts(2)
	if err != nil {
		return &target{name: name}, err
	}
	t := &target{name: name, port: ports[0]}
	switch name {
	case tDirect:
		t.port = pgPort
	case tSqlcache, tNoCache:
		t.admin = fmt.Sprintf("127.0.0.1:%d", ports[1])
		t.proc, err = e.startSqlcache(name, sqlcacheBin, sqlcacheConfig{
			port: t.port, admin: t.admin, pgPort: pgPort, cache: name == tSqlcache,
		})
	case tNoStream:
		t.admin = fmt.Sprintf("127.0.0.1:%d", ports[1])
		t.proc, err = e.startSqlcache(name, sqlcacheBin, sqlcacheConfig{
			port: t.port, admin: t.admin, pgPort: pgPort, cache: true, invalidation: "none",
		})
	case tMemory:
		t.admin = fmt.Sprintf("127.0.0.1:%d", ports[1])
		t.proc, err = e.startSqlcache(name, sqlcacheBin, sqlcacheConfig{
			port: t.port, admin: t.admin, pgPort: pgPort, cache: true, maxBytes: "4GiB", invalidation: "none",
		})
	case tPgbouncer:
		t.proc, err = e.startPgbouncer(t.port, pgPort)
	case tPgpool:
		t.proc, err = e.startPgpool(t.port, ports[1], pgPort)
	case tPglimit:
		t.proc, err = e.start(name, nil, syscall.SIGTERM, o.pglimit,
			"-listen", fmt.Sprintf("127.0.0.1:%d", t.port), "-backend", fmt.Sprintf("127.0.0.1:%d", pgPort))
	default:
		return t, fmt.Errorf("unknown target %q", name)
	}
	if err != nil {
		return t, err
	}
	if err := waitReady(ctx, t.proc, t.port, benchDB, 30*time.Second); err != nil {
		return t, e.startError(t, err)
	}
	if name == tSqlcache || name == tNoStream || name == tMemory {
		t.note = waitCaching(ctx, t, 60*time.Second)
	}
	return t, nil
}

// probeSQL is a cacheable read that waitCaching repeats.
const probeSQL = "SELECT abalance FROM pgbench_accounts WHERE aid = 1"

// waitCaching waits until sqlcache answers a repeated read from its cache:
// with invalidation from the change stream it relays everything until the
// stream is up. It returns a note for the report if that never happens.
func waitCaching(ctx context.Context, t *target, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for range 2 {
			_ = execSQL(ctx, t.port, benchDB, probeSQL)
		}
		if m, err := scrape(ctx, t.admin); err == nil && m["sqlcache_cache_hits_total"] > 0 {
			return ""
		}
		time.Sleep(250 * time.Millisecond)
	}
	note := fmt.Sprintf("%s never answered a repeated read from its cache within %s", t.name, timeout)
	if m, err := scrape(ctx, t.admin); err == nil {
		note += " (bypasses: " + bypassReasons(m) + ")"
	}
	fmt.Printf("    warning: %s\n", note)
	return note
}

// bypassReasons lists sqlcache_cache_bypasses_total by reason.
func bypassReasons(m promMetrics) string {
	const prefix = `sqlcache_cache_bypasses_total{reason="`
	var rs []string
	for k, v := range m {
		if reason, ok := strings.CutPrefix(k, prefix); ok {
			rs = append(rs, fmt.Sprintf("%s %.0f", strings.TrimSuffix(reason, `"}`), v))
		}
	}
	slices.Sort(rs)
	return strings.Join(rs, ", ")
}

// startError adds the tail of the target's log to err and stops it.
func (e *env) startError(t *target, err error) error {
	if t.proc == nil {
		return err
	}
	tail := strings.ReplaceAll(t.proc.logTail(3), "\n", " | ")
	_ = e.stopProc(t.proc)
	return fmt.Errorf("%w (log: %s)", err, tail)
}

// sqlcacheConfig is what varies between sqlcache instances.
type sqlcacheConfig struct {
	port, pgPort int
	admin        string
	cache        bool
	maxBytes     string // cache.max_bytes; empty for the default
	// invalidation is invalidation.postgres.mode; empty for the default
	// (logical: the change stream).
	invalidation string
}

// startSqlcache writes a config file and starts bin/sqlcache serve.
func (e *env) startSqlcache(name, bin string, c sqlcacheConfig) (*proc, error) {
	cacheConf := fmt.Sprintf("{enabled: %t}", c.cache)
	if c.maxBytes != "" {
		cacheConf = fmt.Sprintf("{enabled: %t, max_bytes: %s}", c.cache, c.maxBytes)
	}
	if c.invalidation != "" {
		cacheConf += fmt.Sprintf("\ninvalidation:\n  postgres: {mode: %s}", c.invalidation)
	}
	conf := fmt.Sprintf(`postgres:
  listen: "127.0.0.1:%d"
  backend: "127.0.0.1:%d"
  service_dsn: %q
  backend_tls: {mode: disable}
cache: %s
admin:
  listen: %q
log:
  level: warn
shutdown_timeout: 5s
`, c.port, c.pgPort, connString(c.pgPort, "postgres"), cacheConf, c.admin)
	path := e.path(name + ".yaml")
	if err := writeFileFor(path, conf, nil); err != nil {
		return nil, err
	}
	return e.start(name, nil, syscall.SIGTERM, bin, "serve", "--config", path)
}

// startPgbouncer starts PgBouncer in session pooling mode with trust
// authentication. PgBouncer refuses to run as root.
func (e *env) startPgbouncer(port, pgPort int) (*proc, error) {
	dir := e.path("pgbouncer")
	if err := mkdirFor(dir, e.cred); err != nil {
		return nil, err
	}
	users := filepath.Join(dir, "userlist.txt")
	if err := writeFileFor(users, `"postgres" ""`+"\n", e.cred); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`[databases]
* = host=127.0.0.1 port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir = %s
pidfile = %s/pgbouncer.pid
auth_type = trust
auth_file = %s
pool_mode = session
max_client_conn = 200
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
`, pgPort, port, dir, dir, users)
	path := filepath.Join(dir, "pgbouncer.ini")
	if err := writeFileFor(path, conf, e.cred); err != nil {
		return nil, err
	}
	// SIGTERM is PgBouncer 1.18's immediate shutdown (SIGINT waits for clients).
	return e.start("pgbouncer", e.cred, syscall.SIGTERM, e.tools.pgbouncer, path)
}
