"""lm-evaluation-harness tasks through geo-factory (``task: lm_eval:NAME``) against the harness's own Hugging Face
backend (``lm_eval --model hf``), same model, tasks, documents and seeds, run alternately; medians over the repeats.

The tasks are the harness's own MMLU yamls on local data (``benchmarks/bench_mmlu.py`` builds them from
../shared/general_eval/mmlu/mmlu.zip: the first ``--per-subject`` test questions of the first ``--subjects``
subjects, each subject's dev split as its exemplars, first_n): ``bench_mmlu`` (multiple choice, loglikelihood) and
``bench_mmlu_gen`` (the harness's ``mmlu_<subject>_generative``: generate_until, its regex filters, exact_match).
Timed: each whole command (start-up and model load included), peak resident memory of each. Compared per document
(both write the harness's samples files): multiple choice, the chosen option wherever the harness's top-two
log-likelihood margin exceeds 1e-4, and the accuracy; generation, the filtered response and exact_match.

    python benchmarks/bench_lm_eval.py [--kind mc|gen] [--model ~/.cache/geo-factory/smollm2-135m-instruct]
        [--subjects 5] [--per-subject 40] [--n-shot 5] [--repeats 2] [--batch-size 8] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import bench_mmlu


REPO = Path(__file__).resolve().parents[1]
TAG = {"mc": "bench_mmlu", "gen": "bench_mmlu_gen"}


def build_tasks(work: Path) -> tuple[Path, int]:
    """bench_mmlu.py's task folder, plus a generative twin of each subject's task on the same data."""
    bench_mmlu.ARGS = argparse.Namespace(benchmark="mmlu", subjects=ARGS.subjects, harness=ARGS.harness)
    _, tasks, total = bench_mmlu.build_data(work, ARGS.per_subject)
    for path in sorted(tasks.glob("bench_mmlu_*.yaml")):
        config = yaml.safe_load(path.read_text())
        subject = config["task"].removeprefix("bench_mmlu_")
        generative = Path(config["include"]).parents[1] / "generative" / f"mmlu_{subject}.yaml"
        twin = {**config, "include": str(generative), "task": f"bench_mmlu_gen_{subject}", "tag": "bench_mmlu_gen"}
        (tasks / f"bench_mmlu_gen_{subject}.yaml").write_text(yaml.safe_dump(twin))
    return tasks, total


def _run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of the command."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd[:3])} ... failed; see {log}")
    return elapsed, usage.ru_maxrss / 1024


def _samples(out: Path) -> dict[tuple[str, int], dict]:
    samples = {}
    for path in out.glob(f"**/samples_{TAG[ARGS.kind]}_*.jsonl"):
        task = path.name.removeprefix("samples_").rsplit("_", 1)[0]
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            samples[(task, sample["doc_id"])] = sample
    return samples


def run_geo_factory(work: Path, tasks: Path, env: dict[str, str], repeat: int) -> tuple[tuple[float, float], dict]:
    save_dir = work / f"geo_factory_{repeat}"
    config = {
        "model_name_or_path": str(ARGS.model), "template": "fewshot", "task": f"lm_eval:{TAG[ARGS.kind]}",
        "lm_eval_include_path": str(tasks), "n_shot": ARGS.n_shot, "seed": 42, "batch_size": ARGS.batch_size,
        "save_dir": str(save_dir), "log_samples": True,
    }  # fmt: skip
    (work / "eval.yaml").write_text(yaml.safe_dump(config))
    cli = str(Path(sys.executable).parent / "llamafactory-cli")
    measured = _run([cli, "eval", str(work / "eval.yaml")], env, work / f"geo_factory_{repeat}.log")
    return measured, _samples(save_dir)


def run_harness(work: Path, tasks: Path, env: dict[str, str], repeat: int) -> tuple[tuple[float, float], dict]:
    out = work / f"harness_{repeat}"
    cmd = [
        str(ARGS.harness / "bin" / "lm_eval"), "--model", "hf", "--device", "cpu",
        "--model_args", f"pretrained={ARGS.model},dtype=float32", "--include_path", str(tasks),
        "--tasks", TAG[ARGS.kind], "--num_fewshot", str(ARGS.n_shot), "--batch_size", str(ARGS.batch_size),
        "--seed", "42", "--log_samples", "--output_path", str(out),
    ]  # fmt: skip
    return _run(cmd, env, work / f"harness_{repeat}.log"), _samples(out)


def compare(ours: dict, theirs: dict) -> dict:
    assert ours.keys() == theirs.keys(), f"other documents: {sorted(ours)[:4]} vs {sorted(theirs)[:4]}"
    if ARGS.kind == "mc":

        def lls(sample: dict) -> list[float]:
            return [float(resp[0]) for resp in sample["filtered_resps"]]

        picks = {k: max(range(4), key=lls(s).__getitem__) for k, s in ours.items()}
        their_picks = {k: max(range(4), key=lls(s).__getitem__) for k, s in theirs.items()}
        clear = [k for k, s in theirs.items() if (lambda v: v[-1] - v[-2])(sorted(lls(s))) > 1e-4]
        return {
            "documents": len(ours),
            "same_choice": sum(picks[k] == their_picks[k] for k in ours),
            "margin_above_1e-4": len(clear),
            "same_choice_margin_above_1e-4": sum(picks[k] == their_picks[k] for k in clear),
            "accuracy": {
                "geo-factory": round(100 * statistics.fmean(s["acc"] for s in ours.values()), 2),
                "harness": round(100 * statistics.fmean(s["acc"] for s in theirs.values()), 2),
            },
            "max_abs_loglikelihood_difference": max(
                abs(a - b) for k in ours for a, b in zip(lls(ours[k]), lls(theirs[k]))
            ),
        }
    return {
        "documents": len(ours),
        "same_filtered_response": sum(ours[k]["filtered_resps"] == theirs[k]["filtered_resps"] for k in ours),
        "same_raw_response": sum(ours[k]["resps"] == theirs[k]["resps"] for k in ours),
        "exact_match": {
            "geo-factory": round(100 * statistics.fmean(s["exact_match"] for s in ours.values()), 2),
            "harness": round(100 * statistics.fmean(s["exact_match"] for s in theirs.values()), 2),
        },
    }


def main() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(ARGS.threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_lm_eval_") as tmp:
        work = Path(tmp)
        env["HF_HOME"] = str(work / "hf_home")
        tasks, total = build_tasks(work)
        runs: dict[str, list[tuple[float, float]]] = {"geo-factory": [], "harness": []}
        for repeat in range(ARGS.repeats):
            measured, ours = run_geo_factory(work, tasks, env, repeat)
            runs["geo-factory"].append(measured)
            measured, theirs = run_harness(work, tasks, env, repeat)
            runs["harness"].append(measured)
            print(f"repeat {repeat} (seconds, peak MiB): {runs}", flush=True)
        median = {name: statistics.median(s for s, _ in values) for name, values in runs.items()}
        result = {
            "kind": ARGS.kind,
            "model": str(ARGS.model),
            "documents": total,
            "n_shot": ARGS.n_shot,
            "repeats": ARGS.repeats,
            "threads": ARGS.threads,
            "batch_size": ARGS.batch_size,
            "runs": runs,
            "documents_per_second": {name: round(total / value, 3) for name, value in median.items()},
            "speedup": round(median["harness"] / median["geo-factory"], 2),
            "peak_mib": {name: round(max(m for _, m in values)) for name, values in runs.items()},
            **compare(ours, theirs),
        }
        print(json.dumps(result, indent=2))
        if ARGS.json:
            Path(ARGS.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=sorted(TAG), default="mc")
    parser.add_argument("--model", type=Path, default=Path.home() / ".cache" / "geo-factory" / "smollm2-135m-instruct")
    parser.add_argument("--subjects", type=int, default=5)
    parser.add_argument("--per-subject", type=int, default=40)
    parser.add_argument("--n-shot", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--harness", type=Path, default=REPO / ".venv", help="An environment with lm_eval installed.")
    parser.add_argument("--json", default=None)
    ARGS = parser.parse_args()
    main()
