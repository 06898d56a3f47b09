#!/usr/bin/env bash
# Install Debian's skopeo (the registry client tests/server/test_oci.py drives) if it is
# missing. Idempotent: does nothing when skopeo is on PATH. Runs as root in CI;
# elsewhere it uses sudo when available.
set -euo pipefail
if command -v skopeo >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-skopeo.sh: skopeo is missing and we are not root;" \
             "run: apt-get install -y --no-install-recommends skopeo" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends skopeo >/dev/null
skopeo --version >&2
