#!/usr/bin/env bash
# Fresh machine -> .venv with geo-factory (editable, dev extras) and a CPU-friendly torch (see constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
# The LlamaBoard browser test (tests/test_webui.py) drives the system's Chromium; it skips, saying so, without one.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
