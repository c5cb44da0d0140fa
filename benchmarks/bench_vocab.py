"""Vocabulary expansion (PreparedLLM, TSPT's stage 0) on the tiny model: compression and initialization.

1. Compression: tokens per 1,000 characters of the held-out texts in benchmarks/data, with the tiny
   model's tokenizer (trained on general text only) before and after expansion on both demo corpora.
   Goal: at least 10% fewer on geoscience text (EN and ZH), at most 1% more on general text.
2. Initialization: the tiny model is first trained further on both demo corpora, then expanded with
   each initialization, and scored on held-out geoscience text right away, against the unexpanded
   model. Per-token loss is not comparable across tokenizers (the expanded one has fewer, longer
   tokens), so the goal is judged on the loss per character (the text's total NLL / its characters):
   prepared within 5% of the unexpanded model, random clearly worse. Each model is then trained a few
   more steps (the unexpanded one too) to show which start the training recovers from fastest.
   A breakdown says where the change right after expansion comes from (see ``heldout_loss``).

    python benchmarks/bench_vocab.py [--vocab-sizes 300,1000] [--shape 128x2] [--train-steps 300]
                                     [--adapt-steps 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path


HELDOUT = Path(__file__).parent / "data"
TEXTS = ("geo_en", "geo_zh", "general_en", "general_zh")
CORPORA = "geo_corpus_demo,general_corpus_demo"
INITS = ("prepared", "mean", "random")
BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


def _lines(name: str) -> list[str]:
    text = (HELDOUT / f"heldout_{name}.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def tokens_per_1k_chars(model_dir: Path) -> dict[str, float]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rates = {}
    for name in TEXTS:
        lines = _lines(name)
        tokens = sum(len(tokenizer(line, add_special_tokens=False)["input_ids"]) for line in lines)
        rates[name] = 1000 * tokens / sum(map(len, lines))
    return rates


def token_losses(model_dir: Path, name: str, tokenizer_dir: Path | None = None) -> list[list[tuple[float, int, bool]]]:
    """Per held-out line (after BOS), each predicted token's NLL, its length in bytes, and whether it is new.

    With the base model's ``tokenizer_dir``, an expanded model reads exactly what the unexpanded one read,
    so any change in loss comes from its new output rows alone.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    record = model_dir / "vocab_expansion.json"
    first_new = json.loads(record.read_text())["base_vocab_size"] if record.exists() else len(tokenizer)
    lines = []
    with torch.no_grad():
        for line in _lines(name):
            ids = tokenizer(line)["input_ids"]
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
            nll = -torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
            pieces = tokenizer.convert_ids_to_tokens(ids[1:])
            sizes = [1 if BYTE_PIECE.fullmatch(p) else len(p.encode("utf-8")) for p in pieces]
            lines.append(list(zip(nll.tolist(), sizes, [i >= first_new for i in ids[1:]])))
    return lines


def heldout_loss(lines: list[list[tuple[float, int, bool]]], name: str, reference=None) -> dict[str, float]:
    """Loss per token and per character; against the unexpanded model's ``reference``, where the change comes from.

    An expanded token is a run of base tokens (new merges only join what base merges made), so each one is
    compared with the unexpanded model's NLL of the same bytes: the change at targets that are new tokens
    (their output rows), at the target right after a new token (its input row), and elsewhere (probability
    the new output rows take from base-token targets, and new tokens further back in the context), each as
    a share of the reference loss.
    """
    chars = sum(map(len, _lines(name)))
    total = sum(nll for line in lines for nll, _, _ in line)
    scores = {"per_token": total / sum(map(len, lines)), "per_char": total / chars}
    if reference is None:
        return scores
    parts = dict.fromkeys(("new_targets", "after_new", "elsewhere"), 0.0)
    for line, ref_line in zip(lines, reference):
        ref = iter(ref_line)
        previous_new = False
        for nll, size, new in line:
            while size > 0:  # the base tokens spelling the same bytes
                ref_nll, ref_size, _ = next(ref)
                nll, size = nll - ref_nll, size - ref_size
            if size < 0:
                raise RuntimeError(f"{name}: an expanded token is not a run of base tokens; the breakdown is void.")
            parts["new_targets" if new else "after_new" if previous_new else "elsewhere"] += nll
            previous_new = new
    ref_total = sum(nll for line in reference for nll, _, _ in line)
    scores.update({key: value / ref_total for key, value in parts.items()})
    return scores


def _train(model_dir: Path, steps: int, output_dir: Path) -> Path:
    """``steps`` of plain full training on both demo corpora (the tiny model's own pretraining loop), seeded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from geo_factory.tiny import demo_texts, pretrain

    texts = list(demo_texts())
    tokenizer, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(0)
    pretrain(model, tokenizer, texts, steps)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--vocab-sizes", default="300,1000", help="New tokens, comma-separated; the first scores inits."
    )
    parser.add_argument("--train-steps", type=int, default=300, help="Steps on the demo corpora before expansion.")
    parser.add_argument("--adapt-steps", type=int, default=30, help="Steps on the demo corpora after expansion.")
    parser.add_argument("--shape", default="128x2", help="Tiny model's hidden size x layers (the tests' is 128x2).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [int(n) for n in args.vocab_sizes.split(",")]
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(key, value)

    from geo_factory.tiny import build_tiny_model
    from geo_factory.vocab import expand_command

    held_out = ("geo_en", "geo_zh")
    with tempfile.TemporaryDirectory(prefix="bench_vocab_") as tmp:
        work = Path(tmp)
        hidden, layers = (int(n) for n in args.shape.split("x"))
        base = build_tiny_model(work / "tiny", hidden_size=hidden, num_layers=layers)
        compression = {"base": tokens_per_1k_chars(base)}
        for size in sizes:
            out = expand_command(str(base), CORPORA, size, "prepared", work / f"expanded-{size}")
            compression[f"+{size}"] = tokens_per_1k_chars(out)

        trained = _train(base, args.train_steps, work / "trained")
        models = {"unexpanded": trained}
        for init in INITS:
            models[init] = expand_command(str(trained), CORPORA, sizes[0], init, work / f"init-{init}")
        losses = {label: {name: token_losses(d, name) for name in held_out} for label, d in models.items()}
        init_scores = {}
        for label, model_dir in models.items():
            adapted = _train(model_dir, args.adapt_steps, work / f"{label}-adapted")
            init_scores[label] = {
                "after_expansion": {
                    name: heldout_loss(losses[label][name], name, losses["unexpanded"][name]) for name in held_out
                },
                "after_adaptation": {name: heldout_loss(token_losses(adapted, name), name) for name in held_out},
            }
            if label != "unexpanded":
                init_scores[label]["base_encoding"] = {
                    name: heldout_loss(token_losses(model_dir, name, tokenizer_dir=trained), name) for name in held_out
                }

    print("### Compression: tokens per 1,000 characters of held-out text (tiny model's tokenizer)\n")
    print("| text | base | " + " | ".join(f"+{n} tokens | change" for n in sizes) + " |")
    print("|---|---|" + "---|---|" * len(sizes))
    for name in TEXTS:
        base_rate = compression["base"][name]
        cells = [
            f"{compression[f'+{n}'][name]:.1f} | {compression[f'+{n}'][name] / base_rate - 1:+.1%}" for n in sizes
        ]
        print(f"| {name} | {base_rate:.1f} | " + " | ".join(cells) + " |")

    print(
        f"\n### Initialization: held-out geoscience loss, +{sizes[0]} tokens, model trained {args.train_steps} steps\n"
    )
    print(
        "| init | loss/token EN, ZH | loss/char EN, ZH | loss/char vs unexpanded | "
        f"loss/char after {args.adapt_steps} more steps | vs unexpanded after the same steps |"
    )
    print("|---|---|---|---|---|---|")
    reference = init_scores["unexpanded"]
    for label, scores in init_scores.items():
        cells = []
        for when, unit in (
            ("after_expansion", "per_token"),
            ("after_expansion", "per_char"),
            ("after_adaptation", "per_char"),
        ):
            cells.append(", ".join(f"{scores[when][n][unit]:.3f}" for n in held_out))
            if unit == "per_char":
                cells.append(
                    ", ".join(f"{scores[when][n][unit] / reference[when][n][unit] - 1:+.1%}" for n in held_out)
                )
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n### Where the change right after expansion comes from, as a share of the unexpanded loss, EN, ZH\n")
    print(
        "| init | at new-token targets | right after a new token | elsewhere | "
        "new output rows alone (base tokenizer's encoding) |"
    )
    print("|---|---|---|---|---|")
    for label in INITS:
        scores = init_scores[label]["after_expansion"]
        cells = [
            ", ".join(f"{scores[n][k]:+.1%}" for n in held_out) for k in ("new_targets", "after_new", "elsewhere")
        ]
        unexpanded = reference["after_expansion"]
        base_encoding = init_scores[label]["base_encoding"]
        cells.append(
            ", ".join(f"{base_encoding[n]['per_char'] / unexpanded[n]['per_char'] - 1:+.1%}" for n in held_out)
        )
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(
        f"\nReproduce: python benchmarks/bench_vocab.py --vocab-sizes {args.vocab_sizes} --shape {args.shape} "
        f"--train-steps {args.train_steps} --adapt-steps {args.adapt_steps}"
    )
    if args.json:
        args.json.write_text(json.dumps({"compression": compression, "init": init_scores}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
