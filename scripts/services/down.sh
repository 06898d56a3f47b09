#!/usr/bin/env bash
# Stop what up.sh started in ${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}:
# the Ceph daemons (radosgw, OSD, monitor), then PostgreSQL. Both are tried even if
# one fails; the exit status says whether everything stopped. The folder is kept
# (logs, PostgreSQL's data); delete it yourself if you like.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
DIR=${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}

rc=0
"$HERE/ceph-stop.sh" "$DIR" || rc=1
"$HERE/postgres-stop.sh" "$DIR" || rc=1
# Its variables now point at nothing.
rm -f "$DIR/services.env"
exit "$rc"
