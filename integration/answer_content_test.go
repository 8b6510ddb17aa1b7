package integration

import (
	"testing"
	"time"
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
