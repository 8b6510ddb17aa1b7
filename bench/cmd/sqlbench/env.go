package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// benchDB is the database pgbench -i fills.
const benchDB = "bench"

// env is everything the benchmark started: a temp dir and the servers in
// it. close stops them all (last started first) and removes the dir.
type env struct {
	dir   string // temp dir, owned by cred's user
	cred  runAs  // OS user running the servers; nil for ourselves
	tools tools
	procs []*proc
}

// newEnv creates the temp dir.
func newEnv(t tools) (*env, error) {
	cred, err := serverUser()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sqlbench-*")
	if err != nil {
		return nil, fmt.Errorf("creating temp dir: %w", err)
	}
	e := &env{dir: dir, cred: cred, tools: t}
	if err := os.Chmod(dir, 0o755); err != nil {
		return e, fmt.Errorf("chmod %s: %w", dir, err)
	}
	return e, chownTo(dir, cred)
}

// path returns a path inside the temp dir.
func (e *env) path(elem ...string) string {
	return filepath.Join(append([]string{e.dir}, elem...)...)
}

// start starts a server (see startProc) and remembers it for close.
func (e *env) start(name string, cred runAs, stopSig syscall.Signal, bin string, args ...string) (*proc, error) {
	p, err := startProc(name, cred, e.dir, e.path(name+".log"), stopSig, bin, args...)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	return p, nil
}

// stopProc stops one server now and forgets it.
func (e *env) stopProc(p *proc) error {
	e.procs = slices.DeleteFunc(e.procs, func(q *proc) bool { return q == p })
	return p.stop(20 * time.Second)
}

// close stops every server, last started first, and removes the temp dir.
func (e *env) close() error {
	var errs []error
	for _, p := range slices.Backward(e.procs) {
		if err := p.stop(20 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	e.procs = nil
	if err := os.RemoveAll(e.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", e.dir, err))
	}
	return errors.Join(errs...)
}

// connString is a libpq URL for the superuser on 127.0.0.1:port.
func connString(port int, db string) string {
	return fmt.Sprintf("postgresql://postgres@127.0.0.1:%d/%s?sslmode=disable", port, db)
}

// waitReady waits up to timeout for a server on port to answer SELECT 1,
// failing early if p exits.
func waitReady(ctx context.Context, p *proc, port int, db string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			return fmt.Errorf("%w: %s", errExited, lastLine(p.logTail(5)))
		}
		if last = selectOne(ctx, port, db); last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer to SELECT 1 after %s: %w", timeout, last)
}

// selectOne connects and runs SELECT 1 with the simple protocol.
func selectOne(ctx context.Context, port int, db string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString(port, db))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol).Scan(&one); err != nil {
		return err
	}
	if one != 1 {
		return fmt.Errorf("SELECT 1 returned %d", one)
	}
	return nil
}
