package integration

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestRowInvalidation: answers that read one row by primary key survive
// writes of other rows, through sqlcache and directly on PostgreSQL, and
// never outlive a change of their own row: updates, key changes, inserts
// and deletes. Answers that read more than one row go with any change.
func TestRowInvalidation(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL)`)
	pg.Exec(t, `INSERT INTO kv SELECT g, 0 FROM generate_series(1, 5) g`)
	waitApplied(t, sc)
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	ctx := t.Context()

	// get reads row id through sqlcache: with a binary parameter (pgx
	// sends an int so) or a text one (a string); "none" if absent.
	get := func(id any) string {
		t.Helper()
		var v int
		err := conn.QueryRow(ctx, `SELECT v FROM kv WHERE id = $1`, id).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return "none"
		}
		if err != nil {
			t.Fatalf("read id %v: %v", id, err)
		}
		return fmt.Sprint(v)
	}
	sum := func() string {
		t.Helper()
		var s int
		if err := conn.QueryRow(ctx, `SELECT sum(v)::int FROM kv WHERE id > $1`, 0).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(s)
	}
	hits := func() float64 { return metricValue(t, sc, "sqlcache_cache_hits_total") }
	// cached checks that f's answer is cached: asked twice, the second
	// time is a hit.
	cached := func(what string, f func() string) {
		t.Helper()
		f()
		h := hits()
		f()
		if hits() == h {
			t.Fatalf("%s is not answered from the cache", what)
		}
	}
	// stillHit checks that f is answered from the cache with want, once
	// the change stream has applied the writes before: a stream further
	// behind than max_lag (a loaded CI machine) has reads relayed.
	stillHit := func(what string, f func() string, want string) {
		t.Helper()
		waitApplied(t, sc)
		h := hits()
		if got := f(); got != want {
			t.Errorf("%s = %s; want %s", what, got, want)
		}
		if hits() == h {
			t.Errorf("%s was not a hit: a change of another row dropped it", what)
		}
	}

	// The same shapes with constants first: their analysis must not stand
	// in for the parameterised texts'.
	for _, q := range []string{`SELECT v FROM kv WHERE id = 1`} {
		if _, err := conn.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("write through sqlcache", func(t *testing.T) {
		cached("row 1", func() string { return get(1) })
		cached("row 2", func() string { return get(2) })
		cached("row 2, text parameter", func() string { return get("2") })
		if n := metricValue(t, sc, "sqlcache_cache_row_entries"); n < 2 {
			t.Errorf("sqlcache_cache_row_entries = %v with rows 1 and 2 cached; want at least 2", n)
		}
		cached("sum", sum)
		if _, err := conn.Exec(ctx, `UPDATE kv SET v = v + 1 WHERE id = $1`, 1); err != nil {
			t.Fatal(err)
		}
		if got := get(1); got != "1" {
			t.Errorf("row 1 after its update = %s; want 1", got)
		}
		if got := sum(); got != "1" {
			t.Errorf("sum after an update = %s; want 1", got)
		}
		stillHit("row 2", func() string { return get(2) }, "0")
		stillHit("row 2, text parameter", func() string { return get("2") }, "0")

		cached("absent row 7", func() string { return get(7) })
		if _, err := conn.Exec(ctx, `INSERT INTO kv (id, v) VALUES ($1, $2)`, 7, 70); err != nil {
			t.Fatal(err)
		}
		if got := get(7); got != "70" {
			t.Errorf("row 7 after its insert = %s; want 70", got)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO kv (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v`, 7, 71); err != nil {
			t.Fatal(err)
		}
		if got := get(7); got != "71" {
			t.Errorf("row 7 after its upsert = %s; want 71", got)
		}
		stillHit("row 2", func() string { return get(2) }, "0")
		if _, err := conn.Exec(ctx, `DELETE FROM kv WHERE id = $1`, 7); err != nil {
			t.Fatal(err)
		}
		if got := get(7); got != "none" {
			t.Errorf("row 7 after its delete = %s; want none", got)
		}
	})

	t.Run("writes on PostgreSQL", func(t *testing.T) {
		for _, tc := range []struct {
			name, write string
			id          int
			want        string
		}{
			{"update", `UPDATE kv SET v = 7 WHERE id = 3`, 3, "7"},
			{"delete", `DELETE FROM kv WHERE id = 4`, 4, "none"},
			{"insert", `INSERT INTO kv VALUES (6, 6)`, 6, "6"},
			{"key moves away", `UPDATE kv SET id = 60 WHERE id = 5`, 5, "none"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cached("row", func() string { return get(tc.id) })
				cached("row 2", func() string { return get(2) })
				pg.Exec(t, tc.write)
				d := eventually(t, 5*time.Second, func() (string, error) { return get(tc.id), nil }, tc.want)
				if d > time.Second {
					t.Errorf("sqlcache answered from before the direct write %v after it; want within 1s (max_lag)", d)
				}
				stillHit("row 2", func() string { return get(2) }, "0")
			})
		}
		// The moved row arrives under its new key too.
		eventually(t, 5*time.Second, func() (string, error) { return get(60), nil }, "0")
	})

	t.Run("parameters in another order", func(t *testing.T) {
		// Same shape as `id = $1 AND v >= $2`, but the key is $2.
		get := func(q string, args ...any) func() string {
			return func() string {
				var v int
				if err := conn.QueryRow(ctx, q, args...).Scan(&v); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				return fmt.Sprint(v)
			}
		}
		first := get(`SELECT v FROM kv WHERE id = $1 AND v >= $2`, 3, -1)
		second := get(`SELECT v FROM kv WHERE id = $2 AND v >= $1`, -1, 3)
		cached("key first", first)
		cached("key second", second)
		pg.Exec(t, `UPDATE kv SET v = v + 100 WHERE id = 3`)
		want := fmt.Sprint(107)
		eventually(t, 5*time.Second, func() (string, error) { return first(), nil }, want)
		eventually(t, 5*time.Second, func() (string, error) { return second(), nil }, want)
	})

	t.Run("explain", func(t *testing.T) {
		for _, tc := range []struct{ sql, want string }{
			{`SELECT v FROM kv WHERE id = $1`, "row:       kv.id = $1"},
			{`UPDATE kv SET v = $2 WHERE id = $1`, "row:       kv.id = $1"},
		} {
			out, code := RunSqlcache(t, "explain", "--config", sc.ConfigFile, tc.sql)
			if code != 0 || !strings.Contains(out, tc.want) {
				t.Errorf("explain %q: exit %d:\n%s\nwant %q in it", tc.sql, code, out, tc.want)
			}
		}
	})

	t.Run("constants in simple queries", func(t *testing.T) {
		// getS reads row id with the key inlined, as drivers that
		// interpolate parameters send it. Texts of one shape share their
		// analysis, and each must be tied to its own row.
		getS := func(id int) func() string {
			return func() string {
				t.Helper()
				var v int
				err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT v FROM kv WHERE id = %d`, id), pgx.QueryExecModeSimpleProtocol).Scan(&v)
				if errors.Is(err, pgx.ErrNoRows) {
					return "none"
				}
				if err != nil {
					t.Fatalf("read id %d: %v", id, err)
				}
				return fmt.Sprint(v)
			}
		}
		plus := func(v string, n int) string {
			var i int
			fmt.Sscan(v, &i)
			return fmt.Sprint(i + n)
		}
		simple := func(sql string) {
			t.Helper()
			if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		cached("row 2", getS(2))
		cached("row 3", getS(3))
		two, three := getS(2)(), getS(3)()

		simple(`UPDATE kv SET v = v + 1 WHERE id = 3`)
		if got, want := getS(3)(), plus(three, 1); got != want {
			t.Errorf("row 3 after its update = %s; want %s", got, want)
		}
		stillHit("row 2", getS(2), two)

		// The stream reports the update of row 3 too, later: let it,
		// before row 3 is cached again.
		waitApplied(t, sc)
		cached("row 3", getS(3))
		pg.Exec(t, `UPDATE kv SET v = v + 1 WHERE id = 2`)
		eventually(t, 5*time.Second, func() (string, error) { return getS(2)(), nil }, plus(two, 1))
		stillHit("row 3", getS(3), plus(three, 1))

		// The same write by the extended protocol, its key a constant
		// all the same.
		waitApplied(t, sc)
		cached("row 2", getS(2))
		cached("row 3", getS(3))
		if _, err := conn.Exec(ctx, `UPDATE kv SET v = v + 1 WHERE id = 3`); err != nil {
			t.Fatal(err)
		}
		if got, want := getS(3)(), plus(three, 2); got != want {
			t.Errorf("row 3 after its update by the extended protocol = %s; want %s", got, want)
		}
		stillHit("row 2", getS(2), plus(two, 1))
		three = plus(three, 1)

		// Again the stream reports that update later; row 3 must be
		// cached after it for the check below to mean anything.
		waitApplied(t, sc)
		cached("row 3", getS(3))
		cached("absent row 8", getS(8))
		simple(`INSERT INTO kv (id, v) VALUES (8, 80)`)
		if got := getS(8)(); got != "80" {
			t.Errorf("row 8 after its insert = %s; want 80", got)
		}
		simple(`DELETE FROM kv WHERE id = 8`)
		if got := getS(8)(); got != "none" {
			t.Errorf("row 8 after its delete = %s; want none", got)
		}
		stillHit("row 3", getS(3), plus(three, 1))

		for _, tc := range []struct{ sql, want string }{
			{`SELECT v FROM kv WHERE id = 4`, "row:       kv.id = 4"},
			{`DELETE FROM kv WHERE id = 0012`, "row:       kv.id = 12"},
		} {
			out, code := RunSqlcache(t, "explain", "--config", sc.ConfigFile, tc.sql)
			if code != 0 || !strings.Contains(out, tc.want) {
				t.Errorf("explain %q: exit %d:\n%s\nwant %q in it", tc.sql, code, out, tc.want)
			}
		}
	})

	t.Run("whole-table changes", func(t *testing.T) {
		cached("row 2", func() string { return get(2) })
		pg.Exec(t, `UPDATE kv SET v = 9`)
		eventually(t, 5*time.Second, func() (string, error) { return get(2), nil }, "9")
		// A read may see the update before the stream has applied all of
		// it (relayed while the stream is behind max_lag, or between its
		// first application and the one a heartbeat's snapshot makes):
		// let the stream catch up before asking for a hit, as the checks
		// above do (without it, it failed in 2 of 30 runs on 2026-11-29).
		waitApplied(t, sc)
		cached("row 2", func() string { return get(2) })
		if _, err := conn.Exec(ctx, `UPDATE kv SET v = 10 WHERE v = 9`); err != nil {
			t.Fatal(err)
		}
		if got := get(2); got != "10" {
			t.Errorf("row 2 after an update of every row through sqlcache = %s; want 10", got)
		}
	})
}

// TestShapeDigitsInTableName: pg_query's fingerprint, by which sqlcache
// reuses one text's analysis for others of the same shape, leaves digits
// out of table names (partitions such as events_2024). An answer about
// events_2025 must depend on events_2025 all the same.
func TestShapeDigitsInTableName(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE events_2024 (k int PRIMARY KEY, v int)`)
	pg.Exec(t, `CREATE TABLE events_2025 (k int PRIMARY KEY, v int)`)
	pg.Exec(t, `INSERT INTO events_2024 VALUES (1, 24)`)
	pg.Exec(t, `INSERT INTO events_2025 VALUES (1, 25)`)
	waitApplied(t, sc)
	conn := connect(t, sc.URL("postgres", "", "postgres"))
	read := func(table string) func() (string, error) {
		return func() (string, error) {
			var v int
			err := conn.QueryRow(t.Context(), `SELECT v FROM `+table+` WHERE k = 1`, pgx.QueryExecModeSimpleProtocol).Scan(&v)
			return fmt.Sprint(v), err
		}
	}
	for range 2 {
		for _, table := range []string{"events_2024", "events_2025"} {
			if _, err := read(table)(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if metricValue(t, sc, "sqlcache_cache_hits_total") == 0 {
		t.Fatal("nothing was answered from the cache")
	}
	pg.Exec(t, `UPDATE events_2025 SET v = 26`)
	eventually(t, 5*time.Second, read("events_2025"), "26")
}
