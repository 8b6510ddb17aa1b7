package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestPgxSuite runs pgx's own tests (the pgx, pgconn, pgtype and stdlib
// packages, of the pgx version go.mod requires) against sqlcache with its cache and change
// stream on, the way a user would judge it with their driver's suite.
// They must pass as they do against PostgreSQL, and some of their reads
// must have been answered from the cache.
func TestPgxSuite(t *testing.T) {
	pg, sc := startCache(t, nil)
	// What pgx's CI prepares in its test database.
	pg.Exec(t, "CREATE EXTENSION hstore")
	pg.Exec(t, "CREATE EXTENSION ltree")
	pg.Exec(t, "CREATE DOMAIN uint64 AS numeric(20,0)")

	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.CommandContext(ctx, goBin, "test", "-count=1",
		"github.com/jackc/pgx/v5", "github.com/jackc/pgx/v5/pgconn",
		"github.com/jackc/pgx/v5/pgtype", "github.com/jackc/pgx/v5/stdlib")
	cmd.Env = append(os.Environ(),
		"PGX_TEST_DATABASE="+sc.URL("postgres", "", "postgres"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgx's tests through sqlcache: %v\n%s", err, failures(string(out)))
	}
	for _, pkg := range []string{"", "/pgconn", "/pgtype", "/stdlib"} {
		if !strings.Contains(string(out), "ok  \tgithub.com/jackc/pgx/v5"+pkg+"\t") {
			t.Errorf("no ok line for %s in:\n%s", pkg, out)
		}
	}
	if hits := metricValue(t, sc, "sqlcache_cache_hits_total"); hits == 0 {
		t.Errorf("pgx's tests passed, but none of their reads was answered from the cache:\n%s", cacheMetrics(t, sc))
	}
}

// failures keeps the lines of go test output that tell what failed.
func failures(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "FAIL") || strings.Contains(l, "_test.go:") ||
			strings.Contains(l, "Error") || strings.Contains(l, "panic") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 200 {
		keep = keep[:200]
	}
	return strings.Join(keep, "\n")
}
