package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestServiceDSNFor checks the database pgconn actually connects to with
// the rewritten service DSN, in each form an operator may write.
func TestServiceDSNFor(t *testing.T) {
	tests := []struct {
		name, dsn, db, want string
	}{
		{"url path", "postgres://svc@db:5432/app", "other", "other"},
		{"url without path", "postgresql://svc@db", "other", "other"},
		{"url dbname parameter", "postgres://svc@db/?dbname=app&sslmode=disable", "other", "other"},
		{"url keeps", "postgres://svc@db/app?dbname=app2", "", "app2"},
		{"key=value", "host=db user=svc dbname=app", "other", "other"},
		{"key=value quoted", "host=db user=svc", `o'th\er`, `o'th\er`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dsn, err := serviceDSNFor(tt.dsn, tt.db)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := pgconn.ParseConfig(dsn)
			if err != nil {
				t.Fatalf("pgconn.ParseConfig(%q): %v", dsn, err)
			}
			if cfg.Database != tt.want {
				t.Errorf("serviceDSNFor(%q, %q) = %q, which connects to %q; want %q", tt.dsn, tt.db, dsn, cfg.Database, tt.want)
			}
			if cfg.User != "svc" {
				t.Errorf("serviceDSNFor(%q, %q) = %q: user %q; want svc", tt.dsn, tt.db, dsn, cfg.User)
			}
		})
	}
}
