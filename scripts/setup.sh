#!/usr/bin/env bash
# Fresh machine -> .venv with geo-factory (editable, dev extras) and a CPU-friendly torch (see constraints.txt).
# Only the virtual environment: the test command (scripts/test.sh) adds the browser its LlamaBoard test drives.
# The packages go in with uv, installed into .venv from the package registry: the same versions pip resolves,
# downloaded and unpacked in parallel (measured on 2 cores from empty caches: 28 s against pip's 108 s, most of it
# torch's CUDA wheels). uv reads no pip configuration: where it cannot be installed or cannot reach the registry,
# pip does it all. uv compiles the bytecode as it installs (pip does so by default): this machine sets
# PYTHONDONTWRITEBYTECODE=1, and without .pyc files every process compiled torch and transformers again (a CLI
# start took 9.9 s instead of 4.4 s, and the test suite about twice as long: 25 min against 14 min).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q uv || true
if ! { [ -x .venv/bin/uv ] &&
  .venv/bin/uv pip install -q --python .venv/bin/python --upgrade pip && # geo-factory smol-model downloads with pip
  .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python -c constraints.txt -e ".[dev]"; }; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
fi
