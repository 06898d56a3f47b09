#!/usr/bin/env bash
# Install Debian's chromium (the browser the Playwright tests drive) if it is missing.
# Idempotent: does nothing when /usr/bin/chromium exists. Never downloads a browser
# of its own: Playwright is pointed at /usr/bin/chromium (see tests/server).
# Runs as root in CI; elsewhere it uses sudo when available.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-chromium.sh: /usr/bin/chromium is missing and we are not root;" \
             "run: apt-get install -y --no-install-recommends chromium" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version >&2
