"""``llamafactory-cli eval`` on 1 process against N processes (torchrun, issue 26): wall time of the whole command,
the questions each rank scored, and whether every answer is the same.

Each repeat runs every process count once, alternating, into a fresh ``save_dir``; medians over the repeats are
reported. On the CPU the processes share the machine's cores (each gets cores / N threads, so 1 process gets them
all, unless ``--threads``): the figure to read there is the questions per rank, and that the answers do not move; the speed-up shows
where each process has its own GPU (``--device cuda``, one process per visible GPU).

    python benchmarks/bench_eval_ranks.py --model models/smollm2-135m-instruct --template smollm2 \
        [--task geobench] [--task-dir DIR] [--nproc 1,2] [--repeats 3] [--max-samples N] [--device cpu|cuda] [--threads T] [--json out.json]

Data: ../shared/geobench/k2 when present, else the test fixtures (or ``--task-dir``).
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


REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "geobench" / "k2"
FIXTURES = REPO / "tests" / "fixtures" / "geobench" / "k2"
CLI = str(Path(sys.executable).parent / "llamafactory-cli")


def run(args: argparse.Namespace, nproc: int, save_dir: Path) -> float:
    config = {
        "model_name_or_path": str(Path(args.model).resolve()),
        "template": args.template,
        "task": args.task,
        "task_dir": str(Path(args.task_dir).resolve()),
        "n_shot": args.n_shot,
        "batch_size": args.batch_size,
        "save_dir": str(save_dir),
        **({"max_samples": args.max_samples} if args.max_samples else {}),
        **({"infer_dtype": "bfloat16"} if args.device == "cuda" else {}),
    }
    config_file = save_dir.with_suffix(
        ".yaml"
    )  # LLaMA-Factory 0.9.5 reads a .json config with a bug (json.load(Path))
    config_file.write_text(json.dumps(config))  # JSON is YAML
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.device == "cpu":
        threads = args.threads or max(1, (os.cpu_count() or 1) // nproc)
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=str(threads))
    if nproc > 1:
        env.update(FORCE_TORCHRUN="1", NPROC_PER_NODE=str(nproc))
    start = time.perf_counter()
    proc = subprocess.run([CLI, "eval", str(config_file)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"eval on {nproc} process(es) exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds


def predictions(save_dir: Path) -> dict[tuple[str, int], dict]:
    rows = [json.loads(line) for line in (save_dir / "predictions.jsonl").read_text().splitlines()]
    return {(row["task"], row["id"]): row for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder (e.g. models/smollm2-135m-instruct)")
    parser.add_argument("--template", default="smollm2")
    parser.add_argument("--task", default="geobench")
    parser.add_argument("--task-dir", default=str(SHARED if SHARED.is_dir() else FIXTURES))
    parser.add_argument("--nproc", default="1,2", help="process counts to compare, the first is the baseline")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-shot", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-samples", type=int, default=None, help="questions per task (all by default)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads per process (default: cores / processes)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    counts = [int(n) for n in args.nproc.split(",")]

    walls: dict[int, list[float]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for n in counts:
                walls[n].append(run(args, n, Path(tmp) / f"n{n}_r{repeat}"))
                print(f"repeat {repeat + 1}/{args.repeats}, {n} process(es): {walls[n][-1]:.1f} s", file=sys.stderr)
        base = predictions(Path(tmp) / f"n{counts[0]}_r0")
        rows = {}
        for n in counts:
            results = json.loads((Path(tmp) / f"n{n}_r0" / "results.json").read_text())
            other = predictions(Path(tmp) / f"n{n}_r0")
            drift = max(
                abs(p - base[key]["probs"][label]) for key, row in other.items() for label, p in row["probs"].items()
            )
            rows[n] = {
                "wall_s_median": statistics.median(walls[n]),
                "wall_s": walls[n],
                "questions": len(other),
                "scored_per_rank": results["scored_per_rank"],
                "same_prediction": sum(row["prediction"] == base[key]["prediction"] for key, row in other.items()),
                "max_prob_difference": drift,
                "speedup_vs_first": statistics.median(walls[counts[0]]) / statistics.median(walls[n]),
            }
    out = {
        "model": args.model,
        "task": args.task,
        "task_dir": args.task_dir,
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "threads_per_process": None
        if args.device == "cuda"
        else {n: args.threads or max(1, (os.cpu_count() or 1) // n) for n in counts},
        "repeats": args.repeats,
        "by_processes": rows,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
