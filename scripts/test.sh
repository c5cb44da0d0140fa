#!/usr/bin/env bash
# Fresh machine -> .venv -> lint and the whole test suite (CPU, offline; GeoBench tests read ../shared if present).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/python -m pytest -q -n 2 --dist loadfile --durations=25 "$@"
