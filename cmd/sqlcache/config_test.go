package main

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/sqlcache/sqlcache/proxy"
)

// clearEnv hides any SQLCACHE_* variables of the environment the tests run
// in (an empty one counts as set), restoring them after the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for k := range defaults {
		t.Setenv(envName(k), "") // restored after the test
		os.Unsetenv(envName(k))
	}
}

func envName(key string) string {
	return "SQLCACHE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// writeConfig writes a YAML file into a temporary directory.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sqlcache.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCLI runs the command line, failing the test if it does not return
// (serve that got as far as serving would block).
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(args, &out, &errOut) }()
	select {
	case code = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("sqlcache %s did not return", strings.Join(args, " "))
	}
	return code, out.String(), errOut.String()
}

// summary is the part of a config the tests compare.
type summary struct {
	Listen, AdminListen, LogFormat string
	LogLevel                       slog.Level
	ShutdownTimeout                time.Duration
	Backend, ServiceDSN            string
	MaxMessageBytes                int
	StartupTimeout                 time.Duration
	BackendTLSMode                 proxy.BackendTLSMode
	TLS, BackendTLS                bool
}

func summarize(c *config) summary {
	return summary{
		Listen: c.Listen, AdminListen: c.AdminListen, LogFormat: c.LogFormat,
		LogLevel: c.LogLevel, ShutdownTimeout: c.ShutdownTimeout,
		Backend: c.Proxy.Backend, ServiceDSN: c.Proxy.ServiceDSN,
		MaxMessageBytes: c.Proxy.MaxMessageBytes, StartupTimeout: c.Proxy.StartupTimeout,
		BackendTLSMode: c.Proxy.BackendTLSMode,
		TLS:            c.Proxy.TLS != nil, BackendTLS: c.Proxy.BackendTLS != nil,
	}
}

// defaultSummary is what an empty file gives.
var defaultSummary = summary{
	Listen: "127.0.0.1:6432", AdminListen: "127.0.0.1:9187", LogFormat: "text",
	LogLevel: slog.LevelInfo, ShutdownTimeout: 30 * time.Second,
	Backend: "127.0.0.1:5432", MaxMessageBytes: 64 << 20, StartupTimeout: 30 * time.Second,
	BackendTLSMode: proxy.BackendTLSPrefer,
}

func TestLoadConfig(t *testing.T) {
	clearEnv(t)
	with := func(f func(*summary)) summary {
		s := defaultSummary
		f(&s)
		return s
	}
	tests := []struct {
		name string
		yaml string
		want summary
	}{
		{name: "empty", yaml: "", want: defaultSummary},
		{
			name: "minimal",
			yaml: "postgres:\n  backend: db.internal:5432\n",
			want: with(func(s *summary) { s.Backend = "db.internal:5432" }),
		},
		{
			name: "every key",
			yaml: `
postgres:
  listen: ":7432"
  backend: "[::1]:5433"
  service_dsn: "postgres://sqlcache@db/app"
  backend_tls:
    mode: verify-full
  max_message_bytes: 1GiB
  startup_timeout: 1m30s
admin:
  listen: ""
log:
  level: debug
  format: json
shutdown_timeout: 0s
`,
			want: summary{
				Listen: ":7432", LogFormat: "json", LogLevel: slog.LevelDebug,
				Backend: "[::1]:5433", ServiceDSN: "postgres://sqlcache@db/app",
				MaxMessageBytes: 1 << 30, StartupTimeout: 90 * time.Second,
				BackendTLSMode: proxy.BackendTLSVerifyFull,
			},
		},
		{name: "size in MiB", yaml: "postgres:\n  max_message_bytes: 64MiB\n", want: defaultSummary},
		{
			name: "size as a YAML number",
			yaml: "postgres:\n  max_message_bytes: 1048576\n",
			want: with(func(s *summary) { s.MaxMessageBytes = 1 << 20 }),
		},
		{
			name: "size as a string of digits",
			yaml: "postgres:\n  max_message_bytes: \"1048576\"\n",
			want: with(func(s *summary) { s.MaxMessageBytes = 1 << 20 }),
		},
		{
			name: "size in KiB",
			yaml: "postgres:\n  max_message_bytes: 512KiB\n",
			want: with(func(s *summary) { s.MaxMessageBytes = 512 << 10 }),
		},
		{
			name: "size in kB, PostgreSQL's spelling",
			yaml: "postgres:\n  max_message_bytes: 512kB\n",
			want: with(func(s *summary) { s.MaxMessageBytes = 512 << 10 }),
		},
		{
			name: "size in MB, taken as MiB",
			yaml: "postgres:\n  max_message_bytes: 8 MB\n",
			want: with(func(s *summary) { s.MaxMessageBytes = 8 << 20 }),
		},
		{
			name: "log levels",
			yaml: "log:\n  level: warn\n",
			want: with(func(s *summary) { s.LogLevel = slog.LevelWarn }),
		},
		{
			name: "keys are case-insensitive",
			yaml: "Postgres:\n  Backend: db:5432\n",
			want: with(func(s *summary) { s.Backend = "db:5432" }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(newViper(), writeConfig(t, tt.yaml))
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if diff := cmp.Diff(tt.want, summarize(cfg)); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadConfigExample keeps config.example.yaml loadable: it lists every
// key with its default.
func TestLoadConfigExample(t *testing.T) {
	clearEnv(t)
	cfg, err := loadConfig(newViper(), filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if diff := cmp.Diff(defaultSummary, summarize(cfg)); diff != "" {
		t.Errorf("config.example.yaml differs from the defaults (-defaults +example):\n%s", diff)
	}
}

// TestConfigPrecedence checks file < environment < flag.
func TestConfigPrecedence(t *testing.T) {
	file := writeConfig(t, "postgres:\n  backend: file:5432\n  backend_tls:\n    mode: require\n")
	tests := []struct {
		name        string
		env         map[string]string
		args        []string
		wantBackend string
		wantMode    proxy.BackendTLSMode
	}{
		{name: "file", args: []string{"--config", file}, wantBackend: "file:5432", wantMode: proxy.BackendTLSRequire},
		{
			name:        "environment over file",
			env:         map[string]string{"SQLCACHE_POSTGRES_BACKEND": "db:5433"},
			args:        []string{"--config", file},
			wantBackend: "db:5433", wantMode: proxy.BackendTLSRequire,
		},
		{
			name:        "environment for a nested key with underscores",
			env:         map[string]string{"SQLCACHE_POSTGRES_BACKEND_TLS_MODE": "disable"},
			args:        []string{"--config", file},
			wantBackend: "file:5432", wantMode: proxy.BackendTLSDisable,
		},
		{
			name:        "flag over environment",
			env:         map[string]string{"SQLCACHE_POSTGRES_BACKEND": "db:5433"},
			args:        []string{"--config", file, "--backend", "flag:5434"},
			wantBackend: "flag:5434", wantMode: proxy.BackendTLSRequire,
		},
		{
			name:        "environment without a file",
			env:         map[string]string{"SQLCACHE_POSTGRES_BACKEND": "db:5433"},
			wantBackend: "db:5433", wantMode: proxy.BackendTLSPrefer,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			// The flags as serve and check declare them.
			cmd := &cobra.Command{Use: "serve"}
			v := newViper()
			path := configFlags(cmd, v)
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(v, *path)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if cfg.Proxy.Backend != tt.wantBackend || cfg.Proxy.BackendTLSMode != tt.wantMode {
				t.Errorf("backend %q, mode %q; want %q, %q", cfg.Proxy.Backend, cfg.Proxy.BackendTLSMode, tt.wantBackend, tt.wantMode)
			}
		})
	}
}

// TestBadConfig checks that each bad setting makes check and serve exit 2
// with a message naming the key, before any connection or listener.
func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		yaml string            // "" with noFile: no --config at all
		env  map[string]string // set for the run
		args []string          // extra flags
		want []string          // all in stderr
	}{
		{name: "unknown key", yaml: "postgres:\n  bakend: db:5432\n", want: []string{"unknown key", "postgres.bakend"}},
		{name: "unknown section", yaml: "cache:\n  ttl: 1m\n", want: []string{"unknown key", "cache.ttl"}},
		{name: "unknown keys sorted", yaml: "zeta: 1\nalpha: 2\n", want: []string{"unknown key alpha, zeta"}},
		{name: "not YAML", yaml: "postgres: [\n", want: []string{"config file"}},
		{name: "listen without port", yaml: "postgres:\n  listen: localhost\n", want: []string{"postgres.listen", "not host:port"}},
		{name: "listen port out of range", yaml: "postgres:\n  listen: 127.0.0.1:70000\n", want: []string{"postgres.listen", "invalid port"}},
		{name: "backend without host", yaml: "postgres:\n  backend: \":5432\"\n", want: []string{"postgres.backend", "no host"}},
		{name: "backend port zero", yaml: "postgres:\n  backend: db:0\n", want: []string{"postgres.backend", "invalid port"}},
		{name: "backend port name", yaml: "postgres:\n  backend: db:postgres\n", want: []string{"postgres.backend", "invalid port"}},
		{name: "admin listen", yaml: "admin:\n  listen: nowhere\n", want: []string{"admin.listen"}},
		{name: "list for a string", yaml: "postgres:\n  listen: [a, b]\n", want: []string{"postgres.listen", "want a string"}},
		{name: "duration without unit", yaml: "postgres:\n  startup_timeout: 30\n", want: []string{"postgres.startup_timeout", "not a duration"}},
		{name: "duration word", yaml: "shutdown_timeout: soon\n", want: []string{"shutdown_timeout", "not a duration"}},
		{name: "duration too short", yaml: "postgres:\n  startup_timeout: 0s\n", want: []string{"postgres.startup_timeout", "less than"}},
		{name: "catalog check too often", yaml: "cache:\n  catalog_check: 10ms\n", want: []string{"cache.catalog_check", "less than"}},
		{name: "size unit", yaml: "postgres:\n  max_message_bytes: 64 potatoes\n", want: []string{"postgres.max_message_bytes", "not a size"}},
		{name: "size negative", yaml: "postgres:\n  max_message_bytes: -1\n", want: []string{"postgres.max_message_bytes", "not a size"}},
		{name: "size over 1GiB", yaml: "postgres:\n  max_message_bytes: 2GiB\n", want: []string{"postgres.max_message_bytes", "outside"}},
		{name: "size under 1KiB", yaml: "postgres:\n  max_message_bytes: 512\n", want: []string{"postgres.max_message_bytes", "outside"}},
		{name: "size overflow", yaml: "postgres:\n  max_message_bytes: 99999999999999999999TiB\n", want: []string{"postgres.max_message_bytes", "too large"}},
		{name: "cert without key", yaml: "postgres:\n  tls:\n    cert_file: " + notPEM + "\n", want: []string{"postgres.tls.key_file", "must be set"}},
		{name: "key without cert", yaml: "postgres:\n  tls:\n    key_file: " + notPEM + "\n", want: []string{"postgres.tls.cert_file", "must be set"}},
		{name: "cert unreadable", yaml: "postgres:\n  tls:\n    cert_file: " + missing + "\n    key_file: " + missing + "\n", want: []string{"postgres.tls.cert_file"}},
		{name: "backend tls mode", yaml: "postgres:\n  backend_tls:\n    mode: sometimes\n", want: []string{"postgres.backend_tls.mode", "sometimes"}},
		{name: "ca file missing", yaml: "postgres:\n  backend_tls:\n    ca_file: " + missing + "\n", want: []string{"postgres.backend_tls.ca_file"}},
		{name: "ca file not PEM", yaml: "postgres:\n  backend_tls:\n    ca_file: " + notPEM + "\n", want: []string{"postgres.backend_tls.ca_file", "no PEM"}},
		{name: "service dsn", yaml: "postgres:\n  service_dsn: \"postgres://%zz\"\n", want: []string{"postgres.service_dsn"}},
		{name: "log level", yaml: "log:\n  level: verbose\n", want: []string{"log.level", "verbose"}},
		{name: "log format", yaml: "log:\n  format: xml\n", want: []string{"log.format", "xml"}},
		{name: "every bad key named", yaml: "log:\n  level: loud\n  format: xml\n", want: []string{"log.level", "log.format"}},
		{name: "bad environment", env: map[string]string{"SQLCACHE_LOG_LEVEL": "chatty"}, want: []string{"log.level", "chatty"}},
		{name: "bad flag value", args: []string{"--backend", "nohost"}, want: []string{"postgres.backend", "nohost"}},
		{name: "unknown flag", args: []string{"--bakend", "db:5432"}, want: []string{"unknown flag", "--bakend"}},
		{name: "missing file", args: []string{"--config", missing}, want: []string{"config file", "missing.pem"}},
	}
	for _, tt := range tests {
		for _, sub := range []string{"check", "serve"} {
			t.Run(tt.name+"/"+sub, func(t *testing.T) {
				clearEnv(t)
				for k, v := range tt.env {
					t.Setenv(k, v)
				}
				args := []string{sub}
				if tt.yaml != "" {
					args = append(args, "--config", writeConfig(t, tt.yaml))
				}
				args = append(args, tt.args...)
				code, stdout, stderr := runCLI(t, args...)
				if code != 2 {
					t.Errorf("exit code %d; want 2 (stderr %q)", code, stderr)
				}
				for _, w := range tt.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("stderr %q does not contain %q", stderr, w)
					}
				}
				if stdout != "" {
					t.Errorf("stdout = %q; want nothing", stdout)
				}
			})
		}
	}
}

// TestServeChecksConfigFirst: with both a bad key and a listen port that is
// taken, serve reports the key, so it validated before it listened.
func TestServeChecksConfigFirst(t *testing.T) {
	clearEnv(t)
	ln := takePort(t)
	code, _, stderr := runCLI(t, "serve", "--listen", ln.Addr().String(), "--admin-listen", "", "--log-level", "loud")
	if code != 2 || !strings.Contains(stderr, "log.level") || strings.Contains(stderr, "postgres.listen") {
		t.Errorf("exit code %d, stderr %q; want 2 naming log.level only", code, stderr)
	}
}

func TestServeListenTaken(t *testing.T) {
	clearEnv(t)
	ln := takePort(t)
	file := writeConfig(t, "postgres:\n  listen: "+ln.Addr().String()+"\nadmin:\n  listen: \"\"\n")
	code, _, stderr := runCLI(t, "serve", "--config", file)
	if code != 1 {
		t.Errorf("exit code %d; want 1 (stderr %q)", code, stderr)
	}
	if !strings.Contains(stderr, "postgres.listen") {
		t.Errorf("stderr %q does not name postgres.listen", stderr)
	}
}

// takePort listens on a free port for the rest of the test.
func takePort(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{name: "version", args: []string{"version"}, wantStdout: []string{"sqlcache "}},
		{name: "help", args: []string{"--help"}, wantStdout: []string{"serve", "check", "version", "SQLCACHE_POSTGRES_BACKEND"}},
		{name: "serve help", args: []string{"serve", "--help"}, wantStdout: []string{"--config", "--backend", "--listen", "--admin-listen", "--log-level"}},
		{name: "unknown command", args: []string{"server"}, wantCode: 2, wantStderr: []string{"unknown command"}},
		{name: "argument to version", args: []string{"version", "extra"}, wantCode: 2, wantStderr: []string{"extra"}},
		{name: "argument to serve", args: []string{"serve", "extra"}, wantCode: 2, wantStderr: []string{"extra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d; want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout %q does not contain %q", stdout, w)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
		})
	}
	if code, stdout, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(stdout, "sqlcache ") {
		t.Errorf("version: exit %d, stdout %q; want 0 and \"sqlcache …\"", code, stdout)
	}
}
