#!/usr/bin/env bash
# Install what the full-disk tests use to make small filesystems (tests/hub/
# test_full_disk_reads.py): mkfs.ext4 (e2fsprogs) for ext4 with 1 KiB blocks on a loop
# device, and mount/losetup (mount). Idempotent: does nothing when both are present.
# Those tests run as root (CI); elsewhere they skip, so a failed install only warns.
set -euo pipefail
if command -v mkfs.ext4 >/dev/null 2>&1 && command -v losetup >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-fs-tools.sh: mkfs.ext4 or losetup is missing and we are not root;" \
         "the full-disk tests will skip (apt-get install -y e2fsprogs mount)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends e2fsprogs mount >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends e2fsprogs mount >/dev/null
fi
