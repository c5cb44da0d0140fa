#!/usr/bin/env bash
# Fresh machine -> .venv with geo-factory (editable, dev extras) and a CPU-friendly torch (see constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
