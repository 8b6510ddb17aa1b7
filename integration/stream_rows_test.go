package integration

import (
	"syscall"
	"testing"
	"time"
)

// pauseWalsenders stops (SIGSTOP) the walsenders of pg, as a loaded
// server would stall them, so that nothing reaches sqlcache's change
// stream until the returned resume is called (also at cleanup, before
// PostgreSQL is shut down). Reads stay cache hits meanwhile, for as long
// as max_lag allows.
func pauseWalsenders(t *testing.T, pg *Postgres) (resume func()) {
	t.Helper()
	conn := pg.Conn(t)
	rows, err := conn.Query(t.Context(), `SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'`)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(pids) == 0 {
		t.Fatal("no walsender to pause")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP walsender %d: %v", pid, err)
		}
	}
	done := false
	resume = func() {
		if done {
			return
		}
		done = true
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	return resume
}

// TestStreamRowsSelfCascade: a row-level write through sqlcache whose
// foreign-key action changes other rows of the same table (a tree of
// comments or categories: ON DELETE CASCADE to its own table). sqlcache
// drops only the written row's answers and leaves the cascaded rows to the
// change stream; until the stream delivers them, every other session
// reads rows that PostgreSQL no longer has, although the statement named
// the table and its client already saw the DELETE complete.
func TestStreamRowsSelfCascade(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"invalidation": map[string]any{"postgres": map[string]any{"max_lag": "20s"}}})
	pg.Exec(t, `CREATE TABLE node (id int PRIMARY KEY, parent int REFERENCES node ON DELETE CASCADE, v text)`)
	pg.Exec(t, `INSERT INTO node VALUES (1, NULL, 'root'), (2, 1, 'child'), (3, 2, 'grandchild'), (4, NULL, 'other')`)
	waitApplied(t, sc)
	ctx := t.Context()
	reader := connect(t, sc.URL("postgres", "", "postgres"))
	writer := connect(t, sc.URL("postgres", "", "postgres"))
	direct := pg.Conn(t)
	const read = `SELECT id, parent, v FROM node WHERE id = $1`
	for _, id := range []int{1, 2, 3} {
		rtCached(t, ctx, sc, reader, read, id)
	}

	resume := pauseWalsenders(t, pg)
	if _, err := writer.Exec(ctx, `DELETE FROM node WHERE id = $1`, 1); err != nil {
		t.Fatal(err)
	}
	// The DELETE has completed for its client: PostgreSQL no longer has
	// rows 1, 2 and 3.
	for _, id := range []int{1, 2, 3} {
		got := rtRows(t, ctx, reader, read, id)
		want := rtRows(t, ctx, direct, read, id)
		if got != want {
			t.Errorf("after DELETE of row 1 through sqlcache (cascading to its descendants), row %d through sqlcache: %q; PostgreSQL: %q", id, got, want)
		}
	}
	resume()
}

// TestStreamRowsLockedRow: taking a row lock (SELECT … FOR UPDATE, or
// the FOR KEY SHARE lock a foreign-key check takes on the referenced row)
// or rolling back a write changes the row's xmax, which a SELECT can
// read, with nothing in the change stream: sqlcache must not keep
// answering the old xmax.
func TestStreamRowsLockedRow(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE acct (id int PRIMARY KEY, balance int)`)
	pg.Exec(t, `CREATE TABLE txn (id int PRIMARY KEY, acct int REFERENCES acct)`)
	pg.Exec(t, `INSERT INTO acct VALUES (1, 10), (2, 20), (3, 30)`)
	waitApplied(t, sc)
	ctx := t.Context()
	r := connect(t, sc.URL("postgres", "", "postgres"))
	direct := pg.Conn(t)
	const read = `SELECT id, balance, xmax FROM acct WHERE id = $1`
	for _, tc := range []struct {
		name   string
		id     int
		writes []string
	}{
		{"select for update", 1, []string{`BEGIN`, `SELECT * FROM acct WHERE id = 1 FOR UPDATE`, `COMMIT`}},
		{"foreign key check", 2, []string{`INSERT INTO txn VALUES (1, 2)`}},
		{"rolled back update", 3, []string{`BEGIN`, `UPDATE acct SET balance = 0 WHERE id = 3`, `ROLLBACK`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Read twice: were the read cacheable, the second would be a hit.
			rtRows(t, ctx, r, read, tc.id)
			rtRows(t, ctx, r, read, tc.id)
			for _, q := range tc.writes {
				if _, err := direct.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			waitApplied(t, sc)
			time.Sleep(1500 * time.Millisecond) // past max_lag
			got := rtRows(t, ctx, r, read, tc.id)
			want := rtRows(t, ctx, direct, read, tc.id)
			if got != want {
				t.Errorf("after %q directly, %s [%d] through sqlcache: %q; PostgreSQL: %q", tc.writes, read, tc.id, got, want)
			}
		})
	}
}

// TestStreamRowsDirectTransactions: row-keyed answers after direct writes
// that reach the change stream in less common forms: a subtransaction
// rolled back between committed ones, a transaction large enough to be
// spilled to disk (logical_decoding_work_mem 64kB) that moves a key, a
// two-phase commit, INSERT … ON CONFLICT DO UPDATE, int2 and int8 keys
// that move, and a one-column table with REPLICA IDENTITY FULL.
func TestStreamRowsDirectTransactions(t *testing.T) {
	pg := StartPostgres(t)
	pg.Exec(t, `ALTER SYSTEM SET max_prepared_transactions = 4`)
	pg.Exec(t, `ALTER SYSTEM SET logical_decoding_work_mem = '64kB'`)
	pg.Stop(t)
	pg.Start(t)
	for _, stmt := range []string{
		`CREATE TABLE kv (id int PRIMARY KEY, v text)`,
		`INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 2000) g`,
		`CREATE TABLE k2 (id int2 PRIMARY KEY, v text)`,
		`INSERT INTO k2 VALUES (1, 'a'), (2, 'b')`,
		`CREATE TABLE k8 (id int8 PRIMARY KEY, v text)`,
		`INSERT INTO k8 VALUES (1, 'a'), (5000000000, 'b')`,
		`CREATE TABLE solo (id int PRIMARY KEY)`,
		`ALTER TABLE solo REPLICA IDENTITY FULL`,
		`INSERT INTO solo VALUES (1), (2)`,
	} {
		pg.Exec(t, stmt)
	}
	sc := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr(), ServiceDSN: pg.URL("postgres", "", "postgres")})
	waitCacheFresh(t, sc)
	waitApplied(t, sc)
	ctx := t.Context()
	r := connect(t, sc.URL("postgres", "", "postgres"))
	direct := pg.Conn(t)
	type read struct {
		sql string
		arg any
	}
	kv := func(id int) read { return read{`SELECT id, v FROM kv WHERE id = $1`, id} }
	for _, tc := range []struct {
		name   string
		reads  []read
		writes []string
	}{
		{"savepoints", []read{kv(2), kv(3), kv(4), kv(4000), kv(6)}, []string{
			`BEGIN`, `UPDATE kv SET v = 'two' WHERE id = 2`, `SAVEPOINT a`, `UPDATE kv SET v = 'three' WHERE id = 3`,
			`ROLLBACK TO a`, `SAVEPOINT b`, `UPDATE kv SET id = 4000 WHERE id = 4`, `RELEASE b`,
			`SAVEPOINT c`, `DELETE FROM kv WHERE id = 6`, `COMMIT`}},
		{"spilled transaction", []read{kv(7), kv(70000), kv(1999)}, []string{
			`BEGIN`, `UPDATE kv SET v = repeat('x', 200) WHERE id BETWEEN 1000 AND 1998`,
			`UPDATE kv SET id = 70000 WHERE id = 7`, `COMMIT`}},
		{"prepared transaction", []read{kv(8), kv(9), kv(8000)}, []string{
			`BEGIN`, `UPDATE kv SET id = 8000 WHERE id = 8`, `PREPARE TRANSACTION 'p1'`,
			`BEGIN`, `UPDATE kv SET v = 'nine' WHERE id = 9`, `PREPARE TRANSACTION 'p2'`,
			`ROLLBACK PREPARED 'p2'`, `COMMIT PREPARED 'p1'`}},
		{"upsert", []read{kv(10), kv(3000)}, []string{
			`INSERT INTO kv VALUES (10, 'ten'), (3000, 'new') ON CONFLICT (id) DO UPDATE SET v = excluded.v`}},
		{"int2 and int8 keys", []read{{`SELECT id, v FROM k2 WHERE id = $1`, int16(1)}, {`SELECT id, v FROM k2 WHERE id = 7`, nil},
			{`SELECT id, v FROM k8 WHERE id = $1`, int64(5000000000)}, {`SELECT id, v FROM k8 WHERE id = $1`, "6000000000"}},
			[]string{`UPDATE k2 SET id = 7 WHERE id = 1`, `UPDATE k8 SET id = 6000000000 WHERE id = 5000000000`}},
		{"replica identity full, one column", []read{{`SELECT id FROM solo WHERE id = $1`, 1}, {`SELECT id FROM solo WHERE id = $1`, 9}},
			[]string{`UPDATE solo SET id = 9 WHERE id = 1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := func(rd read) []any {
				if rd.arg == nil {
					return nil
				}
				return []any{rd.arg}
			}
			for _, rd := range tc.reads {
				rtCached(t, ctx, sc, r, rd.sql, args(rd)...)
			}
			for _, q := range tc.writes {
				if _, err := direct.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			waitApplied(t, sc)
			for _, rd := range tc.reads {
				got := rtRows(t, ctx, r, rd.sql, args(rd)...)
				want := rtRows(t, ctx, direct, rd.sql, args(rd)...)
				if got != want {
					t.Errorf("after %q directly, %s %v through sqlcache: %q; PostgreSQL: %q", tc.writes, rd.sql, rd.arg, got, want)
				}
			}
		})
	}
}

// TestStreamRowsInsertOverridingUserValue: `INSERT … OVERRIDING USER
// VALUE VALUES ($1, …)` into a table whose key is an identity column
// ignores the key given and takes the sequence's next value. sqlcache
// takes it for a one-row write of the key given, drops that row's answers
// only, and leaves the row actually written to the change stream: the
// writing session itself then reads, from the cache, that the row it has
// just inserted does not exist.
func TestStreamRowsInsertOverridingUserValue(t *testing.T) {
	pg, sc := startCache(t, map[string]any{"invalidation": map[string]any{"postgres": map[string]any{"max_lag": "20s"}}})
	pg.Exec(t, `CREATE TABLE item (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO item (v) VALUES ('a'), ('b'), ('c')`)
	waitApplied(t, sc)
	ctx := t.Context()
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	direct := pg.Conn(t)
	const read = `SELECT id, v FROM item WHERE id = $1`
	rtCached(t, ctx, sc, conn, read, 4) // not there yet

	resume := pauseWalsenders(t, pg)
	var id int
	if err := conn.QueryRow(ctx, `INSERT INTO item (id, v) OVERRIDING USER VALUE VALUES ($1, $2) RETURNING id`, 100, "d").Scan(&id); err != nil {
		t.Fatal(err)
	}
	if id != 4 {
		t.Fatalf("the insert made row %d; want 4 (the identity's next value)", id)
	}
	got := rtRows(t, ctx, conn, read, id)
	want := rtRows(t, ctx, direct, read, id)
	if got != want {
		t.Errorf("after INSERT … OVERRIDING USER VALUE through sqlcache returned id %d, the same session reads row %d through sqlcache: %q; PostgreSQL: %q", id, id, got, want)
	}
	resume()
}
