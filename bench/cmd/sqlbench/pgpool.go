package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// pgpoolConf is a complete pgpool.conf for pgpool-II 4.3 (Debian 12): one
// backend in raw mode (no replication, no load balancing), connection
// caching, and the in-memory query cache in shared memory. Everything it
// writes lives in the temp dir. Debian's own /etc/pgpool2/pgpool.conf is
// not used: it sets streaming_replication mode and paths under /var.
const pgpoolConf = `backend_clustering_mode = 'raw'
listen_addresses = '127.0.0.1'
port = %[1]d
socket_dir = '%[2]s'
pcp_listen_addresses = ''
pcp_port = %[3]d
pcp_socket_dir = '%[2]s'
pid_file_name = '%[2]s/pgpool.pid'
logdir = '%[2]s'
backend_hostname0 = '127.0.0.1'
backend_port0 = %[4]d
backend_weight0 = 1
backend_flag0 = 'DISALLOW_TO_FAILOVER'
enable_pool_hba = off
pool_passwd = ''
num_init_children = 32
max_pool = 1
connection_cache = on
child_life_time = 0
load_balance_mode = off
health_check_period = 0
sr_check_period = 0
failover_on_backend_error = off
use_watchdog = off
log_destination = 'stderr'
log_min_messages = warning
memory_cache_enabled = on
memqcache_method = 'shmem'
memqcache_total_size = 256MB
memqcache_max_num_cache = 1000000
memqcache_expire = 0
memqcache_auto_cache_invalidation = on
memqcache_maxcache = 400kB
memqcache_cache_block_size = 1MB
memqcache_oiddir = '%[2]s/oiddir'
`

// startPgpool starts pgpool-II in the foreground as cred's user.
func (e *env) startPgpool(port, pcpPort, pgPort int) (*proc, error) {
	dir := e.path("pgpool")
	for _, d := range []string{dir, filepath.Join(dir, "oiddir")} {
		if err := mkdirFor(d, e.cred); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"pgpool.conf":   fmt.Sprintf(pgpoolConf, port, dir, pcpPort, pgPort),
		"pcp.conf":      "",
		"pool_hba.conf": "host all all 127.0.0.1/32 trust\n",
	}
	for name, text := range files {
		if err := writeFileFor(filepath.Join(dir, name), text, e.cred); err != nil {
			return nil, err
		}
	}
	// -n: foreground; -D: ignore a stale pgpool_status. SIGINT is a fast
	// shutdown (SIGTERM waits for clients).
	return e.start("pgpool", e.cred, syscall.SIGINT, e.tools.pgpool, "-n", "-D",
		"-f", filepath.Join(dir, "pgpool.conf"),
		"-F", filepath.Join(dir, "pcp.conf"),
		"-a", filepath.Join(dir, "pool_hba.conf"))
}

// pgpoolCache reads SHOW pool_cache: cache hits and SELECTs that went to
// the backend, both counted since pgpool started.
func pgpoolCache(ctx context.Context, port int) (hits, selects float64, err error) {
	conn, err := pgx.Connect(ctx, connString(port, benchDB))
	if err != nil {
		return 0, 0, fmt.Errorf("connecting to pgpool: %w", err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SHOW pool_cache", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return 0, 0, fmt.Errorf("SHOW pool_cache: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return 0, 0, fmt.Errorf("SHOW pool_cache: no row: %w", rows.Err())
	}
	vals := rows.RawValues()
	for i, fd := range rows.FieldDescriptions() {
		v, _ := strconv.ParseFloat(string(vals[i]), 64)
		switch fd.Name {
		case "num_cache_hits":
			hits = v
		case "num_selects":
			selects = v
		}
	}
	return hits, selects, rows.Err()
}
