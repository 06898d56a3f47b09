#!/usr/bin/env bash
# Start every service the tests use, on loopback: a throwaway PostgreSQL cluster and a
# single-node Ceph cluster with the RADOS Gateway (S3). Both live in one folder,
#   DIR=${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}
# and their variables are gathered in DIR/services.env; the last line printed is the
# command to load them:
#   scripts/services/up.sh && source "${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}/services.env"
# Idempotent: services already running from DIR are left as they are.
# Stop everything with scripts/services/down.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
DIR=${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)

# Each start script prints its env file's path on stdout and progress on stderr.
# A failing start has already stopped what it started itself; what was started
# before it keeps running until down.sh.
pg_env=$("$HERE/postgres-start.sh" "$DIR") ||
    { echo "up: PostgreSQL did not start; see $DIR/pg.log" >&2; exit 1; }
s3_env=$("$HERE/ceph-start.sh" "$DIR") ||
    { echo "up: Ceph RGW did not start; see $DIR/ceph/log/ (stop the rest: $HERE/down.sh)" >&2; exit 1; }

# Write to a temporary name and rename, so a reader never sees half a file.
cat "$pg_env" "$s3_env" > "$DIR/services.env.tmp"
mv "$DIR/services.env.tmp" "$DIR/services.env"
echo "source $DIR/services.env"
