package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestAnswerContentIdleSessionTimeout: PostgreSQL ends a session that
// sends nothing for idle_session_timeout (57P05). A client that reads
// every 100 ms is never idle that long, directly; through sqlcache its
// reads are answered from the cache and its backend sees nothing, so
// PostgreSQL must not end the busy session.
func TestAnswerContentIdleSessionTimeout(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE kv (id int PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO kv VALUES (1, 'one')`)
	waitApplied(t, sc)
	ctx := t.Context()
	const q = `SELECT v FROM kv WHERE id = 1`

	busy := func(url string) error {
		conn := connect(t, url)
		if _, err := conn.Exec(ctx, `SET idle_session_timeout = '1s'`); err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			var v string
			if err := conn.QueryRow(ctx, q).Scan(&v); err != nil {
				return err
			}
		}
		return nil
	}
	if err := busy(pg.URL("postgres", "", "postgres")); err != nil {
		t.Fatalf("directly: %v; want a busy session to live, as the test assumes", err)
	}
	hits := metricValue(t, sc, "sqlcache_cache_hits_total")
	err := busy(sc.URL("postgres", "", "postgres"))
	if metricValue(t, sc, "sqlcache_cache_hits_total") == hits {
		t.Fatalf("no read was answered from the cache; the case proves nothing (err %v)", err)
	}
	if err != nil {
		t.Errorf("a session reading every 100 ms through sqlcache was ended: %v (SQLSTATE %s); directly it lives", err, pgCode(err))
	}
}

// TestAnswerContentParseNotice: PostgreSQL's parser sends a NOTICE
// (42622, identifier truncated) at every Parse of a text with an
// identifier longer than 63 bytes. A named statement's later runs, with
// no Parse, are quiet; stored, they would be replayed to a session whose
// unnamed Parse+Bind+Execute gets the NOTICE directly. Once sqlcache has
// seen a notice for a text it stores no answer of it.
func TestAnswerContentParseNotice(t *testing.T) {
	pg, sc := startCache(t, nil)
	pg.Exec(t, `CREATE TABLE pn (id int PRIMARY KEY, v text)`)
	pg.Exec(t, `INSERT INTO pn VALUES (1, 'one')`)
	waitApplied(t, sc)
	q := `SELECT v AS ` + strings.Repeat("a", 70) + ` FROM pn WHERE id = 1`

	// A driver with a statement cache: one Parse, then Bind/Execute runs.
	named, _ := dialRaw(t, sc.Addr, rtParams)
	named.roundTrip(1, &pgproto3.Parse{Name: "s1", Query: q}, &pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{})
	for range 5 {
		named.roundTrip(1, &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	}
	unnamed := func(addr string) string {
		c, _ := dialRaw(t, addr, rtParams)
		return answerFrameTypes(c.roundTrip(1, &pgproto3.Parse{Query: q}, &pgproto3.Bind{},
			&pgproto3.Execute{}, &pgproto3.Sync{}))
	}
	want := unnamed(pg.Addr())
	if !strings.Contains(want, "N") {
		t.Fatalf("directly %s; the test assumes PostgreSQL sends the NOTICE", want)
	}
	for i := range 3 {
		if got := unnamed(sc.Addr); got != want {
			t.Errorf("unnamed Parse+Bind+Execute %d through sqlcache: %s; directly: %s", i, got, want)
		}
	}
}

// answerFrameTypes returns the message types of fs, e.g. "12TDCZ".
func answerFrameTypes(fs []frame) string {
	b := make([]byte, len(fs))
	for i, f := range fs {
		b[i] = f[0]
	}
	return string(b)
}
