package integration

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sqlcache/sqlcache/invalidator"
	"github.com/sqlcache/sqlcache/invalidator/pglogical"
)

// TestStreamWalsenderTerminated: when the walsender is terminated,
// FreshAsOf drops to zero at once; the stream reconnects with a new
// temporary slot, calls Reset before it is fresh again, and resumes.
func TestStreamWalsenderTerminated(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t)
	p.Exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	admin := p.Conn(t)
	s, rec, _ := startStream(t, p, func(c *pglogical.Config) { c.MinBackoff = 300 * time.Millisecond })
	waitStreamFresh(t, s, 10*time.Second)
	first := s.Status()
	if rec.resetCount() != 1 || !first.Temporary || !strings.HasPrefix(first.Slot, "sqlcache_") {
		t.Fatalf("at start: %d resets, status %+v; want one Reset and a temporary sqlcache_ slot", rec.resetCount(), first)
	}

	if _, err := admin.Exec(t.Context(), `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1`, first.Slot); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "FreshAsOf zero after the walsender was terminated", func() bool { return s.FreshAsOf().IsZero() })
	waitUntil(t, 10*time.Second, "a second Reset", func() bool { return rec.resetCount() == 2 })
	waitStreamFresh(t, s, 10*time.Second)

	st := s.Status()
	if st.Slot == first.Slot || !st.Connected || st.Reconnects != 1 || st.Resets != 2 || st.LastError != "" {
		t.Errorf("after reconnecting: %+v; want a new slot, connected, 1 reconnect, 2 resets, no error", st)
	}
	rec.mu.Lock()
	atReset := rec.freshAtReset
	rec.mu.Unlock()
	if len(atReset) == 0 || !atReset[len(atReset)-1].IsZero() {
		t.Errorf("FreshAsOf during the reconnect's Reset: %v; want zero", atReset)
	}
	if slotExists(t, admin, first.Slot) {
		t.Errorf("the first temporary slot %s still exists", first.Slot)
	}
	mark := rec.mark()
	p.Exec(t, `INSERT INTO t VALUES (1)`)
	rec.waitApply(t, mark, time.Second, change{"t", invalidator.Data})
}

// TestStreamPostgresRestart: the stream survives a restart and a crash of
// Postgres, with a Reset each time (temporary slots do not survive either).
func TestStreamPostgresRestart(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t)
	p.Exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	s, rec, _ := startStream(t, p, func(c *pglogical.Config) { c.MaxBackoff = 500 * time.Millisecond })
	waitStreamFresh(t, s, 10*time.Second)

	for i, restart := range []struct {
		name string
		stop func(testing.TB)
	}{
		{"stop", p.Stop},
		{"kill", p.Kill},
	} {
		restart.stop(t)
		waitUntil(t, 2*time.Second, restart.name+": FreshAsOf zero", func() bool { return s.FreshAsOf().IsZero() })
		if st := s.Status(); st.Connected {
			t.Errorf("%s: connected while Postgres is down", restart.name)
		}
		p.Start(t)
		waitStreamFresh(t, s, 20*time.Second)
		if n := rec.resetCount(); n != i+2 {
			t.Errorf("%s: %d resets; want %d", restart.name, n, i+2)
		}
		mark := rec.mark()
		p.Exec(t, `INSERT INTO t VALUES ($1)`, i)
		rec.waitApply(t, mark, time.Second, change{"t", invalidator.Data})
	}
	if st := s.Status(); st.Reconnects != 2 || st.LastError != "" {
		t.Errorf("status %+v; want 2 reconnects and no error", st)
	}
}

// TestStreamCloseLeavesNoGoroutines: Close ends every goroutine the stream
// started, whether it is streaming, retrying against a server that is
// down, or waiting for a slot that an open transaction holds up.
func TestStreamCloseLeavesNoGoroutines(t *testing.T) {
	p := StartPostgres(t)
	p.Exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	holder := p.Conn(t)
	before := runtime.NumGoroutine()
	check := func(what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("%s: %d goroutines after Close; %d before:\n%s", what, runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	closeWithin := func(s *pglogical.Stream, what string) {
		t.Helper()
		start := time.Now()
		s.Close()
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: Close took %v", what, d)
		}
		s.Close() // again: a no-op
		check(what)
	}

	s, _, _ := startStream(t, p, nil)
	waitStreamFresh(t, s, 10*time.Second)
	for range 5 {
		p.Exec(t, `INSERT INTO t SELECT coalesce(max(id), 0) + 1 FROM t`)
		waitStreamFresh(t, s, 5*time.Second)
	}
	closeWithin(s, "streaming")

	// Slot creation waits for transactions holding an XID to end.
	if _, err := holder.Exec(t.Context(), `BEGIN; SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	s, _, logs := startStream(t, p, nil)
	time.Sleep(6 * time.Second) // past the warning about the wait
	if !s.FreshAsOf().IsZero() {
		t.Error("fresh although slot creation must wait")
	}
	if !strings.Contains(logs.String(), "waits for transactions") {
		t.Error("no warning that slot creation waits")
	}
	closeWithin(s, "creating a slot")
	holder.Exec(t.Context(), `ROLLBACK`)

	p.Stop(t)
	s, _, _ = startStream(t, p, func(c *pglogical.Config) { c.MaxBackoff = 200 * time.Millisecond })
	time.Sleep(time.Second)
	if st := s.Status(); st.LastError == "" {
		t.Errorf("no error while Postgres is down: %+v", st)
	}
	closeWithin(s, "retrying")
}

// TestStreamPermanentSlot: a named slot is created once (with a Reset),
// survives the stream's Close, and on the next Start is reused without a
// Reset, replaying what was committed meanwhile.
func TestStreamPermanentSlot(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t)
	p.Exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	admin := p.Conn(t)
	named := func(c *pglogical.Config) { c.Slot = "sqlcache_test" }
	s, rec, _ := startStream(t, p, named)
	waitStreamFresh(t, s, 10*time.Second)
	if st := s.Status(); st.Slot != "sqlcache_test" || st.Temporary || rec.resetCount() != 1 {
		t.Fatalf("status %+v, %d resets; want slot sqlcache_test, permanent, one Reset", st, rec.resetCount())
	}
	p.Exec(t, `INSERT INTO t VALUES (1)`)
	waitStreamFresh(t, s, 5*time.Second)
	s.Close()
	if !slotExists(t, admin, "sqlcache_test") {
		t.Fatal("the permanent slot is gone after Close")
	}

	p.Exec(t, `INSERT INTO t VALUES (2)`) // while no one streams
	s, rec, _ = startStream(t, p, named)
	rec.waitApply(t, 0, 10*time.Second, change{"t", invalidator.Data})
	waitStreamFresh(t, s, 10*time.Second)
	if n := rec.resetCount(); n != 0 {
		t.Errorf("%d resets when reusing the slot; want none", n)
	}

	// Dropped while sqlcache is away: recreated, Reset.
	s.Close()
	dropSlot(t, admin, "sqlcache_test")
	s, rec, _ = startStream(t, p, named)
	waitStreamFresh(t, s, 10*time.Second)
	if n := rec.resetCount(); n != 1 {
		t.Errorf("%d resets after the slot was dropped; want 1", n)
	}
	s.Close()
	dropSlot(t, admin, "sqlcache_test")
}

// TestStreamPublicationDropped: dropping the publication under a running
// stream ends it with a clear error at the next change; it recovers once
// the publication is back, or recreates it itself with CreatePublication.
// A permanent slot cannot decode past the drop even once the publication
// is back, so it is recreated (with a Reset).
func TestStreamPublicationDropped(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		create bool
		slot   string
	}{
		{"operator recreates", false, ""},
		{"stream recreates", true, ""},
		{"permanent slot", true, "sqlcache_perm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := StartPostgres(t)
			p.Exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
			p.Exec(t, `CREATE PUBLICATION sqlcache FOR ALL TABLES WITH (publish_via_partition_root = true)`)
			s, rec, logs := startStream(t, p, func(c *pglogical.Config) {
				c.CreatePublication = tc.create
				c.Slot = tc.slot
				c.MaxBackoff = 300 * time.Millisecond
			})
			waitStreamFresh(t, s, 10*time.Second)
			resets := rec.resetCount()

			p.Exec(t, `DROP PUBLICATION sqlcache`)
			p.Exec(t, `INSERT INTO t VALUES (1)`) // decoding it fails
			waitUntil(t, 5*time.Second, "an error naming the publication", func() bool {
				return strings.Contains(s.Status().LastError, `publication "sqlcache" does not exist`)
			})
			if !tc.create {
				waitUntil(t, 5*time.Second, "the fix in the log", func() bool {
					return strings.Contains(logs.String(), "level=ERROR") && strings.Contains(logs.String(), "CREATE PUBLICATION")
				})
				if !s.FreshAsOf().IsZero() {
					t.Errorf("fresh without a publication")
				}
				p.Exec(t, `CREATE PUBLICATION sqlcache FOR ALL TABLES WITH (publish_via_partition_root = true)`)
			}
			waitStreamFresh(t, s, 10*time.Second)
			if st := s.Status(); st.LastError != "" || !st.Connected {
				t.Errorf("after recovering: %+v", st)
			}
			if n := rec.resetCount(); n != resets+1 {
				t.Errorf("%d resets; want %d (one for the changes missed)", n, resets+1)
			}
			mark := rec.mark()
			p.Exec(t, `INSERT INTO t VALUES (2)`)
			rec.waitApply(t, mark, time.Second, change{"t", invalidator.Data})
			if tc.slot != "" {
				s.Close()
				dropSlot(t, p.Conn(t), tc.slot)
			}
		})
	}
}

// TestStreamPublicationAltered: a publication altered under a running
// stream to publish less sends nothing wrong and says nothing: pgoutput
// just stops sending those changes. The heartbeat reads the publication
// too; the stream ends, is not fresh while the problem lasts, and resets
// (every cached answer goes) once the publication is fixed, since changes
// may have gone unsent meanwhile.
func TestStreamPublicationAltered(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t)
	p.Exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	p.Exec(t, `CREATE PUBLICATION sqlcache FOR ALL TABLES WITH (publish_via_partition_root = true)`)
	s, rec, logs := startStream(t, p, func(c *pglogical.Config) { c.MaxBackoff = 300 * time.Millisecond })
	waitStreamFresh(t, s, 10*time.Second)
	resets := rec.resetCount()

	p.Exec(t, `ALTER PUBLICATION sqlcache SET (publish = 'insert')`)
	waitUntil(t, 10*time.Second, "an error naming the publication's problem", func() bool {
		return strings.Contains(s.Status().LastError, "does not publish all of insert, update, delete and truncate")
	})
	waitUntil(t, 10*time.Second, "the stream no longer fresh", func() bool { return s.FreshAsOf().IsZero() })
	if !strings.Contains(logs.String(), "ALTER PUBLICATION sqlcache SET (publish = 'insert, update, delete, truncate')") {
		t.Errorf("the log does not give the fix:\n%s", logs.String())
	}
	p.Exec(t, `INSERT INTO t VALUES (1)`)
	p.Exec(t, `DELETE FROM t`) // not sent: only the reset covers it

	p.Exec(t, `ALTER PUBLICATION sqlcache SET (publish = 'insert, update, delete, truncate')`)
	waitStreamFresh(t, s, 10*time.Second)
	if n := rec.resetCount(); n < resets+1 {
		t.Errorf("%d resets; want at least %d (for the changes not sent)", n, resets+1)
	}
	mark := rec.mark()
	p.Exec(t, `DELETE FROM t`)
	p.Exec(t, `INSERT INTO t VALUES (2)`)
	rec.waitApply(t, mark, time.Second, change{"t", invalidator.Data})
}

// TestStreamCheck: Check passes on a good setup and otherwise names the
// problem and the fix; a stream with the same problem reports it too.
func TestStreamCheck(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t)
	p.Exec(t, `CREATE ROLE norepl LOGIN; CREATE ROLE repl LOGIN REPLICATION`)
	superuser := p.URL("postgres", "", "postgres")
	for _, tc := range []struct {
		name  string
		setup string // run first, as the superuser
		cfg   pglogical.Config
		want  []string // in the error; none for success
	}{
		{name: "superuser creates", cfg: pglogical.Config{DSN: superuser, CreatePublication: true}},
		{name: "no REPLICATION", cfg: pglogical.Config{DSN: p.URL("norepl", "", "postgres"), CreatePublication: true},
			want: []string{`role "norepl" lacks REPLICATION`, "ALTER ROLE norepl REPLICATION"}},
		{name: "publication missing", cfg: pglogical.Config{DSN: superuser},
			want: []string{`publication "sqlcache" does not exist`, "CREATE PUBLICATION"}},
		{name: "cannot create", cfg: pglogical.Config{DSN: p.URL("repl", "", "postgres"), CreatePublication: true},
			want: []string{`publication "sqlcache" does not exist`, "not a superuser"}},
		{name: "table without replica identity", setup: `CREATE TABLE nokey (a int)`, cfg: pglogical.Config{DSN: superuser, CreatePublication: true},
			want: []string{"public.nokey", "REPLICA IDENTITY"}},
		{name: "publication of some tables", setup: `DROP TABLE nokey; CREATE TABLE partial_t (a int PRIMARY KEY); CREATE PUBLICATION sqlcache FOR TABLE partial_t`,
			cfg: pglogical.Config{DSN: superuser}, want: []string{"does not publish all tables"}},
		{name: "not via root", setup: `DROP PUBLICATION sqlcache; CREATE PUBLICATION sqlcache FOR ALL TABLES`,
			cfg: pglogical.Config{DSN: superuser}, want: []string{"publish_via_partition_root = true"}},
		{name: "existing publication", setup: `ALTER PUBLICATION sqlcache SET (publish_via_partition_root = true)`,
			cfg: pglogical.Config{DSN: p.URL("repl", "", "postgres")}},
		{name: "bad slot name", cfg: pglogical.Config{DSN: superuser, Slot: "Bad-Name"}, want: []string{"invalid replication slot name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != "" {
				p.Exec(t, tc.setup)
			}
			err := pglogical.Check(t.Context(), tc.cfg)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check passed; want an error naming %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check: %v; want it to name %q", err, w)
				}
			}
			var setup *pglogical.SetupError
			if !errorsAs(err, &setup) {
				t.Errorf("Check: %T is not a *SetupError", err)
			}
		})
	}

	// A stream whose role lacks REPLICATION says so, at Error level, and
	// keeps retrying without crashing.
	s, _, logs := startStream(t, p, func(c *pglogical.Config) {
		c.DSN = p.URL("norepl", "", "postgres")
		c.MaxBackoff = 200 * time.Millisecond
	})
	waitUntil(t, 5*time.Second, "an error naming REPLICATION", func() bool {
		return strings.Contains(s.Status().LastError, "lacks REPLICATION")
	})
	time.Sleep(time.Second) // several retries
	if n := strings.Count(logs.String(), "lacks REPLICATION"); n != 1 || !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("logged %d times (want once, at Error level):\n%s", n, logs.String())
	}
}

// TestStreamCheckWALLevel: Check and the stream name wal_level when it is
// not logical.
func TestStreamCheckWALLevel(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t)
	p.Exec(t, `ALTER SYSTEM SET wal_level = replica`)
	p.Stop(t)
	p.Start(t)
	err := pglogical.Check(t.Context(), pglogical.Config{DSN: p.URL("postgres", "", "postgres"), CreatePublication: true})
	if err == nil || !strings.Contains(err.Error(), "wal_level") || !strings.Contains(err.Error(), "ALTER SYSTEM SET wal_level = logical") {
		t.Errorf("Check: %v; want an error naming wal_level and the fix", err)
	}
	s, _, _ := startStream(t, p, nil)
	waitUntil(t, 5*time.Second, "an error naming wal_level", func() bool {
		return strings.Contains(s.Status().LastError, "wal_level")
	})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if s.WaitFresh(ctx, time.Time{}) {
		t.Error("fresh without logical decoding")
	}
}
