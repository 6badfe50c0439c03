#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv (idempotent, fast when nothing changed).
# torch goes first and pinned: an unpinned torch resolves to a multi-GB CUDA build on CPU-only machines.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${ONTHEFLY_TORCH_VERSION:-2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.onthefly-bootstrap
want=$(cat requirements-dev.txt pyproject.toml setup.py onthefly/tracking/_hotpath.c | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  echo "bootstrap: installing torch==$TORCH_VERSION" >&2
  .venv/bin/python -m pip install -q "torch==$TORCH_VERSION"
fi
echo "bootstrap: installing pinned dependencies" >&2
.venv/bin/python -m pip install -q -r requirements-dev.txt
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
