"""GeoBench objective suite in likelihood mode: geo-factory's scorer against K2's evaluation loop.

The reference is K2's loop (davendw49/k2, evaluation/run_eval.py + post_process.py): one question per
forward pass over the whole prompt, softmax of the last position over the vocabulary, the option tokens'
probabilities normalised. Both sides get the same model object and the same prompt token ids (geo-factory's
prompts), and run alternately within each repeat; medians over the repeats are reported. Goal on CPU: at
least 4x the questions per second on the tiny model, 5x on SmolLM2 (``--model models/smollm2-135m-instruct
--template smollm2``), with the same answer on every question whose top-two margin (of the reference's
normalised option probabilities) exceeds 1e-4.

Data: ../shared/geobench/k2 when present, else the test fixtures (or ``--task-dir``). Model: the tiny model
(built here unless ``--model`` names one), or ``--shape 7b``: a Mistral-7B-shaped model with random weights and
``--model``'s tokenizer (bf16, for timing on a GPU; the reference loop is then skipped unless ``--reference``).

    python benchmarks/bench_geobench.py [--model models/tiny-mistral] [--repeats 3] [--batch-size 16]
        [--max-questions N] [--threads 1] [--shape model|7b] [--device cpu|cuda] [--task-dir DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "geobench" / "k2"
FIXTURES = REPO / "tests" / "fixtures" / "geobench" / "k2"
TASKS = ("geobench_npee", "geobench_npee_tf", "geobench_apstudy")


def load_model(args: argparse.Namespace, workdir: Path):
    import torch
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoModelForCausalLM, AutoTokenizer, MistralConfig

    from geo_factory.tiny import build_tiny_model

    model_dir = Path(args.model) if args.model else build_tiny_model(workdir / "tiny-mistral")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=args.template))
    if args.shape == "7b":
        config = MistralConfig(  # Mistral-7B's vocabulary, or the tokenizer's when it is larger (SmolLM2: 49,152)
            vocab_size=max(32000, len(tokenizer)), hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=8, sliding_window=None,
        )  # fmt: skip
        with torch.device(args.device):  # random weights, made on the device in bf16
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir).to(args.device)
    return model.eval(), tokenizer, template, model_dir


def encode_suite(scorer, folder: Path, args: argparse.Namespace):
    """The prompt of every question, as the eval command builds it."""
    from geo_factory.eval.families.geobench import load_all
    from geo_factory.eval.prompts import ExemplarSampler, answer_text, choice_messages, subset

    items, questions = [], load_all(str(folder))
    for name in TASKS:
        task_questions = questions[name]
        sampler = ExemplarSampler(task_questions, args.n_shot, args.seed)
        for question in subset(task_questions, args.max_questions, args.seed):  # the eval's max_samples draw
            shots = sampler.exemplars(question)
            messages = choice_messages(question, [task_questions[i] for i in shots], "en", scorer.plain)
            answers = tuple(answer_text(question, label, "en") for label in question.labels)
            items.append(scorer.encode(messages, answers, shots))
    return items


def run_ours(scorer, items) -> list[list[float]]:
    from geo_factory.eval.scoring import normalize

    probs: list[list[float]] = [[] for _ in items]
    for batch in scorer.score(items):
        for i, logprobs in batch:
            probs[i] = normalize(logprobs)
    return probs


def run_reference(model, items) -> list[list[float]]:
    """K2's loop: the whole prompt per forward pass, softmax over the vocabulary, option tokens normalised."""
    import torch

    probs = []
    with torch.no_grad():
        for item in items:
            logits = model(input_ids=torch.tensor([item.ids], device=model.device)).logits
            softmax = torch.softmax(logits[0, -1].float(), dim=-1)
            picked = [softmax[c].item() for c in item.candidates]
            probs.append([p / sum(picked) for p in picked])
    return probs


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: build the tiny model in a temporary folder)")
    parser.add_argument("--template", default=None, help="chat template (default: none, as for a base model)")
    parser.add_argument("--shape", choices=["model", "7b"], default="model", help="7b: random weights in that shape")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-shot", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-questions", type=int, default=None, help="per task: the eval's `max_samples` draw")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady on a shared machine)")
    parser.add_argument("--reference", action="store_true", help="run the reference loop with --shape 7b too")
    parser.add_argument(
        "--task-dir", type=Path, help=f"GeoBench folder (default: {SHARED} if present, else the fixtures)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from geo_factory.eval.scoring import LikelihoodScorer

    torch.set_num_threads(args.threads)
    folder = args.task_dir or (SHARED if SHARED.is_dir() else FIXTURES)
    with tempfile.TemporaryDirectory() as workdir:
        model, tokenizer, template, model_dir = load_model(args, Path(workdir))
        scorer = LikelihoodScorer(model, tokenizer, template, args.batch_size)
        start = time.perf_counter()
        items = encode_suite(scorer, folder, args)
        encode_s = time.perf_counter() - start
        with_reference = args.shape == "model" or args.reference

        ours_s, ref_s, ours, ref = [], [], None, None
        run_ours(scorer, items[: args.batch_size])  # warm-up
        for _ in range(args.repeats):
            if with_reference:
                _sync(args.device)
                start = time.perf_counter()
                ref = run_reference(model, items)
                _sync(args.device)
                ref_s.append(time.perf_counter() - start)
            _sync(args.device)
            start = time.perf_counter()
            ours = run_ours(scorer, items)
            _sync(args.device)
            ours_s.append(time.perf_counter() - start)

    n = len(items)
    result = {
        "data": str(folder),
        "model": f"{model_dir}" + (" (Mistral-7B shape, random weights, bf16)" if args.shape == "7b" else ""),
        "device": args.device,
        "threads": args.threads,
        "questions": n,
        "prompt_tokens_mean": statistics.fmean(len(item.ids) for item in items),
        "encode_s": encode_s,
        "ours_s": statistics.median(ours_s),
        "ours_qps": n / statistics.median(ours_s),
    }
    print(f"GeoBench objective suite ({n} questions from {folder}, {args.n_shot}-shot, mean prompt "
          f"{result['prompt_tokens_mean']:.0f} tokens), {result['model']}, {args.device}, {args.threads} thread(s), "
          f"median of {args.repeats}; prompt encoding (shared by both, not timed below): {encode_s:.2f} s\n")  # fmt: skip
    print("| implementation | seconds | questions/s | speed-up |")
    print("|---|---|---|---|")
    if ref is not None:
        result.update(ref_s=statistics.median(ref_s), ref_qps=n / statistics.median(ref_s))
        result["speedup"] = result["ours_qps"] / result["ref_qps"]
        print(
            f"| K2's loop (one question per forward pass) | {result['ref_s']:.2f} | {result['ref_qps']:.1f} | 1.00x |"
        )
    speedup = f"{result['speedup']:.2f}x" if ref is not None else "-"
    print(
        f"| geo-factory (batch {args.batch_size}, shared prefix) | {result['ours_s']:.2f} | {result['ours_qps']:.1f} | {speedup} |"
    )
    if ref is not None:
        decided = [i for i, p in enumerate(ref) if len(p) > 1 and sorted(p)[-1] - sorted(p)[-2] > 1e-4]
        differ = [
            i
            for i in decided
            if max(range(len(ref[i])), key=ref[i].__getitem__) != max(range(len(ours[i])), key=ours[i].__getitem__)
        ]
        result.update(
            decided=len(decided),
            answers_differ=len(differ),
            max_prob_diff=max(abs(a - b) for p, q in zip(ref, ours) for a, b in zip(p, q)),
        )
        print(f"\nSame answer on {len(decided) - len(differ)}/{len(decided)} questions with top-two margin > 1e-4 "
              f"({n - len(decided)} closer calls not compared); largest option-probability difference "
              f"{result['max_prob_diff']:.2e}.")  # fmt: skip
    print(f"\nReproduce: python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip())
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
