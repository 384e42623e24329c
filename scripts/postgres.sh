#!/usr/bin/env bash
# A throw-away PostgreSQL server for tests, on a Unix socket only (no TCP), trust auth.
#
#   scripts/postgres.sh start DIR PORT   # initdb DIR/data if needed, start; prints the conninfo
#   scripts/postgres.sh createdb DIR PORT NAME  # create database NAME if missing (e.g. one for SPIRE's
#                                        # own datastore beside one for the attestation results)
#   scripts/postgres.sh stop DIR         # fast shutdown
#   scripts/postgres.sh status DIR
#
# DIR holds the data (DIR/data), the log (DIR/server.log) and the socket (DIR/.s.PGSQL.PORT); PORT only
# names the socket. The server refuses to run as root: as root, this runs it as the `postgres` user
# (Debian's package creates it) and hands DIR to that user, so DIR's parents must be traversable by it
# (a folder under /tmp is). PG_BIN overrides the server binaries folder (default: the newest
# /usr/lib/postgresql/*/bin, where Debian puts initdb and pg_ctl, off PATH).
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/pg_ctl" ] || die "no PostgreSQL server binaries (set PG_BIN; Debian: apt-get install postgresql)"

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start DIR PORT | createdb DIR PORT NAME | stop DIR | status DIR"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)

case "$cmd" in
start)
    port=${3:-}
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "PORT must be 1..65535, got '${port}'"
    sock="$dir/.s.PGSQL.$port"
    [ "${#sock}" -le 107 ] || die "socket path $sock is longer than 107 bytes; use a shorter DIR"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' user"
        chown postgres: "$dir"
    fi
    chmod 700 "$dir"
    as_pg test -w "$dir" || die "$dir is not writable by the server user (are its parents traversable?)"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=''" start >/dev/null \
        || { tail -n 20 "$dir/server.log" >&2 || true; die "pg_ctl start failed"; }
    echo "host=$dir port=$port user=postgres dbname=postgres"
    ;;
createdb)
    port=${3:-}
    name=${4:-}
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '${port}'"
    # A plain identifier: it is spliced into SQL below.
    [[ "$name" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "NAME must match [a-z_][a-z0-9_]*, got '${name}'"
    exists=$(as_pg "$PG_BIN/psql" -h "$dir" -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$name'") || die "cannot reach the server in $dir on port $port"
    if [ "$exists" != 1 ]; then
        as_pg "$PG_BIN/createdb" -h "$dir" -p "$port" -U postgres "$name" || die "createdb $name failed"
    fi
    echo "host=$dir port=$port user=postgres dbname=$name"
    ;;
stop)
    [ -f "$dir/data/PG_VERSION" ] || die "$dir/data is not a PostgreSQL data folder"
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    ;;
status)
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" status
    ;;
*)
    die "unknown command '$cmd' (start, createdb, stop, status)"
    ;;
esac
