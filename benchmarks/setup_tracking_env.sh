#!/usr/bin/env bash
# Create benchmarks/.venv-tracking: the tracking benchmark's own environment, with the competitors
# (ML-Dash 0.11, TensorBoard) installed next to OnTheFly, so the project's .venv never sees them.
#
#     bash benchmarks/setup_tracking_env.sh && benchmarks/.venv-tracking/bin/python benchmarks/bench_tracking.py
#
# Idempotent: re-running only installs what is missing. torch goes first and pinned: an unpinned torch
# resolves to a multi-GB CUDA build on CPU-only machines.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${ONTHEFLY_TORCH_VERSION:-2.13.0}
ENV=benchmarks/.venv-tracking
if [ ! -x "$ENV/bin/python" ]; then
  "$PY" -m venv "$ENV"
fi
pip() { "$ENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip >/dev/null
if ! "$ENV/bin/python" -c 'import torch' 2>/dev/null; then
  echo "setup_tracking_env: installing torch==$TORCH_VERSION" >&2
  pip install -q "torch==$TORCH_VERSION"
fi
echo "setup_tracking_env: installing the project's pinned requirements, OnTheFly (editable), ml-dash 0.11, tensorboard" >&2
pip install -q -r requirements-dev.txt
pip install -q --no-deps --no-build-isolation -e .
pip install -q "ml-dash==0.11.*" tensorboard
"$ENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("torch", "pyarrow", "onthefly", "ml-dash", "tensorboard"):
    try:
        print(f"  {name:12s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name:12s} NOT INSTALLED")
PY
