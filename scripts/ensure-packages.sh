#!/usr/bin/env bash
# Makes sure the server and client binaries the tests run are installed.
# As root it installs missing Debian packages with apt-get; otherwise it
# fails naming them. It never lets the tests skip.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

missing=()
pg_bindir >/dev/null 2>&1 || missing+=(postgresql)
for c in psql pgbench; do
	command -v "$c" >/dev/null 2>&1 || { missing+=(postgresql-client); break; }
done
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
	missing+=(postgresql) # creates the postgres OS user the tests run servers as
fi
[ ${#missing[@]} -eq 0 ] && exit 0

pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" != 0 ]; then
	echo "missing Debian packages: $pkgs- install them (apt-get install $pkgs) or run make test as root" >&2
	exit 1
fi
echo "installing missing Debian packages: $pkgs"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $pkgs
