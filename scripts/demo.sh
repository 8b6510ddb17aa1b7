#!/usr/bin/env bash
# make demo: a throwaway PostgreSQL, sqlcache in front of it, a few psql
# queries through it. Everything lives in a temp dir removed on exit.
# DEMO_WAIT=1 keeps it running until Ctrl-C so you can connect yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v psql >/dev/null || { echo "psql not found: install the Debian package postgresql-client" >&2; exit 1; }
bin=${SQLCACHE_BIN:-bin/sqlcache}
[ -x "$bin" ] || { echo "$bin not built: run make build" >&2; exit 1; }

tmp=$(mktemp -d /tmp/sqlcache-demo.XXXXXX)
chmod 755 "$tmp"
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	stop_postgres "$tmp"
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

pgport=$(free_port)
port=$(free_port)
admin=$(free_port)
echo "==> starting a throwaway PostgreSQL on 127.0.0.1:$pgport"
start_postgres "$tmp/pg" "$pgport"

cat >"$tmp/sqlcache.yaml" <<CONF
postgres:
  listen: "127.0.0.1:$port"
  backend: "127.0.0.1:$pgport"
  service_dsn: "postgresql://postgres@127.0.0.1:$pgport/postgres?sslmode=disable"
  backend_tls: {mode: disable}
admin:
  listen: "127.0.0.1:$admin"
log:
  level: info
CONF
echo "==> starting sqlcache on 127.0.0.1:$port (admin http://127.0.0.1:$admin)"
"$bin" serve --config "$tmp/sqlcache.yaml" >"$tmp/sqlcache.log" 2>&1 &
pid=$!
wait_port "$port" 20 || { cat "$tmp/sqlcache.log"; exit 1; }

url="postgresql://postgres@127.0.0.1:$port/postgres?sslmode=disable"
run() { echo "--> $1"; psql "$url" -X -v ON_ERROR_STOP=1 -c "$1"; }
echo "==> queries through sqlcache ($url)"
run "CREATE TABLE demo_scores AS SELECT 'player' || g AS player, ((g::bigint * 7919) % 100000)::int AS score FROM generate_series(1, 300000) g"
run "ALTER TABLE demo_scores ADD PRIMARY KEY (player)"
leaderboard="SELECT player, score FROM demo_scores ORDER BY score DESC, player LIMIT 3"
# Loading 300,000 rows is a large transaction for the change stream to
# decode; until it has, sqlcache serves this database from PostgreSQL.
echo "==> waiting for the change stream to catch up with the load"
for _ in $(seq 1 150); do
	lag=$(curl -fsS "http://127.0.0.1:$admin/metrics" | awk '/^sqlcache_stream_lag_seconds/ {print $2}')
	awk -v l="${lag:-inf}" 'BEGIN { exit !(l + 0 < 0.5) }' && break
	sleep 0.1
done
echo "==> the same leaderboard query three times in one session: the first goes to PostgreSQL, the others come from the cache"
psql "$url" -X -v ON_ERROR_STOP=1 -c '\timing on' -c "$leaderboard" -c "$leaderboard" -c "$leaderboard" | grep -E 'Time|player[0-9]' | head -n 12
echo "==> a write through sqlcache invalidates the cached answer at once"
run "UPDATE demo_scores SET score = 1000000 WHERE player = 'player1'"
run "$leaderboard"
echo "==> a write straight to PostgreSQL, behind sqlcache's back, reaches it through the change stream"
direct="postgresql://postgres@127.0.0.1:$pgport/postgres?sslmode=disable"
psql "$direct" -X -q -v ON_ERROR_STOP=1 -c "UPDATE demo_scores SET score = 2000000 WHERE player = 'player2'"
sleep 0.5
run "$leaderboard"
echo "==> why it was cached (sqlcache explain)"
"$bin" explain --config "$tmp/sqlcache.yaml" "$leaderboard"
"$bin" explain --config "$tmp/sqlcache.yaml" "SELECT now()"
echo "==> what sqlcache counted (http://127.0.0.1:$admin/metrics)"
curl -fsS "http://127.0.0.1:$admin/metrics" | grep -E '^sqlcache_(cache_hits_total|cache_misses_total|cache_entries|cache_invalidations_total|queries_total|stream_connected|stream_lag_seconds)'

echo
echo "Connect yourself: psql '$url'"
if [ "${DEMO_WAIT:-0}" = 1 ]; then
	echo "Running until Ctrl-C."
	wait "$pid"
else
	echo "(DEMO_WAIT=1 make demo keeps it running.) Cleaning up."
fi
