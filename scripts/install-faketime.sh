#!/usr/bin/env bash
# Install Debian's faketime (libfaketime) if it is missing: the TUF tests run a client
# with its clock moved past the timestamp's expiry. Idempotent: does nothing when
# `faketime` is on PATH. Runs as root in CI; elsewhere it uses sudo when available.
set -euo pipefail
if command -v faketime >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-faketime.sh: faketime is missing and we are not root;" \
             "run: apt-get install -y --no-install-recommends faketime" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends faketime >/dev/null
faketime -f "+0" true
