# Shared shell helpers for the demo and bench scripts. Source, don't run.

# pg_bindir prints the directory holding initdb and postgres.
pg_bindir() {
	local d
	if command -v pg_config >/dev/null 2>&1; then
		d=$(pg_config --bindir 2>/dev/null)
		if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then echo "$d"; return; fi
	fi
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
	echo "PostgreSQL server binaries (initdb, postgres) not found: install the Debian package postgresql" >&2
	return 1
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768-), where clients take their ports
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	echo "no free port found" >&2
	return 1
}

# as_pg runs a command as the postgres OS user when we are root (PostgreSQL
# refuses to run as root), else as ourselves.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# wait_port waits up to $2 seconds (default 20) for 127.0.0.1:$1 to accept.
wait_port() {
	local i
	for i in $(seq 1 $(( ${2:-20} * 10 ))); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "nothing listens on 127.0.0.1:$1 after ${2:-20}s" >&2
	return 1
}

# start_postgres DIR PORT initialises and starts a throwaway cluster.
start_postgres() {
	local dir=$1 port=$2 bindir
	bindir=$(pg_bindir) || return 1
	mkdir -p "$dir"
	if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; chmod 755 "$dir"; fi
	as_pg "$bindir/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; return 1; }
	cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = logical
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
	as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 start >/dev/null ||
		{ cat "$dir/postgres.log" >&2; return 1; }
}

# stop_postgres DIR stops a cluster started by start_postgres.
stop_postgres() {
	local bindir
	bindir=$(pg_bindir) || return 0
	[ -f "$1/data/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1
	return 0
}
