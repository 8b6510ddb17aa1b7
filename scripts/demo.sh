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
run "CREATE TABLE demo_scores (player text PRIMARY KEY, score int)"
run "INSERT INTO demo_scores VALUES ('ada', 42), ('grace', 57), ('linus', 31)"
run "SELECT player, score FROM demo_scores ORDER BY score DESC LIMIT 10"
run "SELECT player, score FROM demo_scores ORDER BY score DESC LIMIT 10"
run "SHOW server_version"
echo "==> what sqlcache counted (http://127.0.0.1:$admin/metrics)"
curl -fsS "http://127.0.0.1:$admin/metrics" | grep -E '^sqlcache_(client_connections_total|queries_total|relayed_bytes_total)'

echo
echo "Connect yourself: psql '$url'"
if [ "${DEMO_WAIT:-0}" = 1 ]; then
	echo "Running until Ctrl-C."
	wait "$pid"
else
	echo "(DEMO_WAIT=1 make demo keeps it running.) Cleaning up."
fi
