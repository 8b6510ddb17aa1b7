package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestTransactionReads: inside a read committed transaction block that has
// run only cacheable reads, reads are answered from the cache (and fill
// it); anything else in the block, a block at another isolation level, and
// an aborted block reach PostgreSQL. A hit is proved by behaviour: it is
// answered while another session holds an ACCESS EXCLUSIVE lock on the
// table, which blocks any read that reaches PostgreSQL.
func TestTransactionReads(t *testing.T) {
	pg, sc := startCache(t, nil)
	for _, stmt := range []string{
		`CREATE TABLE scores (player text PRIMARY KEY, score int)`,
		`INSERT INTO scores VALUES ('ada', 42), ('grace', 57)`,
		`CREATE TABLE notes (id int PRIMARY KEY, body text)`,
		`INSERT INTO notes VALUES (1, 'first')`,
		`GRANT ALL ON scores, notes TO app`,
	} {
		pg.Exec(t, stmt)
	}
	waitApplied(t, sc)
	const q = `SELECT player, score FROM scores ORDER BY score DESC`
	const want = "grace:57 ada:42"
	url := sc.URL("app", "", "postgres")
	// Reads under the lock use the simple protocol: a Parse of a new
	// prepared statement would wait for the lock itself.
	warm := connect(t, sc.URL("app", "", "postgres", "default_query_exec_mode=simple_protocol"))
	if got := readScores(t, t.Context(), warm, q); got != want {
		t.Fatalf("first read %q", got)
	}
	if got := readScores(t, t.Context(), warm, q); got != want {
		t.Fatalf("second read %q", got)
	}
	// A session whose startup options make serializable its default has
	// answers of its own (the options are in the key): cached here.
	serializableURL := sc.URL("app", "", "postgres", "options=--default_transaction_isolation=serializable")
	warmSerializable := connect(t, serializableURL+"&default_query_exec_mode=simple_protocol")
	readScores(t, t.Context(), warmSerializable, q)
	if got := readScores(t, t.Context(), warmSerializable, q); got != want {
		t.Fatalf("read %q", got)
	}

	locker := pg.Conn(t)
	lock, err := locker.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(t.Context(), `LOCK TABLE scores IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	// readLocked reads q in tx while scores is locked: it returns whether
	// it was answered (from the cache), or false once the read has waited
	// 300ms (it reached PostgreSQL), which aborts tx.
	readLocked := func(t *testing.T, conn *pgx.Conn, tx querier) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		rows, err := tx.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
		if err == nil {
			var got []string
			for rows.Next() {
				var p string
				var s int
				if err := rows.Scan(&p, &s); err != nil {
					t.Fatal(err)
				}
				got = append(got, p)
			}
			err = rows.Err()
			if err == nil && strings.Join(got, " ") != "grace ada" {
				t.Fatalf("read %q in the block; want grace ada", got)
			}
		}
		if err == nil {
			if st := conn.PgConn().TxStatus(); st != 'T' {
				t.Errorf("after a hit in a block the client's transaction status is %q; want 'T'", st)
			}
			return true
		}
		if !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
			t.Fatalf("read in the block: %v", err)
		}
		return false
	}
	for _, tc := range []struct {
		name   string
		url    string
		opts   pgx.TxOptions
		before []string // statements run in the block before the read
		hit    bool
		why    string // the bypass reason counted for the read, if not a hit
	}{
		{name: "default BEGIN", hit: true},
		{name: "BEGIN READ ONLY", opts: pgx.TxOptions{AccessMode: pgx.ReadOnly}, hit: true},
		{name: "explicit read committed", opts: pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, hit: true},
		{name: "after other cached reads", before: []string{`SELECT body FROM notes WHERE id = 1`}, hit: true},
		{name: "repeatable read", opts: pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, why: "transaction"},
		{name: "serializable", opts: pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadOnly}},
		{name: "after a write", before: []string{`UPDATE notes SET body = body WHERE id = 1`}, why: "transaction_dirty"},
		{name: "after SET LOCAL", before: []string{`SET LOCAL work_mem = '8MB'`}},
		{name: "after set_config local", before: []string{`SELECT set_config('app.tenant', 'x', true)`}},
		{name: "after SAVEPOINT", before: []string{`SAVEPOINT a`}},
		{name: "after a volatile read", before: []string{`SELECT random()`}, why: "transaction_dirty"},
		{name: "after SELECT FOR SHARE", before: []string{`SELECT body FROM notes WHERE id = 1 FOR SHARE`}},
		{name: "session default serializable from the startup options", url: serializableURL, why: "transaction_isolation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := url
			if tc.url != "" {
				u = tc.url
			}
			conn := connect(t, u)
			tx, err := conn.BeginTx(t.Context(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background())
			for _, stmt := range tc.before {
				if _, err := tx.Exec(t.Context(), stmt); err != nil {
					t.Fatalf("%s: %v", stmt, err)
				}
			}
			before := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total")
			bypass := `sqlcache_cache_bypasses_total{reason="` + tc.why + `"}`
			bypasses := metricValue(t, sc, bypass)
			hit := readLocked(t, conn, tx)
			if tc.why != "" && metricValue(t, sc, bypass) == bypasses {
				t.Errorf("%s did not count the read", bypass)
			}
			if hit != tc.hit {
				t.Errorf("answered from the cache: %t; want %t", hit, tc.hit)
			}
			if got := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total") - before; hit && got != 1 {
				t.Errorf("sqlcache_cache_hits_in_transaction_total rose by %v; want 1", got)
			}
			if hit {
				if err := tx.Commit(t.Context()); err != nil {
					t.Errorf("COMMIT after a hit: %v", err)
				}
			}
		})
	}

	t.Run("aborted block gets its error", func(t *testing.T) {
		conn := connect(t, url)
		tx, err := conn.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		if _, err := tx.Exec(t.Context(), `SELECT 1/0`); err == nil {
			t.Fatal("SELECT 1/0 succeeded")
		}
		_, err = tx.Exec(t.Context(), q)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "25P02" {
			t.Errorf("a read in an aborted block got %v; want SQLSTATE 25P02 from PostgreSQL", err)
		}
	})

	t.Run("BEGIN in the batch of the first read", func(t *testing.T) {
		// pgjdbc sends its BEGIN with the block's first statement,
		// before one Sync.
		conn := connect(t, url)
		ctx := t.Context()
		batch := &pgx.Batch{}
		batch.Queue(`BEGIN READ ONLY`)
		batch.Queue(`SELECT body FROM notes WHERE id = $1`, 1)
		if err := conn.SendBatch(ctx, batch).Close(); err != nil {
			t.Fatal(err)
		}
		if conn.PgConn().TxStatus() != 'T' {
			t.Fatalf("after the batch the transaction status is %q; want 'T'", conn.PgConn().TxStatus())
		}
		if !readLocked(t, conn, conn) {
			t.Error("a read after a batch of BEGIN READ ONLY and a cacheable read was not answered from the cache")
		}
		if _, err := conn.Exec(ctx, `COMMIT`); err != nil {
			t.Fatal(err)
		}
	})
	lock.Rollback(context.Background())

	t.Run("session default set and reset", func(t *testing.T) {
		// One session whose default isolation changes between blocks:
		// in each block the second read hits only at read committed.
		conn := connect(t, url)
		ctx := t.Context()
		for _, step := range []struct {
			set string
			hit bool
		}{
			{`SET default_transaction_isolation = 'serializable'`, false},
			{`RESET default_transaction_isolation`, true},
			{`SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ`, false},
			{`SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED`, true},
			{`SELECT set_config('default_transaction_isolation', 'repeatable read', false)`, false},
			{`RESET ALL`, true},
		} {
			if _, err := conn.Exec(ctx, step.set); err != nil {
				t.Fatalf("%s: %v", step.set, err)
			}
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			readScores(t, ctx, conn, q)
			before := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total")
			if got := readScores(t, ctx, conn, q); got != want {
				t.Fatalf("read %q", got)
			}
			if hit := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total") > before; hit != step.hit {
				t.Errorf("after %s: the second read in the block was answered from the cache: %t; want %t", step.set, hit, step.hit)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("reads batched in the block", func(t *testing.T) {
		// pgx's SendBatch: several reads, never seen before, in one
		// batch inside the block; the block stays answerable.
		conn := connect(t, url)
		ctx := t.Context()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		batch := &pgx.Batch{}
		// No function or operator in them: nothing else decides them.
		batch.Queue(`SELECT body FROM notes`)
		batch.Queue(`SELECT id, body FROM notes`)
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			t.Fatal(err)
		}
		readScores(t, ctx, conn, q)
		before := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total")
		if got := readScores(t, ctx, conn, q); got != want {
			t.Fatalf("read %q", got)
		}
		if metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total") == before {
			t.Error("after a batch of cacheable reads the block's next read was not answered from the cache")
		}
	})

	t.Run("own writes in the block are seen", func(t *testing.T) {
		conn := connect(t, url)
		ctx := t.Context()
		const read = `SELECT body FROM notes WHERE id = $1`
		body := func(tx pgx.Tx) string {
			t.Helper()
			var b string
			if err := tx.QueryRow(ctx, read, 1).Scan(&b); err != nil {
				t.Fatal(err)
			}
			return b
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		first := body(tx)
		hits := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total")
		if again := body(tx); again != first {
			t.Fatalf("read %q, then %q", first, again)
		}
		if metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total") == hits {
			t.Fatal("the second read in the block was not a hit; the case proves nothing")
		}
		if _, err := tx.Exec(ctx, `UPDATE notes SET body = 'changed in the block' WHERE id = 1`); err != nil {
			t.Fatal(err)
		}
		if got := body(tx); got != "changed in the block" {
			t.Errorf("after its own UPDATE the block read %q; want %q", got, "changed in the block")
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		var after string
		if err := conn.QueryRow(ctx, read, 1).Scan(&after); err != nil {
			t.Fatal(err)
		}
		if after != first {
			t.Errorf("after ROLLBACK the read gave %q; want %q", after, first)
		}
	})

	t.Run("a miss in the block fills the cache", func(t *testing.T) {
		conn := connect(t, url)
		ctx := t.Context()
		const read = `SELECT count(*) FROM notes WHERE body <> $1`
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := tx.QueryRow(ctx, read, "zzz").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		hits := metricValue(t, sc, "sqlcache_cache_hits_total")
		if err := conn.QueryRow(ctx, read, "zzz").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if metricValue(t, sc, "sqlcache_cache_hits_total") == hits {
			t.Errorf("a read first made inside a block was not a hit outside it:\n%s", cacheMetrics(t, sc))
		}
	})

	t.Run("psql script", func(t *testing.T) {
		psql := LookBinary(t, "psql", "postgresql-client")
		script := "BEGIN READ ONLY;\n" + strings.Repeat("SELECT body FROM notes WHERE id = 1;\n", 3) + "COMMIT;\n"
		file := filepath.Join(t.TempDir(), "read.sql")
		if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		before := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total")
		out, err := exec.Command(psql, url, "-X", "-v", "ON_ERROR_STOP=1", "-At", "-f", file).CombinedOutput()
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		if got, want := strings.TrimSpace(string(out)), "BEGIN\nfirst\nfirst\nfirst\nCOMMIT"; got != want {
			t.Errorf("psql printed %q; want %q", got, want)
		}
		if hits := metricValue(t, sc, "sqlcache_cache_hits_in_transaction_total") - before; hits < 2 {
			t.Errorf("%v of psql's reads in its block were hits; want at least 2 of 3", hits)
		}
	})

	t.Run("idle timeout", func(t *testing.T) {
		// The backend counts a block answered from the cache as idle:
		// past half of idle_in_transaction_session_timeout a read is
		// relayed, which restarts the count, and the session lives on.
		conn := connect(t, url)
		ctx := t.Context()
		if _, err := conn.Exec(ctx, `SET idle_in_transaction_session_timeout = '1s'`); err != nil {
			t.Fatal(err)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		bypass := `sqlcache_cache_bypasses_total{reason="transaction_idle_timeout"}`
		before := metricValue(t, sc, bypass)
		for range 6 {
			if got := readScores(t, ctx, conn, q); got != want {
				t.Fatalf("read %q", got)
			}
			time.Sleep(300 * time.Millisecond)
		}
		if metricValue(t, sc, bypass) == before {
			t.Error("no read was relayed to restart the backend's idle count")
		}
		if err := tx.Commit(ctx); err != nil {
			t.Errorf("COMMIT after 1.8s of reads under a 1s idle timeout: %v", err)
		}
	})
}

// querier is what pgx.Tx and *pgx.Conn share for reading.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}
