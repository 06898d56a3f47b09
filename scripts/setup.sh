#!/usr/bin/env bash
# Set up everything a newcomer needs on a fresh machine: a virtualenv in .venv with
# the package and all its extras. Safe to run again; it only adds what is missing.
#   SENTENIALX_EXTRAS  extras to install (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${SENTENIALX_EXTRAS:-all}

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.sentenialx-setup
want="$(sha256sum pyproject.toml | cut -c1-16) $EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
"$VPY" -m pip install --quiet --upgrade pip
case ",$EXTRAS," in
    *,all,*|*,torch,*|*,train,*)
        # The CPU build of torch lies on this machine's disk; asking for it by exact
        # version keeps pip from fetching a multi-GB CUDA build.
        "$VPY" -m pip install --quiet "torch==2.13.0"
        ;;
esac
"$VPY" -m pip install --quiet -e ".[${EXTRAS}]"
echo "$want" > "$stamp"
echo "setup: .venv ready with extras [$EXTRAS]" >&2
