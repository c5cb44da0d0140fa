#!/usr/bin/env bash
# lm-evaluation-harness in its own virtual environment, so that it cannot disturb LLaMA-Factory's pins in .venv.
#
#   bash scripts/lm_eval_env.sh [TARGET]     (default TARGET: .venv-lm-eval; LM_EVAL_VERSION=0.4.13)
#   TARGET/bin/python -m lm_eval --model hf --model_args pretrained=MODEL --include_path DIR --tasks geobench
#
# TARGET sees .venv's packages (torch, transformers, datasets, ...) through a .pth line placed after its own
# site-packages, so pip downloads only what lm-eval adds (evaluate, sacrebleu, scikit-learn, ...); a package that
# lm-eval needs in another version goes into TARGET, where it shadows .venv's copy without touching it. Where .venv
# holds lm-eval already (its `dev` extra), pip finds it there and writes no TARGET/bin/lm_eval: `python -m lm_eval`
# runs it either way.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-.venv-lm-eval}"
version="${LM_EVAL_VERSION:-0.4.13}"
main_python=.venv/bin/python
[ -x "$main_python" ] || { echo "lm_eval_env.sh: $main_python is missing; run scripts/setup.sh first" >&2; exit 2; }

main_site="$("$main_python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -rf "$target"
"$main_python" -m venv --without-pip "$target"
site="$("$target/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$main_site" > "$site/zz_geo_factory_main_venv.pth"
"$main_python" -m pip --python "$target/bin/python" install --quiet --disable-pip-version-check "lm-eval==$version"
"$target/bin/python" -c "import lm_eval, torch, transformers; print('lm-eval', '$version', 'with torch', torch.__version__, 'and transformers', transformers.__version__)"
echo "$version" > "$target/lm_eval_version"
