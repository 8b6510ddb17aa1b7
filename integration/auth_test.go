package integration

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestAuth logs in through the proxy with each authentication method the
// backend uses, and checks that a wrong password gets the backend's error.
func TestAuth(t *testing.T) {
	pg, sc := startPair(t)
	for _, r := range PGRoles {
		t.Run(r.Auth+"/"+r.User, func(t *testing.T) {
			conn := connect(t, sc.URL(r.User, r.Password, "postgres"))
			var user string
			if err := conn.QueryRow(t.Context(), `SELECT current_user`).Scan(&user); err != nil {
				t.Fatal(err)
			}
			if user != r.User {
				t.Errorf("current_user = %q; want %q", user, r.User)
			}
		})
		if r.Password == "" {
			continue
		}
		t.Run(r.Auth+"/"+r.User+"/wrong_password", func(t *testing.T) {
			want := loginErrorAny(t, pg.URL(r.User, "wrong", "postgres"))
			got := loginErrorAny(t, sc.URL(r.User, "wrong", "postgres"))
			if !strings.Contains(got, "28P01") || !strings.Contains(got, `password authentication failed for user "`+r.User+`"`) {
				t.Errorf("through sqlcache: %s; want the backend's 28P01 error", got)
			}
			// pgx prefixes the address it dialled; compare what follows.
			if _, g, _ := strings.Cut(got, "): "); !strings.HasSuffix(want, g) {
				t.Errorf("through sqlcache: %s\ndirect: %s", got, want)
			}
		})
	}
}

// TestClientTLS terminates client TLS at the proxy: sslmode=require and
// verify-full connect encrypted, sslmode=disable still connects in
// plaintext, and SCRAM works over TLS (the backend's SCRAM-SHA-256-PLUS
// offer never reaches the client, which would fail).
func TestClientTLS(t *testing.T) {
	pg := StartPostgres(t, WithSSL())
	certs := GenerateCerts(t, t.TempDir())
	// The backend leg is plaintext here: with TLS on both legs, libpq-style
	// clients must disable channel binding (see README).
	sc := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr(), TLSCertFile: certs.CertFile, TLSKeyFile: certs.KeyFile, BackendTLSMode: "disable"})
	for _, tc := range []struct{ name, url string }{
		{"require", sc.URL("scramuser", "scrampass", "postgres", "sslmode=require")},
		{"verify-full", sc.URL("scramuser", "scrampass", "postgres", "sslmode=verify-full", "sslrootcert="+certs.CAFile, "host=localhost")},
		{"disable", sc.URL("md5user", "md5pass", "postgres", "sslmode=disable")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := connect(t, tc.url)
			var one int
			if err := conn.QueryRow(t.Context(), `SELECT 1`).Scan(&one); err != nil || one != 1 {
				t.Fatalf("SELECT 1: %d %v", one, err)
			}
			encrypted := isTLS(conn)
			if encrypted != (tc.name != "disable") {
				t.Errorf("client connection encrypted = %v with sslmode=%s", encrypted, tc.name)
			}
		})
	}
	t.Run("both_legs_tls_scram", func(t *testing.T) {
		both := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr(), TLSCertFile: certs.CertFile, TLSKeyFile: certs.KeyFile, BackendTLSMode: "require"})
		conn := connect(t, both.URL("scramuser", "scrampass", "postgres", "sslmode=require", "channel_binding=disable"))
		var ssl bool
		if err := conn.QueryRow(t.Context(), `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil {
			t.Fatal(err)
		}
		if !ssl {
			t.Error("backend connection is not encrypted with backend_tls.mode=require")
		}
	})
}

func isTLS(conn *pgx.Conn) bool {
	_, ok := conn.PgConn().Conn().(*tls.Conn)
	return ok
}

// TestBackendTLS checks each postgres.backend_tls.mode against a backend
// with and without TLS, looking at pg_stat_ssl from the backend's side.
func TestBackendTLS(t *testing.T) {
	withSSL := StartPostgres(t, WithSSL())
	plain := StartPostgres(t)
	for _, tc := range []struct {
		name     string
		backend  *Postgres
		mode, ca string
		wantSSL  bool
		wantErr  string // in the login error, if the login must fail
	}{
		{name: "disable", backend: withSSL, mode: "disable"},
		{name: "prefer/ssl", backend: withSSL, mode: "prefer", wantSSL: true},
		{name: "prefer/plain", backend: plain, mode: "prefer"},
		{name: "require/ssl", backend: withSSL, mode: "require", wantSSL: true},
		{name: "require/plain", backend: plain, mode: "require", wantErr: "backend does not accept TLS"},
		{name: "require/ca", backend: withSSL, mode: "require", ca: withSSL.Certs.CAFile, wantSSL: true},
		{name: "require/wrong_ca", backend: withSSL, mode: "require", ca: withSSL.Certs.OtherCAFile, wantErr: "certificate"},
		{name: "verify-full", backend: withSSL, mode: "verify-full", ca: withSSL.Certs.CAFile, wantSSL: true},
		{name: "verify-full/wrong_ca", backend: withSSL, mode: "verify-full", ca: withSSL.Certs.OtherCAFile, wantErr: "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := StartSqlcache(t, SqlcacheConfig{Backend: tc.backend.Addr(), BackendTLSMode: tc.mode, BackendCAFile: tc.ca})
			url := sc.URL("app", "", "postgres")
			if tc.wantErr != "" {
				got := loginErrorAny(t, url)
				if !strings.Contains(got, "08001") || !strings.Contains(got, tc.wantErr) {
					t.Errorf("login error %q; want 08001 mentioning %q", got, tc.wantErr)
				}
				return
			}
			conn := connect(t, url)
			var ssl bool
			if err := conn.QueryRow(t.Context(), `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil {
				t.Fatal(err)
			}
			if ssl != tc.wantSSL {
				t.Errorf("backend sees ssl = %v; want %v", ssl, tc.wantSSL)
			}
		})
	}
}

func loginErrorAny(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("login succeeded; want an error: %s", url)
	}
	return err.Error()
}
