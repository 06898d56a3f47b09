#!/usr/bin/env bash
# Set up, start the services the tests need (PostgreSQL, Ceph RGW, Chromium), run the
# whole suite, stop the services. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export SENTENIALX_SERVICES_DIR=${SENTENIALX_SERVICES_DIR:-$(mktemp -d /tmp/sentenialx-services.XXXXXX)}
chmod 755 "$SENTENIALX_SERVICES_DIR"
if [ -x scripts/services/up.sh ]; then
    trap 'scripts/services/down.sh || true' EXIT
    scripts/services/up.sh
    # shellcheck disable=SC1091
    source "$SENTENIALX_SERVICES_DIR/services.env"
fi
set +e
.venv/bin/python -m pytest -q "$@"
rc=$?
set -e
# pytest exit code 5 means no tests were collected: that is a failure here.
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
