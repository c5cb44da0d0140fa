"""Check that a change to the evaluator changed no result: the same ``llamafactory-cli eval`` runs, before and after,
must write the same ``results.json`` and ``predictions.jsonl`` (issue 23's "behaviour unchanged").

    .venv/bin/python scripts/check_eval_unchanged.py run OUT_DIR            # every run below, into OUT_DIR/<name>/
    .venv/bin/python scripts/check_eval_unchanged.py compare DIR_A DIR_B    # PASS/FAIL per run, exit 1 on a difference

The code checked is the ``geo_factory`` this Python imports. For the unmodified code, check a commit out as a git
worktree and put it first: ``PYTHONPATH=/tmp/base/src .venv/bin/python scripts/check_eval_unchanged.py run DIR``
(the ``llamafactory-cli`` and ``geo-factory`` subprocesses inherit it). A run takes about 9 minutes on the 2 CPU cores
while the test suite runs beside it (4 of them SmolLM2's 176 general-benchmark questions), offline: the tiny model is
built into OUT_DIR/models, SmolLM2 comes from geo-factory's cache (built once from the package registry, as the
real-model tests do), the data is read in place from ../shared.

``compare`` ignores only what differs from run to run by design: keys naming a time (``finished_at``, ``*time*``,
``*seconds*``) and the work folder inside paths (each side's DIR reads ``<work>``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
K2 = SHARED / "geobench" / "k2"
JIUZHOU = SHARED / "geobench" / "jiuzhou"
GENERAL = SHARED / "general_eval"
BIN = Path(sys.executable).parent  # not resolved: the virtual environment's bin, where llamafactory-cli is
MODELS = {  # the model's folder under OUT_DIR/models, and its template
    "tiny": ("tiny-mistral", "mistral"),
    "smol": ("smollm2-135m-instruct", "smollm2"),
}
RUNS = {  # run name (without the model) -> yaml keys; max_samples keeps each run small (it is per subject for MMLU & co)
    "k2_default": {"task": "geobench", "task_dir": str(K2), "max_samples": 3},
    "jiuzhou_default": {"task": "geobench", "task_dir": str(JIUZHOU), "max_samples": 3},
    "k2_style": {
        "task": "geobench",
        "task_dir": str(K2),
        "prompt_style": "k2",
        "k2_samples": str(K2 / "multiple_choice_samples.txt"),
        "k2_samples_wa": str(K2 / "multiple_choice_samples_wa.txt"),
        "max_samples": 2,
    },
    "general": {
        "task": "mmlu_test,cmmlu_test,ceval_validation",
        "task_dir": str(GENERAL),
        "n_shot": 2,
        "max_samples": 1,
    },
    "jiuzhou_suite": {
        "task": "jiuzhou",
        "task_dir": str(GENERAL),
        "geobench_task_dir": str(K2),
        "n_shot": 1,
        "max_samples": 1,
    },
    "generate": {
        "task": "geobench",
        "task_dir": str(JIUZHOU),
        "eval_mode": "generate",
        "n_shot": 2,
        "max_new_tokens": 8,
        "max_samples": 2,
    },
}
SMOL_CHANGES = {  # SmolLM2 takes minutes for the 176 subjects: the general benchmarks 0-shot (exemplars are checked on
    # the tiny model), the jiuzhou suite (the same families together) on the tiny model only
    "general": {"n_shot": 0},
    "jiuzhou_suite": None,
}
COMMON = {"seed": 42, "batch_size": 8, "trust_remote_code": False}
FILES = ("results.json", "predictions.jsonl")
TIMING = re.compile(r"time|seconds|_at$")


def _env(out: Path) -> dict[str, str]:
    """Offline and single-threaded (as tests/conftest.py's ``cli_env``), caches inside OUT_DIR."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEO_FACTORY_", "FORCE_TORCHRUN", "NPROC_"))}
    if "GEO_FACTORY_CACHE" in os.environ:  # where SmolLM2 is kept
        env["GEO_FACTORY_CACHE"] = os.environ["GEO_FACTORY_CACHE"]
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        HF_HOME=str(out / "hf_home"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        WANDB_DISABLED="true",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
    )
    return env


def _smol_model() -> Path:
    """SmolLM2 in geo-factory's cache, under the lock the test suite's fixture takes."""
    from filelock import FileLock

    from geo_factory.smol import build_smol_model, cache_dir

    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(cache / "smollm2-135m-instruct.lock"):
        return build_smol_model(cache / "smollm2-135m-instruct")


def _runs():
    """(name, yaml keys) of every run."""
    for model, (folder, template) in MODELS.items():
        for run_name, keys in RUNS.items():
            change = SMOL_CHANGES.get(run_name, {}) if model == "smol" else {}
            if change is not None:
                config = {"model_name_or_path": f"models/{folder}", "template": template, **COMMON, **keys, **change}
                yield f"{model}_{run_name}", config


def run(out: Path) -> None:
    import yaml

    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} is not empty: remove it or name another folder.")
    env = _env(out)
    started = time.monotonic()
    models = out / "models"
    models.mkdir(parents=True)
    where = "import geo_factory, pathlib; print('geo_factory from', pathlib.Path(geo_factory.__file__).parent)"
    subprocess.run([sys.executable, "-c", where], cwd=out, env=env, check=True)  # as the subprocesses below see it
    subprocess.run([BIN / "geo-factory", "tiny-model", models / MODELS["tiny"][0]], env=env, check=True)
    (models / MODELS["smol"][0]).symlink_to(_smol_model())
    for name, config in _runs():
        (out / f"{name}.yaml").write_text(yaml.safe_dump({**config, "save_dir": name}, sort_keys=False))
        t0 = time.monotonic()
        proc = subprocess.run(
            [BIN / "llamafactory-cli", "eval", f"{name}.yaml"], cwd=out, env=env, capture_output=True, text=True
        )
        (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            sys.exit(f"{name}: llamafactory-cli eval exited {proc.returncode}; see {out / f'{name}.log'}")
        print(f"{name}: {time.monotonic() - t0:.0f} s", flush=True)
    print(f"all runs: {time.monotonic() - started:.0f} s")


def _normal(value, work: str):
    """``value`` with timing keys dropped and the work folder written ``<work>``."""
    if isinstance(value, dict):
        return {k: _normal(v, work) for k, v in value.items() if not TIMING.search(k)}
    if isinstance(value, list):
        return [_normal(v, work) for v in value]
    return value.replace(work, "<work>") if isinstance(value, str) else value


def _read(path: Path, work: str):
    if path.suffix == ".jsonl":
        return [_normal(json.loads(line), work) for line in path.read_text(encoding="utf-8").splitlines()]
    return _normal(json.loads(path.read_text(encoding="utf-8")), work)


def _differences(a, b, where: str = ""):
    """Where ``a`` and ``b`` differ, as 'path: a != b' lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if key not in a or key not in b:
                yield f"{where}.{key}: {'only in B' if key not in a else 'only in A'}"
            else:
                yield from _differences(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _differences(x, y, f"{where}[{i}]")
    elif a != b or type(a) is not type(b):
        yield f"{where or '.'}: {json.dumps(a, ensure_ascii=False)[:200]} != {json.dumps(b, ensure_ascii=False)[:200]}"


def compare(a: Path, b: Path) -> bool:
    same = True
    for name, _ in _runs():
        found = []
        for file in FILES:
            paths = [side / name / file for side in (a, b)]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                found.append(f"{file}: missing {', '.join(missing)}")
                continue
            left, right = (_read(p, str(side.resolve())) for p, side in zip(paths, (a, b)))
            found += [f"{file} {line}" for _, line in zip(range(5), _differences(left, right))]
        print(f"{'FAIL' if found else 'PASS'} {name}", *(f"    {line}" for line in found), sep="\n")
        same = same and not found
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run").add_argument("out", type=Path)
    pair = commands.add_parser("compare")
    pair.add_argument("a", type=Path)
    pair.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out.resolve())
    elif not compare(args.a, args.b):
        sys.exit(1)


if __name__ == "__main__":
    main()
