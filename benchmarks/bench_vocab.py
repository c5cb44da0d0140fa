"""Vocabulary expansion (PreparedLLM, TSPT's stage 0): compression and initialization, tiny or real model.

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

With ``--model`` (a real model folder, e.g. SmolLM2-135M-Instruct from ``geo-factory smol-model``) the
same two measurements run on real weights: no pre-training, and the steps after expansion train the
embedding matrices alone (``--lr``, constant), the usual first phase after an expansion and cheaper
than full training on a CPU (no weight gradients in the layers). The goal there: ``prepared`` the best
of the three, right after expansion and after the steps. ``--eval-chars`` scores only the first lines
of each held-out text.

    python benchmarks/bench_vocab.py [--vocab-sizes 300,1000] [--shape 128x2] [--train-steps 300]
                                     [--adapt-steps 30] [--json out.json]
    python benchmarks/bench_vocab.py --model models/smollm2-135m-instruct --vocab-sizes 1000,3000 \
        --adapt-steps 8 --batch 2 --block 128 --eval-chars 1200
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path


HELDOUT = Path(__file__).parent / "data"
TEXTS = ("geo_en", "geo_zh", "general_en", "general_zh")
CORPORA = "geo_corpus_demo,general_corpus_demo"
INITS = ("prepared", "mean", "random")
BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


def _lines(name: str, max_chars: int | None = None) -> list[str]:
    """The held-out text's lines; with ``max_chars``, the first ones up to that many characters (at least one)."""
    text = (HELDOUT / f"heldout_{name}.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    if max_chars is not None:
        ends = [sum(map(len, lines[: i + 1])) for i in range(len(lines))]
        lines = lines[: max(1, sum(end <= max_chars for end in ends))]
    return lines


def tokens_per_1k_chars(model_dir: Path) -> dict[str, float]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rates = {}
    for name in TEXTS:
        lines = _lines(name)
        tokens = sum(len(tokenizer(line, add_special_tokens=False)["input_ids"]) for line in lines)
        rates[name] = 1000 * tokens / sum(map(len, lines))
    return rates


def load(model_dir: Path):
    """The model, its tokenizer, and the first id of a new token (past the vocabulary if it is not expanded)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    record = model_dir / "vocab_expansion.json"
    first_new = json.loads(record.read_text())["base_vocab_size"] if record.exists() else len(tokenizer)
    return model, tokenizer, first_new


def token_losses(model, tokenizer, first_new: int, texts: list[str]) -> list[list[tuple[float, int, bool]]]:
    """Per held-out line (after a start token), each predicted token's NLL, its length in bytes, and whether it is new.

    A tokenizer that adds no BOS (GPT-2 layout) gets its BOS or EOS in front, so the first piece is scored too.
    With the base model's tokenizer, an expanded model reads exactly what the unexpanded one read, so any
    change in loss comes from its new output rows alone.
    """
    import torch

    from geo_factory.vocab import has_byte_level

    byte_level = has_byte_level(json.loads(tokenizer.backend_tokenizer.to_str())["pre_tokenizer"])
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    lines = []
    model.eval()
    with torch.no_grad():
        for line in texts:
            ids = tokenizer(line)["input_ids"]
            ids = ids if ids[:1] == [start] else [start, *ids]
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
            nll = -torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
            pieces = tokenizer.convert_ids_to_tokens(ids[1:])
            if byte_level:  # one character of the byte alphabet per byte
                sizes = list(map(len, pieces))
            else:
                sizes = [1 if BYTE_PIECE.fullmatch(p) else len(p.encode("utf-8")) for p in pieces]
            lines.append(list(zip(nll.tolist(), sizes, [i >= first_new for i in ids[1:]])))
    return lines


def heldout_loss(
    lines: list[list[tuple[float, int, bool]]], texts: list[str], name: str, reference=None
) -> dict[str, float]:
    """Loss per token and per character; against the unexpanded model's ``reference``, where the change comes from.

    An expanded token is a run of base tokens (new merges only join what base merges made), so each one is
    compared with the unexpanded model's NLL of the same bytes: the change at targets that are new tokens
    (their output rows), at the target right after a new token (its input row), and elsewhere (probability
    the new output rows take from base-token targets, and new tokens further back in the context), each as
    a share of the reference loss.
    """
    chars = sum(map(len, texts))
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


def _train(model, tokenizer, steps: int) -> None:
    """``steps`` of plain full training on both demo corpora (the tiny model's own pretraining loop), seeded."""
    import torch

    from geo_factory.tiny import demo_texts, pretrain

    torch.manual_seed(0)
    pretrain(model, tokenizer, list(demo_texts()), steps)


def _train_embeddings(model, tokenizer, steps: int, lr: float, batch: int, block: int) -> None:
    """``steps`` of AdamW on the input and output embedding matrices alone, on packed blocks of both demo corpora."""
    import torch

    from geo_factory.tiny import demo_texts

    ids = [i for text in demo_texts() for i in [*tokenizer(text)["input_ids"], tokenizer.eos_token_id]]
    blocks = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    embeddings = {id(w): w for w in (model.get_input_embeddings().weight, model.get_output_embeddings().weight)}
    model.requires_grad_(False)
    for weight in embeddings.values():
        weight.requires_grad_(True)
    optimizer = torch.optim.AdamW(embeddings.values(), lr=lr, weight_decay=0.0)
    torch.manual_seed(0)
    model.train()
    for _ in range(steps):
        batch_ids = blocks[torch.randint(len(blocks), (batch,))]
        model(input_ids=batch_ids, labels=batch_ids).loss.backward()
        optimizer.step(), optimizer.zero_grad()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--vocab-sizes", default="300,1000", help="New tokens, comma-separated; the first scores inits."
    )
    parser.add_argument("--model", type=Path, help="A real model folder instead of the tiny model (see above).")
    parser.add_argument("--train-steps", type=int, default=300, help="Tiny model: steps on the demo corpora first.")
    parser.add_argument("--adapt-steps", type=int, default=30, help="Steps on the demo corpora after expansion.")
    parser.add_argument("--shape", default="128x2", help="Tiny model's hidden size x layers (the tests' is 128x2).")
    parser.add_argument("--lr", type=float, default=1e-3, help="Real model: learning rate of the embedding steps.")
    parser.add_argument("--batch", type=int, default=2, help="Real model: blocks per embedding step.")
    parser.add_argument("--block", type=int, default=128, help="Real model: tokens per block.")
    parser.add_argument("--eval-chars", type=int, help="Score only the first lines of each held-out text, this long.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [int(n) for n in args.vocab_sizes.split(",")]
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(key, value)

    from transformers import AutoTokenizer

    from geo_factory.tiny import build_tiny_model
    from geo_factory.vocab import expand_command

    held_out = ("geo_en", "geo_zh")
    texts = {name: _lines(name, args.eval_chars) for name in held_out}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench_vocab_") as tmp:
        work = Path(tmp)
        if args.model is None:
            hidden, layers = (int(n) for n in args.shape.split("x"))
            base = build_tiny_model(work / "tiny", hidden_size=hidden, num_layers=layers)
        else:
            base = args.model.resolve()
        compression = {"base": tokens_per_1k_chars(base)}
        for size in sizes:
            out = expand_command(str(base), CORPORA, size, "prepared", work / f"expanded-{size}")
            compression[f"+{size}"] = tokens_per_1k_chars(out)

        if args.model is None:
            model, tokenizer, _ = load(base)
            _train(model, tokenizer, args.train_steps)
            trained = work / "trained"
            model.save_pretrained(trained)
            tokenizer.save_pretrained(trained)
        else:
            trained = base
        models = {"unexpanded": trained}
        for init in INITS:
            models[init] = expand_command(str(trained), CORPORA, sizes[0], init, work / f"init-{init}")
        base_tokenizer = AutoTokenizer.from_pretrained(trained)
        init_scores, reference = {}, {}
        for label, model_dir in models.items():  # the unexpanded model first: the others' reference
            model, tokenizer, first_new = load(model_dir)
            losses = {n: token_losses(model, tokenizer, first_new, texts[n]) for n in held_out}
            reference = reference or losses
            scores = {"after_expansion": {n: heldout_loss(losses[n], texts[n], n, reference[n]) for n in held_out}}
            if label != "unexpanded" and args.model is None:  # the breakdown's last column: tiny model only
                scores["base_encoding"] = {
                    n: heldout_loss(token_losses(model, base_tokenizer, first_new, texts[n]), texts[n], n)
                    for n in held_out
                }
            if args.model is None:
                _train(model, tokenizer, args.adapt_steps)
            else:
                _train_embeddings(model, tokenizer, args.adapt_steps, args.lr, args.batch, args.block)
            scores["after_adaptation"] = {
                n: heldout_loss(token_losses(model, tokenizer, first_new, texts[n]), texts[n], n) for n in held_out
            }
            init_scores[label] = scores
    minutes = (time.monotonic() - started) / 60
    model_name = args.model.name if args.model else f"tiny {args.shape} model"
    print(f"### Compression: tokens per 1,000 characters of held-out text ({model_name}'s tokenizer)\n")
    print("| text | base | " + " | ".join(f"+{n} tokens | change" for n in sizes) + " |")
    print("|---|---|" + "---|---|" * len(sizes))
    for name in TEXTS:
        base_rate = compression["base"][name]
        cells = [
            f"{compression[f'+{n}'][name]:.1f} | {compression[f'+{n}'][name] / base_rate - 1:+.1%}" for n in sizes
        ]
        print(f"| {name} | {base_rate:.1f} | " + " | ".join(cells) + " |")

    trained_how = f"trained {args.train_steps} steps" if args.model is None else "as published"
    print(f"\n### Initialization: held-out geoscience loss, +{sizes[0]} tokens, {model_name} {trained_how}\n")
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
        base_encoding = init_scores[label].get("base_encoding")
        cells.append(
            ", ".join(f"{base_encoding[n]['per_char'] / unexpanded[n]['per_char'] - 1:+.1%}" for n in held_out)
            if base_encoding
            else "not measured"
        )
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\nReproduce ({minutes:.1f} min): python " + " ".join(sys.argv))
    if args.json:
        args.json.write_text(
            json.dumps({"compression": compression, "init": init_scores, "minutes": minutes}, indent=2)
        )


if __name__ == "__main__":
    sys.exit(main())
