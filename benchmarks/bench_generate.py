"""``eval_mode: generate`` with ``infer_backend: huggingface``: the batched generator against LLaMA-Factory's chat
engine one conversation at a time (what eval did before: a thread pool over ``ChatModel.chat``, which the Hugging
Face engine serves one request at a time), same model object and conversations (eval's own GeoBench prompts),
alternately; medians over the repeats. Goal: at least 4x the questions per second at ``batch_size: 8``, the same
replies (greedy).

    python benchmarks/bench_generate.py [--model ~/.cache/geo-factory/smollm2-135m-instruct] [--template smollm2]
        [--task-dir ../shared/geobench/k2] [--task geobench_npee] [--questions 32] [--n-shot 5]
        [--max-new-tokens 32] [--batch-size 8] [--repeats 3] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    import torch

    from geo_factory.eval.evaluator import Evaluator
    from geo_factory.eval.scoring import generate

    torch.set_num_threads(ARGS.threads)
    with tempfile.TemporaryDirectory() as tmp:
        evaluator = Evaluator(
            {
                "model_name_or_path": str(ARGS.model), "template": ARGS.template, "task": ARGS.task,
                "task_dir": str(ARGS.task_dir), "eval_mode": "generate", "n_shot": ARGS.n_shot,
                "max_new_tokens": ARGS.max_new_tokens, "max_samples": ARGS.questions, "save_dir": tmp,
            }
        )  # fmt: skip
    chats = [chat.messages for chat in evaluator.prompts[ARGS.task]]
    chat_model = evaluator.chat_model
    times: dict[str, list[float]] = {"batched": [], "one_at_a_time": []}
    for repeat in range(ARGS.repeats):
        start = time.perf_counter()
        batched = [r for s in range(0, len(chats), ARGS.batch_size)
                   for r in generate(chat_model, chats[s : s + ARGS.batch_size], ARGS.batch_size)]  # fmt: skip
        times["batched"].append(time.perf_counter() - start)
        start = time.perf_counter()
        alone = [chat_model.chat(messages)[0].response_text for messages in chats]
        times["one_at_a_time"].append(time.perf_counter() - start)
        print(f"repeat {repeat}: {times}", flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "model": str(ARGS.model),
        "task": ARGS.task,
        "questions": len(chats),
        "n_shot": ARGS.n_shot,
        "max_new_tokens": ARGS.max_new_tokens,
        "batch_size": ARGS.batch_size,
        "threads": ARGS.threads,
        "seconds": times,
        "questions_per_second": {name: round(len(chats) / value, 3) for name, value in median.items()},
        "speedup": round(median["one_at_a_time"] / median["batched"], 2),
        "same_replies": sum(a == b for a, b in zip(batched, alone)),
    }
    print(json.dumps(result, indent=2))
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path.home() / ".cache" / "geo-factory" / "smollm2-135m-instruct")
    parser.add_argument("--template", default="smollm2")
    parser.add_argument("--task-dir", type=Path, default=REPO.parent / "shared" / "geobench" / "k2")
    parser.add_argument("--task", default="geobench_npee")
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--n-shot", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    ARGS = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
