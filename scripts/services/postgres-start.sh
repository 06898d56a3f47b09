#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for tests, on 127.0.0.1 and a free port.
#
#   scripts/services/postgres-start.sh DIR
#
# Everything lives in DIR: the cluster (DIR/pg), its socket dir (DIR/pgrun), its log
# (DIR/pg.log), the postmaster PID (DIR/pg.pid) and DIR/postgres.env, which exports
#   SENTENIALX_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
# The cluster trusts every local connection (initdb -A trust): for tests only.
# Idempotent: if the cluster in DIR is already running, nothing is done.
# SENTENIALX_PG_PORT=PORT starts it on that port (to restart a stopped cluster where its
# clients expect it, as the fault tests do); by default any free port.
# Stop it with scripts/services/postgres-stop.sh DIR.
set -euo pipefail

die() { echo "postgres-start: $*" >&2; exit 1; }
start=$EPOCHREALTIME   # for the "up in N s" line

[ $# -eq 1 ] || die "usage: $0 DIR"
mkdir -p "$1"
DIR=$(cd "$1" && pwd -P)   # absolute: the path ends up in the server's command line
PGDATA_DIR=$DIR/pg
SOCK_DIR=$DIR/pgrun
LOG=$DIR/pg.log
PID_FILE=$DIR/pg.pid
ENV_FILE=$DIR/postgres.env

# --- Binaries -------------------------------------------------------------------------
# The server binaries are not on PATH; Debian puts them under /usr/lib/postgresql/N/bin.
find_bindir() {
    local d
    d=$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}
if ! BINDIR=$(find_bindir); then
    echo "postgres-start: installing postgresql with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Without a policy-rc.d the package's postinst may start Debian's own "main"
    # cluster on port 5432, a daemon nobody here would stop: forbid service starts
    # for the duration of the install (only if the machine has no policy of its own).
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    # Try without `apt-get update` first (fast); update only if the lists are stale.
    if ! apt-get install -y -q postgresql >&2; then
        apt-get update -q >&2
        apt-get install -y -q postgresql >&2
    fi
    BINDIR=$(find_bindir) || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
fi

# The server refuses to run as root; everything server-side runs as `postgres`, which
# only root can switch to.
[ "$(id -u)" -eq 0 ] || die "run as root (the server itself then runs as user postgres)"
id postgres >/dev/null 2>&1 || die "no 'postgres' user (it comes with the postgresql package)"
as_pg() { runuser -u postgres -- "$@"; }

# --- Already running? -----------------------------------------------------------------
# Running from DIR means: the recorded PID is alive and its command line is a postgres
# server on DIR/pg (kill -0 alone is fooled by zombies and by reused PIDs).
running_pid() {
    local pid
    [ -s "$PID_FILE" ] || return 1
    pid=$(head -n 1 "$PID_FILE")
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "postgres -D $PGDATA_DIR " || return 1
    echo "$pid"
}
if pid=$(running_pid) && [ -s "$ENV_FILE" ]; then
    echo "postgres-start: already running from $DIR (pid $pid)" >&2
    echo "$ENV_FILE"
    exit 0
fi

# --- Cluster --------------------------------------------------------------------------
# `postgres` must be able to reach DIR: a `mktemp -d` folder is mode 0700.
chmod a+rx "$DIR"
as_pg test -x "$DIR" || die "user postgres cannot traverse $DIR (a parent folder is not searchable by others)"

mkdir -p "$SOCK_DIR"
chown postgres: "$SOCK_DIR"
if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
    rm -rf "$PGDATA_DIR"
    install -d -o postgres -g postgres -m 700 "$PGDATA_DIR"
    # trust auth + superuser `postgres`: the URL carries no password.
    as_pg "$BINDIR/initdb" -D "$PGDATA_DIR" -A trust -U postgres -E UTF8 --no-sync \
        >"$DIR/initdb.log" 2>&1 || die "initdb failed, see $DIR/initdb.log"
fi

# --- Start ----------------------------------------------------------------------------
# A free port: ask the kernel for one, then release it for postgres. (A tiny race with
# other programs is possible; pg_ctl then fails loudly rather than silently.)
# Debian's own python3 when there is one, rather than whatever `python3` on PATH is
# (a pyenv shim, a venv, ...).
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
PORT=${SENTENIALX_PG_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

# The log must be writable by postgres.
touch "$LOG" && chown postgres: "$LOG"

# -w waits until the server accepts connections. fsync=off: throwaway data, faster tests.
# pg_ctl itself detaches the server (setsid, stdin from /dev/null, output to the log),
# so it holds none of the caller's pipes open.
if ! runuser -u postgres -- "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$LOG" -w -t 120 \
        -o "-p $PORT -k $SOCK_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start \
        </dev/null >"$DIR/pg_ctl.log" 2>&1; then
    tail -n 20 "$LOG" >&2 || true
    # A server that is up but slow must not be left behind.
    as_pg "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
    die "PostgreSQL did not start within 120 s (see $LOG)"
fi
# First line of postmaster.pid is the postmaster's PID.
head -n 1 "$PGDATA_DIR/postmaster.pid" > "$PID_FILE"
running_pid >/dev/null || die "postmaster.pid does not name a running server on $PGDATA_DIR"

cat > "$ENV_FILE" <<EOF
# PostgreSQL test cluster in $PGDATA_DIR (stop: scripts/services/postgres-stop.sh $DIR)
export SENTENIALX_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres
EOF
printf 'postgres-start: up on 127.0.0.1:%s (pid %s) in %.1f s\n' \
    "$PORT" "$(cat "$PID_FILE")" "$(awk "BEGIN{print $EPOCHREALTIME - $start}")" >&2
echo "$ENV_FILE"
