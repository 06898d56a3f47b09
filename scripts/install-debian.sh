#!/usr/bin/env bash
# Install the Debian packages the tests drive, when their commands are missing:
#
#   scripts/install-debian.sh COMMAND=PACKAGE [COMMAND=PACKAGE ...]
#
# e.g. `skopeo=skopeo faketime=faketime mkfs.ext4=e2fsprogs`. Idempotent: a command
# already on PATH costs one lookup. Runs as root in CI; elsewhere it uses sudo when
# there is one, or names the packages to install and goes on (the tests that need
# them skip on a developer machine, and fail under CI=true).
set -euo pipefail
missing=()
for pair in "$@"; do
    cmd=${pair%%=*} pkg=${pair#*=}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo"
    else
        echo "install-debian.sh: not root; to run every test:" \
             "apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# Without `apt-get update` first (fast); update only if the package lists are stale.
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for pair in "$@"; do
    cmd=${pair%%=*}
    command -v "$cmd" >/dev/null 2>&1 || { echo "install-debian.sh: $cmd still missing" >&2; exit 1; }
done
