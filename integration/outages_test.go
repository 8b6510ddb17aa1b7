package integration

import (
	"context"
	"testing"
	"time"
)

// TestOutagesSyncStandbyCommitVisibleLater: with synchronous replication
// (synchronous_standby_names set, synchronous_commit on for the writer),
// a commit record is flushed, and so decoded and sent by the logical
// walsender, before the transaction becomes visible: the committing
// backend waits for the standby first. sqlcache drops the answer when the
// stream delivers the commit; a read in that window misses, refills from
// a snapshot in which the transaction is still in progress, and stores
// the old row. Once the transaction becomes visible (the standby answers,
// or here the wait is cancelled, which PostgreSQL answers with a WARNING
// and a committed transaction), PostgreSQL returns the new row, and
// sqlcache must too, at the latest max_lag later.
func TestOutagesSyncStandbyCommitVisibleLater(t *testing.T) {
	pg := StartPostgres(t)
	pg.Exec(t, `CREATE TABLE acct (id int PRIMARY KEY, v text NOT NULL)`)
	pg.Exec(t, `INSERT INTO acct VALUES (1, 'old')`)
	pg.Exec(t, `ALTER SYSTEM SET synchronous_standby_names = 'ghost_standby'`)
	pg.Exec(t, `SELECT pg_reload_conf()`)
	sc := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr(), ServiceDSN: pg.URL("postgres", "", "postgres")})
	waitCacheFresh(t, sc)
	waitApplied(t, sc)
	ctx := t.Context()
	reader := connect(t, sc.URL("postgres", "", "postgres"))
	const q = `SELECT v FROM acct WHERE id = 1`
	if got := rtCached(t, ctx, sc, reader, q); got != "old\n" {
		t.Fatalf("before the write: %q", got)
	}

	changes := metricValue(t, sc, `sqlcache_stream_changes_total{database="postgres"}`)
	writer := pg.Conn(t)
	var pid int
	if err := writer.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Exec(ctx, `SET synchronous_commit = on`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := writer.Exec(context.Background(), `UPDATE acct SET v = 'new' WHERE id = 1`)
		done <- err
	}()
	admin := pg.Conn(t)
	waitUntil(t, 10*time.Second, "the writer waiting for the synchronous standby", func() bool {
		var w string
		admin.QueryRow(ctx, `SELECT coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&w)
		return w == "SyncRep"
	})
	// The commit is flushed: the stream delivers it and sqlcache drops
	// the answer, while the row is still 'old' for every other session.
	waitUntil(t, 10*time.Second, "the stream delivering the waiting commit", func() bool {
		return metricValue(t, sc, `sqlcache_stream_changes_total{database="postgres"}`) > changes
	})
	if got := rtRows(t, ctx, admin, q); got != "old\n" {
		t.Fatalf("directly, while the commit waits for the standby: %q; want old", got)
	}
	// A read now refills the cache from a snapshot without the commit.
	rtCached(t, ctx, sc, reader, q)

	// The wait ends: the transaction becomes visible.
	if _, err := admin.Exec(ctx, `SELECT pg_cancel_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("UPDATE: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the UPDATE did not return after its wait was cancelled")
	}
	if got := rtRows(t, ctx, admin, q); got != "new\n" {
		t.Fatalf("directly, after the commit became visible: %q; want new", got)
	}
	time.Sleep(3 * time.Second) // well past max_lag (1s)
	waitApplied(t, sc)
	for i := range 3 {
		if got := rtRows(t, ctx, reader, q); got != "new\n" {
			t.Fatalf("read %d through sqlcache 3s after the commit became visible: %q; PostgreSQL answers new (hits %v)",
				i, got, metricValue(t, sc, "sqlcache_cache_hits_total"))
		}
	}
}

// TestOutagesWalsenderStalled: the walsender stalls (SIGSTOP) for longer
// than max_lag while a row is changed directly. Reads through sqlcache
// must then be relayed (bypass stream_lag) and return the new row, not
// the cached one; once the walsender resumes, reads are hits again.
func TestOutagesWalsenderStalled(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE acct (id int PRIMARY KEY, v text NOT NULL)`)
	pg.Exec(t, `INSERT INTO acct VALUES (1, 'old')`)
	waitApplied(t, sc)
	ctx := t.Context()
	reader := connect(t, sc.URL("postgres", "", "postgres"))
	const q = `SELECT v FROM acct WHERE id = 1`
	if got := rtCached(t, ctx, sc, reader, q); got != "old\n" {
		t.Fatalf("before the write: %q", got)
	}
	resume := pauseWalsenders(t, pg)
	pg.Exec(t, `UPDATE acct SET v = 'new' WHERE id = 1`)
	time.Sleep(2500 * time.Millisecond) // past max_lag (1s)
	lagged := metricValue(t, sc, `sqlcache_cache_bypasses_total{reason="stream_lag"}`)
	for i := range 3 {
		if got := rtRows(t, ctx, reader, q); got != "new\n" {
			t.Fatalf("read %d through sqlcache while the walsender is stalled past max_lag: %q; PostgreSQL has new", i, got)
		}
	}
	if n := metricValue(t, sc, `sqlcache_cache_bypasses_total{reason="stream_lag"}`); n <= lagged {
		t.Errorf("stream_lag bypasses %v → %v while stalled; want them counted", lagged, n)
	}
	resume()
	waitApplied(t, sc)
	if got := rtCached(t, ctx, sc, reader, q); got != "new\n" {
		t.Errorf("after the walsender resumed: %q; want new", got)
	}
}

// TestOutagesPermanentSlotRestart: with invalidation.postgres.slot set,
// PostgreSQL is restarted (and then crashed) while answers are cached, and
// rows are changed directly as soon as it is back, before or while the
// stream reconnects to its slot (no Reset: the slot replays). No read may
// return the old rows once max_lag has passed.
func TestOutagesPermanentSlotRestart(t *testing.T) {
	pg := StartPostgres(t)
	pg.Exec(t, `CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL)`)
	pg.Exec(t, `INSERT INTO acct VALUES (1, 0), (2, 0)`)
	sc := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr(), ServiceDSN: pg.URL("postgres", "", "postgres"),
		Extra: map[string]any{"invalidation": map[string]any{"postgres": map[string]any{"slot": "sqlcache_perm"}}}})
	waitCacheFresh(t, sc)
	waitApplied(t, sc)
	ctx := t.Context()
	reads := []string{`SELECT v FROM acct WHERE id = 1`, `SELECT sum(v) FROM acct`}
	for round, restart := range []func(testing.TB){pg.Stop, pg.Kill} {
		reader := connect(t, sc.URL("postgres", "", "postgres"))
		for _, q := range reads {
			rtCached(t, ctx, sc, reader, q)
		}
		reader.Close(ctx)
		restart(t)
		pg.Start(t)
		pg.Exec(t, `UPDATE acct SET v = v + 1`)
		direct := pg.Conn(t)
		waitCacheFresh(t, sc)
		time.Sleep(1500 * time.Millisecond) // past max_lag
		waitApplied(t, sc)
		reader = connect(t, sc.URL("postgres", "", "postgres"))
		for _, q := range reads {
			want := rtRows(t, ctx, direct, q)
			for i := range 2 {
				if got := rtRows(t, ctx, reader, q); got != want {
					t.Errorf("round %d, read %d of %s through sqlcache after the restart: %q; PostgreSQL: %q", round, i, q, got, want)
				}
			}
		}
		reader.Close(ctx)
	}
	if n := metricValue(t, sc, `sqlcache_stream_resets_total{database="postgres"}`); n != 1 {
		t.Logf("stream resets: %v (1 expected: the slot's creation)", n)
	}
}
