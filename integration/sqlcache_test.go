package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The sqlcache binary, built on first use by SqlcacheBinary.
var (
	buildOnce   sync.Once
	sqlcacheBin string // path of the binary
	buildErr    error  // with go build's output
	buildDir    string // temp dir holding the binary; TestMain removes it
)

// SqlcacheBinary returns the path of the sqlcache binary, building it on
// first use so that tests which don't run it don't wait for the build.
//
// When the tests run with -race, so does the binary, and StartSqlcache fails
// the test if the race detector reports anything.
func SqlcacheBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { sqlcacheBin, buildErr = buildSqlcache() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return sqlcacheBin
}

func buildSqlcache() (string, error) {
	// Run go from the module root: the tests run in the package directory.
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))

	buildDir, err = os.MkdirTemp("", "sqlcache-bin-*")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(buildDir, "sqlcache")
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "github.com/sqlcache/sqlcache/cmd/sqlcache")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building sqlcache: go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
	return bin, nil
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func removeSqlcacheBinary() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// SqlcacheConfig is what StartSqlcache writes into sqlcache's YAML config
// file. Zero values are left out of the file, so sqlcache's defaults apply,
// except where noted.
type SqlcacheConfig struct {
	Backend         string // postgres.backend, host:port; required
	ListenAddr      string // postgres.listen; default a free port on 127.0.0.1
	AdminAddr       string // admin.listen; default a free port on 127.0.0.1
	TLSCertFile     string // postgres.tls.cert_file
	TLSKeyFile      string // postgres.tls.key_file
	BackendTLSMode  string // postgres.backend_tls.mode; default "disable"
	BackendCAFile   string // postgres.backend_tls.ca_file
	MaxMessageBytes int64  // postgres.max_message_bytes
	StartupTimeout  time.Duration
	ShutdownTimeout time.Duration
	ServiceDSN      string // postgres.service_dsn

	// Extra is merged into the file's top level, for keys this struct
	// lacks. Values of type map[string]any merge into the maps already
	// there, so {"postgres": {"x": 1}} adds postgres.x; others replace.
	Extra map[string]any

	Env []string // added to the environment, as "KEY=value"

	// BackendDown makes StartSqlcache wait for /healthz instead of
	// /readyz, which stays 503 while the backend is unreachable.
	BackendDown bool
}

// yamlMap returns cfg as the contents of sqlcache's config file.
func (cfg SqlcacheConfig) yamlMap() map[string]any {
	backendTLS := map[string]any{"mode": cfg.BackendTLSMode}
	if cfg.BackendCAFile != "" {
		backendTLS["ca_file"] = cfg.BackendCAFile
	}
	pg := map[string]any{
		"listen":      cfg.ListenAddr,
		"backend":     cfg.Backend,
		"backend_tls": backendTLS,
	}
	if cfg.ServiceDSN != "" {
		pg["service_dsn"] = cfg.ServiceDSN
	}
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		pg["tls"] = map[string]any{"cert_file": cfg.TLSCertFile, "key_file": cfg.TLSKeyFile}
	}
	if cfg.MaxMessageBytes != 0 {
		pg["max_message_bytes"] = cfg.MaxMessageBytes
	}
	if cfg.StartupTimeout != 0 {
		pg["startup_timeout"] = cfg.StartupTimeout.String()
	}
	m := map[string]any{
		"postgres": pg,
		"admin":    map[string]any{"listen": cfg.AdminAddr},
		"log":      map[string]any{"level": "debug"},
	}
	if cfg.ShutdownTimeout != 0 {
		m["shutdown_timeout"] = cfg.ShutdownTimeout.String()
	}
	mergeMaps(m, cfg.Extra)
	return m
}

// mergeMaps copies src into dst, merging maps found in both.
func mergeMaps(dst, src map[string]any) {
	for k, v := range src {
		srcMap, ok1 := v.(map[string]any)
		dstMap, ok2 := dst[k].(map[string]any)
		if ok1 && ok2 {
			mergeMaps(dstMap, srcMap)
		} else {
			dst[k] = v
		}
	}
}

// Sqlcache is a running `sqlcache serve` started by StartSqlcache or
// LaunchSqlcache.
type Sqlcache struct {
	Addr       string // client listen address, host:port
	AdminAddr  string
	Config     SqlcacheConfig // with defaults filled in
	ConfigFile string
	Cmd        *exec.Cmd // its ProcessState is safe to read after Wait returns nil

	out     syncBuffer
	done    chan struct{} // closed when Cmd has exited
	waitErr error         // from Cmd.Wait; read only after done is closed
}

// StartSqlcache runs `sqlcache serve` with cfg and waits until GET /readyz on
// its admin address returns 200. When the test ends it sends SIGTERM (then
// SIGKILL after 10s), and logs the last 100 lines of output if the test
// failed or SQLCACHE_TEST_LOG=1.
func StartSqlcache(t testing.TB, cfg SqlcacheConfig) *Sqlcache {
	t.Helper()
	s := LaunchSqlcache(t, cfg)
	err := pollUntil(15*time.Second, s.done, s.ready)
	if errors.Is(err, errExited) {
		t.Fatalf("sqlcache exited (%v) before it was ready (output below)", s.waitErr)
	}
	if err != nil {
		t.Fatalf("sqlcache: %v (output below)", err)
	}
	return s
}

// LaunchSqlcache is StartSqlcache without the wait for readiness, for
// tests of what happens before sqlcache listens.
func LaunchSqlcache(t testing.TB, cfg SqlcacheConfig) *Sqlcache {
	t.Helper()
	bin := SqlcacheBinary(t)
	if cfg.Backend == "" {
		t.Fatalf("StartSqlcache: SqlcacheConfig.Backend is required")
	}
	cfg = withDefaults(t, cfg)
	s := &Sqlcache{
		Addr:       cfg.ListenAddr,
		AdminAddr:  cfg.AdminAddr,
		Config:     cfg,
		ConfigFile: writeSqlcacheConfig(t, cfg),
		done:       make(chan struct{}),
	}
	s.Cmd = exec.Command(bin, "serve", "--config", s.ConfigFile)
	s.Cmd.Env = append(os.Environ(), cfg.Env...)
	s.Cmd.Stdout, s.Cmd.Stderr = &s.out, &s.out
	s.Cmd.SysProcAttr = procAttr(nil)
	// Don't let a child holding the output pipe keep Wait from returning.
	s.Cmd.WaitDelay = 5 * time.Second
	if err := s.Cmd.Start(); err != nil {
		t.Fatalf("starting sqlcache: %v", err)
	}
	go func() {
		s.waitErr = s.Cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// withDefaults fills in free addresses and the backend TLS mode.
func withDefaults(t testing.TB, cfg SqlcacheConfig) SqlcacheConfig {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = freeAddr(t)
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = freeAddr(t)
	}
	if cfg.BackendTLSMode == "" {
		cfg.BackendTLSMode = "disable"
	}
	return cfg
}

func writeSqlcacheConfig(t testing.TB, cfg SqlcacheConfig) string {
	t.Helper()
	data, err := yaml.Marshal(cfg.yamlMap())
	if err != nil {
		t.Fatalf("marshaling sqlcache config: %v", err)
	}
	path := filepath.Join(t.TempDir(), "sqlcache.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("writing sqlcache config: %v", err)
	}
	return path
}

// ready returns nil if GET /readyz returns 200.
func (s *Sqlcache) ready() error {
	path := "/readyz"
	if s.Config.BackendDown {
		path = "/healthz"
	}
	_, err := s.adminGet(path)
	return err
}

// adminGet returns the body of a GET on the admin address, or an error
// unless the status is 200.
func (s *Sqlcache) adminGet(path string) (string, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + s.AdminAddr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return string(body), nil
}

// URL returns a postgres:// URL for sqlcache's client address. params are
// "key=value" pairs; sslmode=disable is added unless sqlcache has a TLS
// certificate or params set sslmode.
func (s *Sqlcache) URL(user, password, db string, params ...string) string {
	return pgURL(s.Addr, user, password, db, s.Config.TLSCertFile != "", params)
}

// Metrics returns the body of GET /metrics on the admin address.
func (s *Sqlcache) Metrics(t testing.TB) string {
	t.Helper()
	body, err := s.adminGet("/metrics")
	if err != nil {
		t.Fatalf("sqlcache metrics: %v", err)
	}
	return body
}

// Signal sends sig to the process.
func (s *Sqlcache) Signal(sig os.Signal) error {
	return s.Cmd.Process.Signal(sig)
}

// Wait waits up to timeout for the process to exit and returns its exit
// code, -1 if a signal killed it. The error is non-nil if it did not exit
// in time.
func (s *Sqlcache) Wait(timeout time.Duration) (exitCode int, err error) {
	if !waitDone(s.done, timeout) {
		return -1, fmt.Errorf("sqlcache still running after %v", timeout)
	}
	code, ok := exitCodeOf(s.waitErr)
	if !ok {
		return -1, s.waitErr
	}
	return code, nil
}

// Alive reports whether the process is running.
func (s *Sqlcache) Alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Output returns everything the process wrote to stdout and stderr so far.
func (s *Sqlcache) Output() string {
	return s.out.String()
}

// stop ends the process when the test ends and reports its output.
func (s *Sqlcache) stop(t testing.TB) {
	if s.Alive() {
		s.Signal(syscall.SIGTERM)
		if !waitDone(s.done, 10*time.Second) {
			t.Logf("sqlcache still running 10s after SIGTERM; sending SIGKILL")
			s.Cmd.Process.Kill()
			<-s.done
		}
	}
	out := s.Output()
	if strings.Contains(out, "WARNING: DATA RACE") {
		t.Errorf("the race detector found a data race in sqlcache (output below)")
	}
	if t.Failed() || os.Getenv("SQLCACHE_TEST_LOG") == "1" {
		t.Logf("sqlcache output (last 100 lines):\n%s", tail(out, 100))
	}
}

// RunSqlcache runs the sqlcache binary with args to completion, for
// subcommands that exit (check, version) and for bad configurations. It
// fails the test if the process runs for more than 30 seconds.
func RunSqlcache(t testing.TB, args ...string) (output string, exitCode int) {
	t.Helper()
	bin := SqlcacheBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = procAttr(nil)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("sqlcache %s: still running after 30s; output:\n%s", strings.Join(args, " "), out)
	}
	code, ok := exitCodeOf(err)
	if !ok {
		t.Fatalf("running sqlcache %s: %v", strings.Join(args, " "), err)
	}
	return string(out), code
}

// syncBuffer is a bytes.Buffer that the process's output can be written to
// while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
