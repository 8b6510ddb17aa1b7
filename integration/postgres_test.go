package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgOSUser is the OS user that runs initdb and postgres when the tests run as
// root, which postgres refuses.
const pgOSUser = "postgres"

// PGRole is a login role that StartPostgres creates.
type PGRole struct {
	User     string
	Password string // empty for trust
	Auth     string // pg_hba.conf method for TCP connections from 127.0.0.1
}

// PGRoles are the roles of every server from StartPostgres, one per
// authentication method that sqlcache must pass through. Database app is
// owned by role app; the others get all privileges on database postgres.
var PGRoles = []PGRole{
	{User: "postgres", Auth: "trust"}, // superuser
	{User: "app", Auth: "trust"},
	{User: "md5user", Password: "md5pass", Auth: "md5"},
	{User: "scramuser", Password: "scrampass", Auth: "scram-sha-256"},
	{User: "pwuser", Password: "pwpass", Auth: "password"},
}

// Postgres is a PostgreSQL server started by StartPostgres for one test.
// Its methods must not be called concurrently.
type Postgres struct {
	Host    string // 127.0.0.1
	Port    int
	DataDir string
	BinDir  string // directory holding initdb and postgres
	SSL     bool   // started WithSSL
	Certs   Certs  // the server's certificate files if SSL

	dir     string              // holds DataDir, the log, the certs and the Unix socket
	logPath string              // postmaster's stdout and stderr, over all restarts
	cred    *syscall.Credential // OS user running postgres; nil for ours
	proc    *pgProcess          // the last postmaster started; nil before
}

// pgProcess is a postmaster and its exit.
type pgProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // from cmd.Wait; read only after done is closed
}

// PGOption configures StartPostgres.
type PGOption func(*pgOptions)

type pgOptions struct {
	ssl bool
}

// WithSSL turns on TLS with certificates from GenerateCerts, which the
// returned Postgres names in its Certs field.
func WithSSL() PGOption {
	return func(o *pgOptions) { o.ssl = true }
}

// StartPostgres initializes a new cluster on a free port, starts it, creates
// PGRoles and database app, and stops it when the test ends. If the test
// fails, the server's log is logged.
func StartPostgres(t testing.TB, opts ...PGOption) *Postgres {
	t.Helper()
	var o pgOptions
	for _, opt := range opts {
		opt(&o)
	}
	p := &Postgres{Host: "127.0.0.1", Port: FreePort(t), BinDir: findPGBinDir(t), SSL: o.ssl}
	p.makeDir(t)
	p.copyTemplate(t)
	p.configure(t)

	// Cleanups run last-registered first: stop the server, then show its log.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postgres log (last 50 lines):\n%s", p.logTail(50))
		}
	})
	t.Cleanup(func() { p.shutdown(t) })

	if err := p.launch(30 * time.Second); err != nil {
		t.Fatalf("starting postgres: %v (log below)", err)
	}
	return p
}

// pgTemplate is a cluster made once per test binary, with PGRoles and
// database app, that StartPostgres copies: initdb and CREATE DATABASE
// took about a third of starting a server, paid by every test.
var pgTemplate struct {
	once sync.Once
	dir  string // holds data/; empty if making it failed
}

// copyTemplate copies the template cluster, made on first use, into
// p.DataDir. The copy keeps the template's owner, pgOSUser when root.
func (p *Postgres) copyTemplate(t testing.TB) {
	t.Helper()
	pgTemplate.once.Do(func() { pgTemplate.dir = makePGTemplate(t, p.BinDir) })
	if pgTemplate.dir == "" {
		t.Fatal("the template cluster could not be made (see the first test that started postgres)")
	}
	src := filepath.Join(pgTemplate.dir, "data")
	if out, err := exec.Command("cp", "-a", src, p.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("copying the template cluster: cp -a %s %s: %v\n%s", src, p.DataDir, err, out)
	}
}

// makePGTemplate initializes a cluster, creates the roles and database app
// in it, stops it cleanly and returns its directory, removed by TestMain.
func makePGTemplate(t testing.TB, binDir string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sqlcache-pgtemplate-*")
	if err != nil {
		t.Fatalf("creating the template dir: %v", err)
	}
	tp := &Postgres{Host: "127.0.0.1", Port: FreePort(t), BinDir: binDir, dir: dir,
		DataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "postgres.log")}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("chmod %s: %v", dir, err)
	}
	if os.Geteuid() == 0 {
		tp.cred = lookupCredential(t, pgOSUser)
		ChownTo(t, dir, pgOSUser)
	}
	tp.initdb(t)
	tp.configure(t)
	if err := tp.launch(30 * time.Second); err != nil {
		t.Fatalf("starting the template postgres: %v\n%s", err, tp.logTail(50))
	}
	defer tp.shutdown(t) // if createRoles fails
	tp.createRoles(t)
	tp.shutdown(t)
	if tp.proc.err != nil {
		t.Fatalf("stopping the template postgres: %v\n%s", tp.proc.err, tp.logTail(50))
	}
	return dir
}

func removePGTemplate() {
	if pgTemplate.dir != "" {
		os.RemoveAll(pgTemplate.dir)
	}
}

// findPGBinDir returns the directory holding initdb and postgres: pg_config's
// bindir, or else the newest /usr/lib/postgresql/*/bin. Debian's pg_config
// may come from libpq-dev without any server installed.
func findPGBinDir(t testing.TB) string {
	t.Helper()
	var dirs []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(versioned, func(a, b string) int { return pgDirVersion(b) - pgDirVersion(a) })
	for _, dir := range append(dirs, versioned...) {
		if isFile(filepath.Join(dir, "initdb")) && isFile(filepath.Join(dir, "postgres")) {
			return dir
		}
	}
	t.Fatalf("PostgreSQL server binaries (initdb, postgres) not found: install the Debian package postgresql (apt-get install postgresql)")
	return ""
}

// pgDirVersion returns the major version in /usr/lib/postgresql/N/bin, in
// tenths so that 9.6 sorts below 10.
func pgDirVersion(binDir string) int {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return int(v * 10)
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// makeDir creates p.dir, removed when the test ends. It is not t.TempDir:
// when the tests run as root, postgres runs as pgOSUser, which cannot enter
// t.TempDir's root-only parent directories.
func (p *Postgres) makeDir(t testing.TB) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sqlcache-pg-*")
	if err != nil {
		t.Fatalf("creating postgres dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing postgres dir: %v", err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("chmod %s: %v", dir, err)
	}
	if os.Geteuid() == 0 {
		p.cred = lookupCredential(t, pgOSUser)
		ChownTo(t, dir, pgOSUser)
	}
	p.dir = dir
	p.DataDir = filepath.Join(dir, "data")
	p.logPath = filepath.Join(dir, "postgres.log")
}

// command returns a command running as the OS user of the server.
func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.BinDir, name), args...)
	// Our working directory may be closed to pgOSUser, and initdb wants one.
	cmd.Dir = p.dir
	cmd.SysProcAttr = procAttr(p.cred)
	return cmd
}

// initdb creates the cluster. Authentication is trust until configure
// writes pg_hba.conf, and there is no fsync because the data is thrown away.
func (p *Postgres) initdb(t testing.TB) {
	t.Helper()
	args := []string{"-D", p.DataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"}
	out, err := p.command("initdb", append(args, "--locale=C.UTF-8")...).CombinedOutput()
	if err == nil {
		return
	}
	// Not every system has the C.UTF-8 locale; C exists everywhere.
	os.RemoveAll(p.DataDir)
	out2, err2 := p.command("initdb", append(args, "--locale=C")...).CombinedOutput()
	if err2 != nil {
		t.Fatalf("initdb --locale=C.UTF-8: %v\n%s\ninitdb --locale=C: %v\n%s", err, out, err2, out2)
	}
}

// configure appends our settings to postgresql.conf and replaces pg_hba.conf.
// The files keep their owner, pgOSUser, because they already exist.
func (p *Postgres) configure(t testing.TB) {
	t.Helper()
	conf := []string{
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("port = %d", p.Port),
		// Not the default /var/run/postgresql, which a system server may use.
		fmt.Sprintf("unix_socket_directories = '%s'", p.dir),
		// sqlcache invalidates from logical replication.
		"wal_level = logical",
		"max_wal_senders = 10",
		"max_replication_slots = 10",
		// Durability only slows down a cluster that is thrown away.
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"max_connections = 200",
		"shared_buffers = 64MB",
		"log_min_messages = warning",
	}
	if p.SSL {
		p.Certs = GenerateCerts(t, p.dir)
		if p.cred != nil {
			// Postgres refuses a key that it does not own (or root with 0640).
			ChownTo(t, p.Certs.CertFile, pgOSUser)
			ChownTo(t, p.Certs.KeyFile, pgOSUser)
		}
		conf = append(conf, "ssl = on",
			fmt.Sprintf("ssl_cert_file = '%s'", p.Certs.CertFile),
			fmt.Sprintf("ssl_key_file = '%s'", p.Certs.KeyFile))
	}
	f, err := os.OpenFile(filepath.Join(p.DataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("opening postgresql.conf: %v", err)
	}
	_, err = f.WriteString("\n# Added by the sqlcache integration tests.\n" + strings.Join(conf, "\n") + "\n")
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatalf("writing postgresql.conf: %v", err)
	}
	if err := os.WriteFile(filepath.Join(p.DataDir, "pg_hba.conf"), []byte(pgHBA()), 0); err != nil {
		t.Fatalf("writing pg_hba.conf: %v", err)
	}
}

// pgHBA returns pg_hba.conf: each PGRole with a password authenticates with
// its method over TCP, everything else is trusted. "all" in the database
// column does not match replication connections, hence their own lines.
func pgHBA() string {
	lines := []string{
		"local all all trust",
		"local replication all trust",
	}
	for _, r := range PGRoles {
		if r.Auth != "trust" {
			lines = append(lines, fmt.Sprintf("host all %s 127.0.0.1/32 %s", r.User, r.Auth))
		}
	}
	lines = append(lines,
		"host all all 127.0.0.1/32 trust",
		"host replication all 127.0.0.1/32 trust")
	return strings.Join(lines, "\n") + "\n"
}

// PrependHBA puts lines before the rules of pg_hba.conf (the first
// matching line wins) and has the server reload it.
func (p *Postgres) PrependHBA(t testing.TB, lines ...string) {
	t.Helper()
	path := filepath.Join(p.DataDir, "pg_hba.conf")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading pg_hba.conf: %v", err)
	}
	hba := strings.Join(lines, "\n") + "\n" + string(old)
	if err := os.WriteFile(path, []byte(hba), 0); err != nil {
		t.Fatalf("writing pg_hba.conf: %v", err)
	}
	p.Exec(t, "SELECT pg_reload_conf()")
}

// launch starts the postmaster and waits up to timeout until it accepts
// connections. The error wraps errExited if the postmaster exited.
func (p *Postgres) launch(timeout time.Duration) error {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the postmaster has its own descriptor
	cmd := p.command("postgres", "-D", p.DataDir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	proc := &pgProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		proc.err = cmd.Wait()
		close(proc.done)
	}()
	p.proc = proc

	err = pollUntil(timeout, proc.done, p.ping)
	if errors.Is(err, errExited) {
		return fmt.Errorf("postgres exited (%v): %w", proc.err, err)
	}
	return err
}

// ping connects as the superuser.
func (p *Postgres) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN("postgres", "", "postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// createRoles creates PGRoles and database app. Password hashes are stored
// as md5 for the md5 role and as SCRAM otherwise: the password method
// compares cleartext with either.
func (p *Postgres) createRoles(t testing.TB) {
	t.Helper()
	stmts := []string{"GRANT ALL ON SCHEMA public TO PUBLIC"}
	for _, r := range PGRoles {
		if r.User == "postgres" {
			continue
		}
		create := fmt.Sprintf("CREATE ROLE %s LOGIN", r.User)
		if r.Password != "" {
			encryption := "scram-sha-256"
			if r.Auth == "md5" {
				encryption = "md5"
			}
			create = fmt.Sprintf("SET password_encryption = '%s'; CREATE ROLE %s LOGIN PASSWORD '%s'", encryption, r.User, r.Password)
		}
		stmts = append(stmts, create, "GRANT ALL ON DATABASE postgres TO "+r.User)
	}
	// Not in a multi-statement string: CREATE DATABASE refuses to run in
	// the implicit transaction that makes.
	stmts = append(stmts, "CREATE DATABASE app OWNER app")

	conn := p.connect(t)
	defer conn.Close(context.Background())
	for _, stmt := range stmts {
		if _, err := conn.Exec(t.Context(), stmt); err != nil {
			t.Fatalf("postgres: %s: %v", stmt, err)
		}
	}
}

// Addr returns "127.0.0.1:port".
func (p *Postgres) Addr() string {
	return fmt.Sprintf("%s:%d", p.Host, p.Port)
}

// DSN returns URL(user, password, db).
func (p *Postgres) DSN(user, password, db string) string {
	return p.URL(user, password, db)
}

// URL returns a postgres:// URL for the server. params are "key=value"
// pairs; sslmode=disable is added unless the server has SSL or params set
// sslmode.
func (p *Postgres) URL(user, password, db string, params ...string) string {
	return pgURL(p.Addr(), user, password, db, p.SSL, params)
}

// Conn returns a superuser connection to database postgres, closed when the
// test ends.
func (p *Postgres) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	conn := p.connect(t)
	// Not t.Context(): it is canceled before cleanups run.
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// connect returns a superuser connection to database postgres.
func (p *Postgres) connect(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), p.DSN("postgres", "", "postgres"))
	if err != nil {
		t.Fatalf("connecting to postgres: %v", err)
	}
	return conn
}

// Exec runs sql as the superuser in database postgres on a new connection.
// Without args, sql may hold several statements.
func (p *Postgres) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	conn := p.connect(t)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("postgres: %s: %v", sql, err)
	}
}

// Alive reports whether the postmaster is running.
func (p *Postgres) Alive() bool {
	if p.proc == nil {
		return false
	}
	select {
	case <-p.proc.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to the postmaster, like a crash, and waits for it to
// exit. Its backends notice and exit on their own shortly after.
func (p *Postgres) Kill(t testing.TB) {
	t.Helper()
	p.mustBeAlive(t, "Kill")
	if err := p.proc.cmd.Process.Kill(); err != nil {
		t.Fatalf("killing postgres: %v", err)
	}
	if !waitDone(p.proc.done, 10*time.Second) {
		t.Fatalf("postgres still running 10s after SIGKILL")
	}
}

// Stop shuts the server down with SIGINT (fast shutdown: clients are
// disconnected) and waits for it to exit.
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	p.mustBeAlive(t, "Stop")
	if err := p.proc.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("stopping postgres: %v", err)
	}
	if !waitDone(p.proc.done, 30*time.Second) {
		t.Fatalf("postgres still running 30s after SIGINT")
	}
}

func (p *Postgres) mustBeAlive(t testing.TB, method string) {
	t.Helper()
	if !p.Alive() {
		t.Fatalf("Postgres.%s: postgres is not running", method)
	}
}

// Start starts the server again, on the same port and data directory, after
// Kill or Stop.
//
// After Kill, backends of the old postmaster may linger for a moment, and a
// new postmaster exits while they still hold the old shared memory. So Start
// retries for up to 20 seconds.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	if p.Alive() {
		t.Fatalf("Postgres.Start: postgres is already running")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.removeStalePID(t)
		err := p.launch(30 * time.Second)
		if err == nil {
			return
		}
		if !errors.Is(err, errExited) || time.Now().After(deadline) {
			t.Fatalf("restarting postgres: %v (log below)", err)
		}
		time.Sleep(100 * time.Millisecond) // let the old backends exit
	}
}

// removeStalePID removes the postmaster.pid that a killed postmaster leaves
// behind, if no process has its pid.
func (p *Postgres) removeStalePID(t testing.TB) {
	t.Helper()
	path := filepath.Join(p.DataDir, "postmaster.pid")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatalf("reading postmaster.pid: %v", err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		t.Fatalf("postmaster.pid: bad pid %q", first)
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		if err := os.Remove(path); err != nil {
			t.Fatalf("removing stale postmaster.pid: %v", err)
		}
	}
}

// shutdown stops the server at the end of the test: SIGINT, then SIGKILL if
// it is still running 10 seconds later.
func (p *Postgres) shutdown(t testing.TB) {
	if !p.Alive() {
		return
	}
	p.proc.cmd.Process.Signal(os.Interrupt)
	if waitDone(p.proc.done, 10*time.Second) {
		return
	}
	t.Logf("postgres still running 10s after SIGINT; sending SIGKILL")
	p.proc.cmd.Process.Kill()
	<-p.proc.done
}

// logTail returns the last n lines of the server's log.
func (p *Postgres) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.logPath, err)
	}
	return tail(string(data), n)
}
