#!/usr/bin/env bash
# The main job: set up, then run the end-to-end demo in a fresh hub (SQLite + local files).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/sentenialx demo "$@"
