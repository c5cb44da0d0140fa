"""What ``stage: tspt`` costs, measured through ``llamafactory-cli`` on the tiny model or a real one (``--model``).

1. Overhead: TSPT with budgets N1 + N2 (examples/tiny/tiny_tspt_lora.yaml) against one ``stage: pt`` run
   over the same N1 + N2 tokens (examples/tiny/tiny_onestage_pt.yaml), alternating. Wall time is the whole
   command; CPU time (user + system) the work done, which other load on the machine disturbs less; training
   throughput is tokens / ``train_runtime`` (summed over the stages). Each TSPT run is compared with the pt
   run right after it and the median of those ratios reported, so that slow drifts of the machine cancel.
   Goals: wall-time ratio <= 1.05, tokens/s within 3%.
2. Memory: a streaming TSPT run over a generated 1 GB corpus against one over 0.1 GB (written to a temporary
   folder, deleted afterwards), same budgets: peak RSS ratio, goal < 1.2. ``--memory-repeats 0`` skips it.

Both use the tiny yamls' settings (LoRA, 4 x 128-token blocks per step) with the model linked in as
``models/tiny-mistral``; for SmolLM2: ``--model models/smollm2-135m-instruct`` (``geo-factory smol-model``).

    python benchmarks/bench_tspt.py [--steps 640] [--repeats 5] [--model DIR] [--memory-repeats 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "llamafactory-cli")
TSPT_YAML = REPO / "examples/tiny/tiny_tspt_lora.yaml"
PT_YAML = REPO / "examples/tiny/tiny_onestage_pt.yaml"
BLOCK_TOKENS = 128 * 4  # cutoff_len x per_device_train_batch_size of both tiny yamls
METRICS = ("wall_s", "cpu_s", "tokens_per_s")
# Runs the command; prints its wall time, and from the kernel its CPU time and peak RSS (of its largest process).
_MEASURE = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "with open(sys.argv[1], 'w') as log:\n"
    "    subprocess.run(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT, check=True)\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)\n"
)


def _env(work: Path, cuda: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEO_FACTORY_", "FORCE_TORCHRUN", "NPROC_"))}
    env.update(
        HF_HOME=str(work / "hf_home"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_DISABLED="true",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
    )
    if not cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _run(work: Path, name: str, *args: str, cuda: bool = False) -> dict[str, float]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of ``llamafactory-cli train ARGS``, run in ``work``."""
    log = work / f"{name}.log"
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(log), CLI, "train", *args],
        cwd=work,
        env=_env(work, cuda),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"{name} failed; its log:\n{log.read_text()[-4000:]}")
    wall, cpu, rss_kib = proc.stdout.split()[-3:]
    return {"wall_s": float(wall), "cpu_s": float(cpu), "peak_rss_mib": int(rss_kib) / 1024}


def model_into(work: Path, model: Path | None) -> None:
    """``work/models/tiny-mistral``: ``model`` linked in, or the tiny model built there (seconds to minutes on a CPU)."""
    (work / "models").mkdir()
    if model is None:
        from geo_factory.tiny import build_tiny_model

        build_tiny_model(work / "models" / "tiny-mistral")
    else:
        (work / "models" / "tiny-mistral").symlink_to(model.resolve())


def _train_runtime(output_dir: Path) -> float:
    return json.loads((output_dir / "train_results.json").read_text())["train_runtime"]


def overhead(work: Path, steps: int, repeats: int, cuda: bool = False) -> dict[str, Any]:
    """TSPT against pt, alternating; ``cuda``: on the GPU in bf16 (benchmarks/gpu_check.py)."""
    tokens = 2 * steps * BLOCK_TOKENS
    device_args = ["bf16=true"] if cuda else []
    cases = {
        "tspt": (TSPT_YAML, [f"tspt_stage{n}_tokens={steps * BLOCK_TOKENS}" for n in (1, 2)], ("stage1", "stage2")),
        "pt": (PT_YAML, [f"max_steps={2 * steps}"], ("",)),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for repeat in range(repeats + 1):  # the first round warms the page and bytecode caches: not counted
        for name, (yaml_path, extra, stages) in cases.items():
            out = work / f"{name}_{repeat}"
            run = _run(
                work, f"{name}_{repeat}", str(yaml_path), *extra, *device_args, f"output_dir={out}", "save_steps=250",
                cuda=cuda,
            )  # fmt: skip
            run["tokens_per_s"] = tokens / sum(_train_runtime(out / stage) for stage in stages)
            shutil.rmtree(out)
            print(f"  {name} round {repeat}: " + ", ".join(f"{k} {v:,.1f}" for k, v in run.items()), file=sys.stderr)
            if repeat:
                runs[name].append(run)

    result: dict[str, Any] = {
        name: {key: statistics.median(run[key] for run in r) for key in METRICS}
        | {"peak_rss_mib": max(run["peak_rss_mib"] for run in r)}
        for name, r in runs.items()
    }
    result["tspt_over_pt"] = {
        key: statistics.median(a[key] / b[key] for a, b in zip(runs["tspt"], runs["pt"])) for key in METRICS
    }
    result["tokens"], result["runs"] = tokens, repeats
    return result


def _write_corpus(path: Path, size: int, seed: int) -> None:
    """JSON lines of demo paragraphs recombined at random: real text for the tokenizer, ``size`` bytes."""
    from geo_factory.tiny import demo_texts

    paragraphs = list(demo_texts())
    rng = random.Random(seed)
    written = 0
    with open(path, "wb") as f:
        while written < size:
            line = json.dumps({"text": " ".join(rng.sample(paragraphs, 6))}, ensure_ascii=False) + "\n"
            written += f.write(line.encode("utf-8"))


def memory(work: Path, steps: int, repeats: int) -> dict[str, dict[str, float]]:
    if repeats == 0:
        return {}
    sizes = {"0.1 GB": 10**8, "1 GB": 10**9}
    (work / "data").mkdir()
    registry = {}
    for i, (label, size) in enumerate(sizes.items()):
        path = work / "data" / f"corpus_{i}.jsonl"
        _write_corpus(path, size, seed=i)
        registry[f"bench_corpus_{i}"] = {"file_name": path.name, "columns": {"prompt": "text"}}
        print(f"  wrote the {label} corpus: {path.stat().st_size / 1e9:.2f} GB", file=sys.stderr)
    (work / "data" / "dataset_info.json").write_text(json.dumps(registry))

    runs: dict[str, list[dict[str, float]]] = {label: [] for label in sizes}
    for repeat in range(repeats):
        for i, label in enumerate(sizes):
            out = work / f"stream_{i}_{repeat}"
            run = _run(
                work,
                f"stream_{i}_{repeat}",
                str(TSPT_YAML),
                "streaming=true",
                f"tspt_stage1_dataset=bench_corpus_{i}",
                "tspt_stage1_mix=1",
                f"tspt_stage2_dataset=bench_corpus_{i},general_corpus_demo",
                *(f"tspt_stage{n}_tokens={steps * BLOCK_TOKENS}" for n in (1, 2)),
                f"output_dir={out}",
                "save_steps=250",
            )
            shutil.rmtree(out)
            print(f"  streaming over {label}, run {repeat}: {run}", file=sys.stderr)
            runs[label].append(run)

    shutil.rmtree(work / "data")
    return {
        label: {
            "peak_rss_mib": max(run["peak_rss_mib"] for run in r),
            "wall_s": statistics.median(run["wall_s"] for run in r),
            "runs": len(r),
        }
        for label, r in runs.items()
    }


def _print_tables(cost: dict[str, Any], mem: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    ratio = cost["tspt_over_pt"]
    print(f"Overhead: {cost['tokens']:,} training tokens; medians of {cost['runs']} alternating rounds.\n")
    print("| run | wall (s) | CPU (s) | training tokens/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for label, r in (("`stage: pt`, one run", cost["pt"]), ("`stage: tspt`, two stages", cost["tspt"])):
        print(
            f"| {label} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['tokens_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} |"
        )
    print(
        f"| TSPT / pt (median of paired rounds) | {ratio['wall_s']:.3f} (goal <= 1.05) | {ratio['cpu_s']:.3f} | "
        f"{ratio['tokens_per_s']:.3f} (goal 0.97-1.03) | |"
    )

    print(
        f"\nReproduce: python benchmarks/bench_tspt.py --steps {args.steps} --repeats {args.repeats} "
        f"--memory-steps {args.memory_steps} --memory-repeats {args.memory_repeats}"
        + (f" --model {args.model}" if args.model else "")
    )
    if not mem:
        return
    small, large = mem["0.1 GB"], mem["1 GB"]
    print(f"\nMemory: streaming TSPT, {2 * args.memory_steps} steps, {small['runs']} runs per corpus size.\n")
    print("| corpus | peak RSS (MiB) | wall (s) |")
    print("|---|---|---|")
    for label, r in mem.items():
        print(f"| {label} | {r['peak_rss_mib']:,.0f} | {r['wall_s']:.1f} |")
    print(f"| 1 GB / 0.1 GB | {large['peak_rss_mib'] / small['peak_rss_mib']:.3f} (goal < 1.2) | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=640, help="Optimizer steps per TSPT stage (4 x 128 tokens).")
    parser.add_argument("--repeats", type=int, default=5, help="Measured rounds of the overhead comparison.")
    parser.add_argument("--memory-steps", type=int, default=100, help="Steps per stage of the streaming runs.")
    parser.add_argument("--memory-repeats", type=int, default=2, help="Streaming runs per corpus size (0: skip).")
    parser.add_argument("--model", type=Path, help="A model folder (default: build the tiny model, seconds on a CPU).")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: on the GPU, in bf16.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_tspt_") as tmp:
        work = Path(tmp)
        model_into(work, args.model)
        print("overhead:", file=sys.stderr)
        cost = overhead(work, args.steps, args.repeats, cuda=args.device == "cuda")
        print("memory:" if args.memory_repeats else "memory: skipped", file=sys.stderr)
        mem = memory(work, args.memory_steps, args.memory_repeats)

    _print_tables(cost, mem, args)
    if args.json:
        args.json.write_text(json.dumps({"overhead": cost, "memory": mem}, indent=2))


if __name__ == "__main__":
    main()
