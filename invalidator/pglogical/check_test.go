package pglogical

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestConnectError(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantSetup bool
		want      string // in the message
	}{
		{"no REPLICATION", &pgconn.PgError{Severity: "FATAL", Code: "42501", Message: "must be superuser or replication role to start walsender"},
			true, `role "app" lacks REPLICATION: ALTER ROLE app REPLICATION`},
		{"pg_hba", &pgconn.PgError{Severity: "FATAL", Code: "28000", Message: `no pg_hba.conf entry for replication connection from host "10.0.0.1", user "app", no encryption`},
			true, "host replication app"},
		{"walsenders", &pgconn.PgError{Severity: "FATAL", Code: "53300", Message: "number of requested standby connections exceeds max_wal_senders (currently 10)"},
			true, "raise max_wal_senders"},
		{"other privilege", &pgconn.PgError{Severity: "FATAL", Code: "42501", Message: "permission denied for database x"}, false, "permission denied"},
		{"wrapped", fmt.Errorf("dial: %w", &pgconn.PgError{Code: "42501", Message: "must be superuser or replication role to start walsender"}), true, "lacks REPLICATION"},
		{"network", errors.New("connection refused"), false, "connect: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := connectError(tt.err, "app")
			var setup *SetupError
			if got := errors.As(err, &setup); got != tt.wantSetup {
				t.Errorf("%v: SetupError %v; want %v", err, got, tt.wantSetup)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q; want it to contain %q", err, tt.want)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("%v does not wrap the server's error", err)
			}
		})
	}
}

func TestPublicationProblem(t *testing.T) {
	good := publication{allTables: true, insert: true, update: true, delete: true, truncate: true, viaRoot: true}
	tests := []struct {
		name string
		edit func(*publication)
		want string // in the error; "" for none
	}{
		{"good", func(*publication) {}, ""},
		{"some tables", func(p *publication) { p.allTables = false }, "does not publish all tables"},
		{"no truncate", func(p *publication) { p.truncate = false }, "SET (publish = 'insert, update, delete, truncate')"},
		{"no delete", func(p *publication) { p.delete = false }, "SET (publish = "},
		{"not via root", func(p *publication) { p.viaRoot = false }, "SET (publish_via_partition_root = true)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good
			tt.edit(&p)
			err := p.problem("Pub")
			if tt.want == "" {
				if err != nil {
					t.Errorf("got %v; want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"Pub"`) {
				t.Errorf("got %v; want an error naming \"Pub\" and %q", err, tt.want)
			}
		})
	}
}

func TestSlotProblem(t *testing.T) {
	good := slotState{plugin: "pgoutput", kind: "logical", database: "db"}
	tests := []struct {
		name      string
		edit      func(*slotState)
		wantSetup bool
		want      string
	}{
		{"good", func(*slotState) {}, false, ""},
		{"other plugin", func(s *slotState) { s.plugin = "test_decoding" }, true, "pg_drop_replication_slot('s')"},
		{"physical", func(s *slotState) { s.kind, s.plugin, s.database = "physical", "", "" }, true, "not a permanent pgoutput slot"},
		{"other database", func(s *slotState) { s.database = "other" }, true, `of database "db"`},
		{"in use", func(s *slotState) { s.activePID = "42" }, false, "in use by the process with PID 42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := good
			tt.edit(&st)
			err := st.problem("s", "db")
			if tt.want == "" {
				if err != nil {
					t.Errorf("got %v; want none", err)
				}
				return
			}
			var setup *SetupError
			if err == nil || !strings.Contains(err.Error(), tt.want) || errors.As(err, &setup) != tt.wantSetup {
				t.Errorf("got %v; want an error containing %q (SetupError: %v)", err, tt.want, tt.wantSetup)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tests := []struct {
		name, in string
		f        func(string) string
		want     string
	}{
		{"literal", "sqlcache", quoteLiteral, `E'sqlcache'`},
		{"literal quote and backslash", `a'b\c`, quoteLiteral, `E'a''b\\c'`},
		{"ident", "sqlcache", quoteIdent, `"sqlcache"`},
		{"ident with quote", `My"Pub`, quoteIdent, `"My""Pub"`},
		{"shown plain", "app_1", showIdent, `app_1`},
		{"shown upper case", "App", showIdent, `"App"`},
		{"shown dash", "my-role", showIdent, `"my-role"`},
		{"replication string", `"it's"`, replicationString, `'"it''s"'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f(tt.in); got != tt.want {
				t.Errorf("got %s; want %s", got, tt.want)
			}
		})
	}
}

func TestSlotNames(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"sqlcache", true}, {"sqlcache_1", true}, {"", false}, {"Sqlcache", false}, {"a-b", false},
		{strings.Repeat("a", 63), true}, {strings.Repeat("a", 64), false}, {"a b", false},
	} {
		if got := validSlotName.MatchString(tt.name); got != tt.ok {
			t.Errorf("validSlotName(%q) = %v; want %v", tt.name, got, tt.ok)
		}
	}
	temp := regexp.MustCompile(`^sqlcache_[0-9a-f]{8}$`)
	seen := map[string]bool{}
	for range 20 {
		name := temporarySlotName()
		if !temp.MatchString(name) || !validSlotName.MatchString(name) {
			t.Errorf("temporarySlotName() = %q", name)
		}
		seen[name] = true
	}
	if len(seen) < 20 {
		t.Errorf("%d distinct names in 20", len(seen))
	}
}

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name                         string
		in                           Config
		pub                          string
		beat, minBackoff, maxBackoff time.Duration
	}{
		{"zero", Config{}, "sqlcache", 100 * time.Millisecond, 100 * time.Millisecond, 5 * time.Second},
		{"set", Config{Publication: "p", Heartbeat: time.Second, MinBackoff: time.Second, MaxBackoff: time.Minute}, "p", time.Second, time.Second, time.Minute},
		{"max below min", Config{MinBackoff: 10 * time.Second}, "sqlcache", 100 * time.Millisecond, 10 * time.Second, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.in.withDefaults()
			if c.Publication != tt.pub || c.Heartbeat != tt.beat || c.MinBackoff != tt.minBackoff || c.MaxBackoff != tt.maxBackoff {
				t.Errorf("got %q %v %v %v; want %q %v %v %v", c.Publication, c.Heartbeat, c.MinBackoff, c.MaxBackoff,
					tt.pub, tt.beat, tt.minBackoff, tt.maxBackoff)
			}
			if c.Logger == nil || c.Handler == nil {
				t.Error("nil Logger or Handler after withDefaults")
			}
		})
	}
}
