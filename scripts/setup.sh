#!/usr/bin/env bash
# Fresh machine -> .venv with geo-factory (editable, dev extras) and a CPU-friendly torch (see constraints.txt).
# Only the virtual environment: the test command (scripts/test.sh) adds the browser its LlamaBoard test drives.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
