package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLI runs the binary's exiting subcommands: check against a live and
// a dead backend, version, help, and serve with bad configurations, which
// must exit 2 naming the key before listening.
func TestCLI(t *testing.T) {
	pg := StartPostgres(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "postgres:\n  backend: \""+pg.Addr()+"\"\n  service_dsn: \""+pg.URL("postgres", "", "postgres")+"\"\n")
	dead := write("dead.yaml", "postgres:\n  backend: \""+freeAddr(t)+"\"\n")

	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"check/ok", []string{"check", "--config", good}, 0, []string{"configuration: ok", "reachable", "service_dsn: login ok"}},
		{"check/dead_backend", []string{"check", "--config", dead}, 1, []string{"backend 127.0.0.1:"}},
		{"version", []string{"version"}, 0, []string{"sqlcache "}},
		{"help", []string{"--help"}, 0, []string{"serve", "check", "version"}},
		{"serve/unknown_key", []string{"serve", "--config", write("unknown.yaml", "postgres:\n  listn: x\n")}, 2, []string{"postgres.listn"}},
		{"serve/bad_address", []string{"serve", "--config", write("addr.yaml", "postgres:\n  listen: nowhere\n")}, 2, []string{"postgres.listen", "not host:port"}},
		{"serve/bad_duration", []string{"serve", "--config", write("dur.yaml", "shutdown_timeout: soon\n")}, 2, []string{"shutdown_timeout"}},
		{"serve/missing_cert", []string{"serve", "--config", write("cert.yaml", "postgres:\n  tls: {cert_file: /nonexistent.pem, key_file: /nonexistent.key}\n")}, 2, []string{"postgres.tls.cert_file"}},
		{"serve/missing_file", []string{"serve", "--config", filepath.Join(dir, "absent.yaml")}, 2, []string{"absent.yaml"}},
		{"serve/bad_env", []string{"serve", "--config", good, "--log-level", "chatty"}, 2, []string{"log.level"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := RunSqlcache(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d; want %d\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "panic") {
				t.Errorf("panic:\n%s", out)
			}
		})
	}
}
