package integration

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"
)

// TestPostgresSmoke checks that StartPostgres gives a server that every
// PGRole can log in to, and that it comes back after Kill and Stop.
func TestPostgresSmoke(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t)
	checkRoles(t, pg)

	pg.Kill(t)
	if err := ping(t, pg.URL("postgres", "", "postgres")); err == nil {
		t.Fatalf("connected to postgres after Kill")
	}
	pg.Start(t)
	checkRoles(t, pg)

	pg.Stop(t)
	pg.Start(t)
	checkRoles(t, pg)

	// Exec and Conn work as the superuser.
	pg.Exec(t, "CREATE TABLE smoke (id int); INSERT INTO smoke VALUES (1)")
	var n int
	if err := pg.Conn(t).QueryRow(t.Context(), "SELECT count(*) FROM smoke").Scan(&n); err != nil {
		t.Fatalf("counting rows: %v", err)
	}
	if n != 1 {
		t.Errorf("got %d rows; want 1", n)
	}
}

// TestPostgresSSLSmoke checks that WithSSL serves the generated certificate.
func TestPostgresSSLSmoke(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t, WithSSL())
	tests := []struct {
		name    string
		params  []string
		wantErr bool
	}{
		{"verify-full", []string{"sslmode=verify-full", "sslrootcert=" + pg.Certs.CAFile}, false},
		{"other CA", []string{"sslmode=verify-full", "sslrootcert=" + pg.Certs.OtherCAFile}, true},
		{"disable", []string{"sslmode=disable"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ping(t, pg.URL("scramuser", "scrampass", "postgres", tt.params...))
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("got error %v; want error: %v", err, tt.wantErr)
			}
		})
	}
}

// checkRoles checks that each PGRole logs in with its password and no
// other, and that role app reaches its database.
func checkRoles(t *testing.T, pg *Postgres) {
	t.Helper()
	for _, r := range PGRoles {
		if err := ping(t, pg.URL(r.User, r.Password, "postgres")); err != nil {
			t.Errorf("%s (%s): %v", r.User, r.Auth, err)
		}
		if r.Password == "" {
			continue
		}
		if err := ping(t, pg.URL(r.User, "wrong", "postgres")); err == nil {
			t.Errorf("%s (%s): logged in with a wrong password", r.User, r.Auth)
		}
	}
	if err := ping(t, pg.URL("app", "", "app")); err != nil {
		t.Errorf("app: %v", err)
	}
}

// ping connects to url and runs SELECT 1.
func ping(t *testing.T, url string) error {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// TestSqlcacheConfigYAML checks the config file StartSqlcache writes: only
// the keys that are set, and Extra merged into nested maps.
func TestSqlcacheConfigYAML(t *testing.T) {
	cfg := SqlcacheConfig{
		Backend:         "127.0.0.1:5432",
		ListenAddr:      "127.0.0.1:6432",
		AdminAddr:       "127.0.0.1:9187",
		BackendTLSMode:  "verify-full",
		BackendCAFile:   "/ca.pem",
		StartupTimeout:  1500 * time.Millisecond,
		ShutdownTimeout: time.Minute,
		Extra: map[string]any{
			"postgres": map[string]any{"backend_tls": map[string]any{"mode": "require"}},
			"cache":    map[string]any{"ttl": "1s"},
		},
	}
	got, err := yaml.Marshal(cfg.yamlMap())
	if err != nil {
		t.Fatal(err)
	}
	want := `admin:
    listen: 127.0.0.1:9187
cache:
    ttl: 1s
log:
    level: debug
postgres:
    backend: 127.0.0.1:5432
    backend_tls:
        ca_file: /ca.pem
        mode: require
    listen: 127.0.0.1:6432
    startup_timeout: 1.5s
shutdown_timeout: 1m0s
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}
