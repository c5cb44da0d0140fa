#!/usr/bin/env bash
# Fresh machine -> .venv -> lint and the whole test suite (CPU, offline; GeoBench tests read ../shared if present).
set -euo pipefail
cd "$(dirname "$0")/.."
# The LlamaBoard browser test (tests/test_webui.py) drives the system's Chromium; it skips, saying so, without one.
# Installed here, as root with apt only, so that setup.sh and the demo never install a browser; apt runs while
# setup.sh installs the Python packages, and the tests start once both are done.
browser=
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) &
  browser=$!
fi
bash scripts/setup.sh
[ -z "$browser" ] || wait "$browser"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
# Two workers, a test file at a time, the longest files first (tests/conftest.py orders them)
.venv/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25 "$@"
