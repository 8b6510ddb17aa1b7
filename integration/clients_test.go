package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// startPair starts a Postgres and sqlcache in front of it.
func startPair(t *testing.T) (*Postgres, *Sqlcache) {
	t.Helper()
	pg := StartPostgres(t)
	return pg, StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr()})
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestPgx drives the proxy with pgx's extended protocol, pipelines, COPY,
// LISTEN/NOTIFY and cancellation through a context.
func TestPgx(t *testing.T) {
	_, sc := startPair(t)
	ctx := t.Context()
	conn := connect(t, sc.URL("app", "", "app"))

	t.Run("extended", func(t *testing.T) {
		if _, err := conn.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY, name text, tags text[], price numeric, at timestamptz)`); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
		for i := range 10 {
			if _, err := conn.Exec(ctx, `INSERT INTO items VALUES ($1, $2, $3, $4, $5)`,
				i, fmt.Sprintf("item-%d-ü", i), []string{"a", fmt.Sprint(i)}, fmt.Sprintf("%d.25", i), at); err != nil {
				t.Fatal(err)
			}
		}
		var name string
		var tags []string
		var got time.Time
		if err := conn.QueryRow(ctx, `SELECT name, tags, at FROM items WHERE id = $1`, 7).Scan(&name, &tags, &got); err != nil {
			t.Fatal(err)
		}
		if name != "item-7-ü" || len(tags) != 2 || tags[1] != "7" || !got.Equal(at) {
			t.Errorf("got %q %q %v; want item-7-ü [a 7] %v", name, tags, got, at)
		}
		var sum string
		if err := conn.QueryRow(ctx, `SELECT sum(price)::text FROM items`).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if sum != "47.50" {
			t.Errorf("sum = %s; want 47.50", sum)
		}
	})

	t.Run("batch", func(t *testing.T) {
		// pgx sends a batch as one pipeline: every Bind/Execute, then Sync.
		b := &pgx.Batch{}
		for i := range 5 {
			b.Queue(`SELECT name FROM items WHERE id = $1`, i)
		}
		b.Queue(`UPDATE items SET price = price + 1 WHERE id < 3`)
		res := conn.SendBatch(ctx, b)
		for i := range 5 {
			var name string
			if err := res.QueryRow().Scan(&name); err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("item-%d-ü", i); name != want {
				t.Errorf("batch row %d = %q; want %q", i, name, want)
			}
		}
		tag, err := res.Exec()
		if err != nil {
			t.Fatal(err)
		}
		if tag.RowsAffected() != 3 {
			t.Errorf("UPDATE affected %d rows; want 3", tag.RowsAffected())
		}
		if err := res.Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("pipeline", func(t *testing.T) {
		pc := conn.PgConn()
		p := pc.StartPipeline(ctx)
		p.SendQueryParams(`SELECT $1::int * 2`, [][]byte{[]byte("21")}, nil, nil, nil)
		p.SendQueryParams(`SELECT 1/0`, nil, nil, nil, nil)
		p.SendPipelineSync()
		p.SendQueryParams(`SELECT 'after'`, nil, nil, nil, nil)
		p.SendPipelineSync()
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		var results []string
		for {
			r, err := p.GetResults()
			if err != nil {
				results = append(results, "err:"+pgCode(err))
				continue
			}
			switch r := r.(type) {
			case *pgconn.ResultReader:
				res := r.Read()
				if res.Err != nil {
					results = append(results, "err:"+pgCode(res.Err))
				} else {
					results = append(results, string(res.Rows[0][0]))
				}
			case *pgconn.PipelineSync:
				results = append(results, "sync")
			case nil:
				goto done
			}
		}
	done:
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		want := "42 err:22012 sync after sync"
		if got := strings.Join(results, " "); got != want {
			t.Errorf("pipeline results %q; want %q", got, want)
		}
	})

	t.Run("copy_from", func(t *testing.T) {
		rows := make([][]any, 5000)
		for i := range rows {
			rows[i] = []any{1000 + i, fmt.Sprintf("copied %d", i), []string{"c"}, "1.5", time.Now()}
		}
		n, err := conn.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id", "name", "tags", "price", "at"}, pgx.CopyFromRows(rows))
		if err != nil {
			t.Fatal(err)
		}
		var count int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM items WHERE id >= 1000`).Scan(&count); err != nil {
			t.Fatal(err)
		}
		if n != 5000 || count != 5000 {
			t.Errorf("CopyFrom copied %d, table has %d; want 5000", n, count)
		}
	})

	t.Run("listen_notify", func(t *testing.T) {
		other := connect(t, sc.URL("app", "", "app"))
		if _, err := conn.Exec(ctx, `LISTEN sqlcache_events`); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Exec(ctx, `SELECT pg_notify('sqlcache_events', 'hello ü')`); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			t.Fatal(err)
		}
		if n.Channel != "sqlcache_events" || n.Payload != "hello ü" {
			t.Errorf("notification %q %q; want sqlcache_events \"hello ü\"", n.Channel, n.Payload)
		}
	})

	t.Run("cancel_by_context", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := conn.Exec(cctx, `SELECT pg_sleep(30)`)
		if err == nil {
			t.Fatal("pg_sleep(30) returned no error after its context was cancelled")
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("cancelled query took %v", time.Since(start))
		}
		// pgx closes the connection after a context cancellation; a new
		// session must work.
		c2 := connect(t, sc.URL("app", "", "app"))
		var one int
		if err := c2.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
			t.Errorf("query after cancel: %v %d", err, one)
		}
	})
}

// pgCode returns err's SQLSTATE, its text if it has none, or "" for nil.
func pgCode(err error) string {
	if err == nil {
		return ""
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return err.Error()
}

// TestPsql drives the proxy with psql: the simple protocol, a
// multi-statement string and \copy in both directions.
func TestPsql(t *testing.T) {
	psql := LookBinary(t, "psql", "postgresql-client")
	_, sc := startPair(t)
	url := sc.URL("app", "", "app")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(psql, append([]string{url, "-X", "-v", "ON_ERROR_STOP=1", "-At"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql %q: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}

	run("-c", `CREATE TABLE notes (id int, body text)`)
	if got := run("-c", `INSERT INTO notes VALUES (1, 'one'); INSERT INTO notes VALUES (2, 'twö'); SELECT count(*) FROM notes`); got != "INSERT 0 1\nINSERT 0 1\n2" {
		t.Errorf("multi-statement string returned %q; want two INSERTs and 2", got)
	}
	in := filepath.Join(t.TempDir(), "in.csv")
	var sb strings.Builder
	for i := 3; i <= 1000; i++ {
		fmt.Fprintf(&sb, "%d,line %d\n", i, i)
	}
	if err := os.WriteFile(in, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run("-c", `\copy notes FROM '`+in+`' WITH (FORMAT csv)`)
	out := filepath.Join(t.TempDir(), "out.csv")
	run("-c", `\copy (SELECT id, body FROM notes ORDER BY id) TO '`+out+`' WITH (FORMAT csv)`)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 1000 || lines[1] != "2,twö" || lines[999] != "1000,line 1000" {
		t.Errorf("\\copy out gave %d lines (%q … %q); want 1000", len(lines), lines[:2], lines[len(lines)-1])
	}
}

// TestPgbench initialises pgbench's tables through the proxy and runs the
// default TPC-B-like workload for 10 s with 8 clients.
func TestPgbench(t *testing.T) {
	pgbench := LookBinary(t, "pgbench", "postgresql-client")
	pg, sc := startPair(t)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(pgbench, args...)
		cmd.Env = append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strings.Split(sc.Addr, ":")[1],
			"PGUSER=postgres", "PGDATABASE=postgres", "PGSSLMODE=disable")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("-i", "-s", "2", "-q")
	out := run("-c", "8", "-j", "2", "-T", "10", "-n")
	t.Logf("pgbench through sqlcache:\n%s", out)
	m := regexp.MustCompile(`number of failed transactions: (\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] != "0" {
		t.Errorf("pgbench reported failed transactions: %q", m)
	}
	m = regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no transaction count in pgbench output")
	}
	n, _ := strconv.Atoi(m[1])
	var history int
	if err := pg.Conn(t).QueryRow(t.Context(), `SELECT count(*) FROM pgbench_history`).Scan(&history); err != nil {
		t.Fatal(err)
	}
	// Every committed transaction inserted one history row, straight on
	// the server: nothing was lost or invented on the way.
	if n == 0 || history != n {
		t.Errorf("pgbench processed %d transactions; pgbench_history has %d rows", n, history)
	}
}
