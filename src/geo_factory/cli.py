"""``geo-factory``: the few commands that are not ``llamafactory-cli`` commands."""

from __future__ import annotations

import argparse
import sys


def _tiny_model(args: argparse.Namespace) -> None:
    from .tiny import build_tiny_model

    path = build_tiny_model(
        args.output_dir, vocab_size=args.vocab_size, pretrain_steps=args.pretrain_steps, seed=args.seed
    )
    print(f"tiny Mistral model and tokenizer written to {path}")


def _datasets(args: argparse.Namespace) -> None:
    from .datasets import describe, registry_dir

    rows = describe()
    width = max(len(name) for name, _ in rows)
    print(f"geo-factory registry: {registry_dir() / 'dataset_info.json'}")
    for name, source in rows:
        print(f"  {name:<{width}}  {source}")


def _expand_vocab(args: argparse.Namespace) -> None:
    from .vocab import expand_command

    path = expand_command(
        args.model,
        args.dataset,
        args.vocab_size,
        args.init,
        args.output,
        dataset_dir=args.dataset_dir,
        streaming=args.streaming,
        max_chars=args.max_chars,
        trust_remote_code=args.trust_remote_code,
        overwrite=args.overwrite,
        seed=args.seed,
    )
    print(f"expanded model and tokenizer written to {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="geo-factory", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    tiny = commands.add_parser("tiny-model", help="Build the tiny offline Mistral model the demo and tests use.")
    tiny.add_argument("output_dir", nargs="?", default="models/tiny-mistral")
    tiny.add_argument("--vocab-size", type=int, default=2048)
    tiny.add_argument("--pretrain-steps", type=int, default=150, help="Steps on the general corpus (0: random).")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_tiny_model)

    datasets = commands.add_parser("datasets", help="List the datasets geo-factory registers.")
    datasets.set_defaults(func=_datasets)

    expand = commands.add_parser(
        "expand-vocab", help="Add domain vocabulary to a model (PreparedLLM): TSPT's stage 0 on its own."
    )
    expand.add_argument("--model", required=True, help="Base model: a local folder or a hub id.")
    expand.add_argument(
        "--dataset", required=True, help="Corpora to learn the pieces on: comma-separated registry names."
    )
    expand.add_argument("--vocab-size", type=int, required=True, help="How many new tokens to add (at most).")
    expand.add_argument("--init", default="prepared", help="New embedding rows: prepared (default), mean or random.")
    expand.add_argument("--output", required=True, help="Folder for the expanded model and tokenizer.")
    expand.add_argument("--dataset-dir", default="data", help="Folder of your own dataset_info.json.")
    expand.add_argument("--streaming", action="store_true", help="Stream hub corpora instead of downloading them.")
    expand.add_argument("--max-chars", type=int, default=None, help="Characters read per corpus (default: 1e9).")
    expand.add_argument("--trust-remote-code", action="store_true")
    expand.add_argument("--overwrite", action="store_true", help="Replace what --output holds.")
    expand.add_argument("--seed", type=int, default=42, help="Seed of `--init random`.")
    expand.set_defaults(func=_expand_vocab)

    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    args.func(args)
