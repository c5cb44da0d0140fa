#!/usr/bin/env bash
# The GPU check (issue 9): bash benchmarks/gpu_check.sh [OUT.json] [--smol DIR] [--task-dir DIR]
# benchmarks/gpu_check.py does the work and says what it measures; this runs it in the project's environment
# ($PYTHON, else .venv, else python3). No external commands: it must reach the script's own error message anywhere.
set -euo pipefail
here="${0%/*}"
[[ "$here" != "$0" ]] || here=.
python="${PYTHON:-$here/../.venv/bin/python}"
[[ -x "$python" ]] || python=python3
exec "$python" "$here/gpu_check.py" "$@"
