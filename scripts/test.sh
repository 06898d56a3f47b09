#!/usr/bin/env bash
# Set up, start the services the tests need (PostgreSQL, Ceph RGW, Chromium), run the
# whole suite, stop the services. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Debian's chromium for the browser tests (Playwright drives /usr/bin/chromium).
scripts/install-chromium.sh
# Debian's skopeo (OCI registry tests), faketime (TUF freeze tests: a client clock past
# the timestamp's expiry), mkfs.ext4 and losetup (full-disk tests on small filesystems).
scripts/install-debian.sh skopeo=skopeo faketime=faketime mkfs.ext4=e2fsprogs losetup=mount
export SENTENIALX_SERVICES_DIR=${SENTENIALX_SERVICES_DIR:-$(mktemp -d /tmp/sentenialx-services.XXXXXX)}
mkdir -p "$SENTENIALX_SERVICES_DIR"
chmod 755 "$SENTENIALX_SERVICES_DIR"
trap 'scripts/services/down.sh >/dev/null || echo "test.sh: some services did not stop" >&2' EXIT
scripts/services/up.sh >/dev/null
# shellcheck disable=SC1091
source "$SENTENIALX_SERVICES_DIR/services.env"
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
