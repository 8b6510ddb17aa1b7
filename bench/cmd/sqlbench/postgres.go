package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgresConf is appended to the throwaway cluster's postgresql.conf:
// modest memory, no durability (the data is thrown away), logical WAL for
// sqlcache's change stream.
const postgresConf = `
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
wal_level = logical
max_wal_size = 2GB
log_min_messages = warning
`

// startPostgres initialises a cluster in the temp dir, starts it on port
// and creates database bench.
func (e *env) startPostgres(ctx context.Context, port int) (*proc, error) {
	dir := e.path("pg")
	if err := mkdirFor(dir, e.cred); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := e.initdb(ctx, data); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(postgresConf, port, dir)
	if err := appendFile(filepath.Join(data, "postgresql.conf"), conf); err != nil {
		return nil, err
	}
	p, err := e.start("postgres", e.cred, syscall.SIGINT, filepath.Join(e.tools.pgBinDir, "postgres"), "-D", data)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, p, port, "postgres", 60*time.Second); err != nil {
		return nil, fmt.Errorf("postgres: %w\n%s", err, p.logTail(20))
	}
	if err := execSQL(ctx, port, "postgres", "CREATE DATABASE "+benchDB); err != nil {
		return nil, err
	}
	return p, nil
}

// initdb creates a cluster with trust authentication and locale C.
func (e *env) initdb(ctx context.Context, data string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(e.tools.pgBinDir, "initdb"),
		"-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Dir = e.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// pgbenchInit fills database bench with pgbench -i at the given scale.
func (e *env) pgbenchInit(ctx context.Context, port, scale int) error {
	cmd := exec.CommandContext(ctx, e.tools.pgbench, "-i", "-q", "-s", fmt.Sprint(scale),
		"-h", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "postgres", benchDB)
	cmd.Dir = e.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i -s %d: %w\n%s", scale, err, out)
	}
	return nil
}

// execSQL runs statements one by one (simple protocol, each in its own
// implicit transaction, so VACUUM is allowed) on a fresh connection.
func execSQL(ctx context.Context, port int, db string, stmts ...string) error {
	conn, err := pgx.Connect(ctx, connString(port, db))
	if err != nil {
		return fmt.Errorf("connecting to %s on port %d: %w", db, port, err)
	}
	defer conn.Close(context.Background())
	for _, sql := range stmts {
		if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("%s: %w", firstWords(sql), err)
		}
	}
	return nil
}

// firstWords shortens SQL for error messages.
func firstWords(sql string) string {
	sql = strings.Join(strings.Fields(sql), " ")
	if len(sql) > 60 {
		return sql[:60] + "…"
	}
	return sql
}

// appendFile appends text to an existing file, keeping its owner.
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// writeFileFor writes a config file readable by cred's user.
func writeFileFor(path, text string, cred runAs) error {
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return chownTo(path, cred)
}
