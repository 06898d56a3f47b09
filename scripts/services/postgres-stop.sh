#!/usr/bin/env bash
# Stop the throwaway PostgreSQL cluster that postgres-start.sh started in DIR.
#
#   scripts/services/postgres-stop.sh DIR
#
# Only that cluster: pg_ctl -D DIR/pg addresses exactly the server owning that data
# folder. Safe to run when it is not running.
set -euo pipefail

die() { echo "postgres-stop: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DIR"
[ -d "$1" ] || { echo "postgres-stop: no $1, nothing to stop" >&2; exit 0; }
DIR=$(cd "$1" && pwd -P)
PGDATA_DIR=$DIR/pg

if [ ! -f "$PGDATA_DIR/postmaster.pid" ]; then
    echo "postgres-stop: no server running in $PGDATA_DIR" >&2
    rm -f "$DIR/pg.pid" "$DIR/postgres.env"
    exit 0
fi
BINDIR=$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[ -x "$BINDIR/pg_ctl" ] || die "pg_ctl not found under /usr/lib/postgresql/*/bin"

# pg_ctl refuses to run as root. -m fast: roll back open transactions, disconnect
# clients, then shut down cleanly; -w waits until the server has exited.
if ! runuser -u postgres -- "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >&2; then
    # If the server is already gone (stale postmaster.pid), that is not an error.
    if runuser -u postgres -- "$BINDIR/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
        die "PostgreSQL in $PGDATA_DIR did not stop within 60 s"
    fi
fi
# The env file would now point at nothing.
rm -f "$DIR/pg.pid" "$DIR/postgres.env"
echo "postgres-stop: stopped $PGDATA_DIR" >&2
