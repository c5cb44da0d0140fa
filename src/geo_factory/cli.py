"""``geo-factory``: the few commands that are not ``llamafactory-cli`` commands."""

from __future__ import annotations

import argparse
import sys


def _tiny_model(args: argparse.Namespace) -> None:
    from .tiny import build_tiny_model

    path = build_tiny_model(args.output_dir, vocab_size=args.vocab_size, seed=args.seed)
    print(f"tiny Mistral model and tokenizer written to {path}")


def _datasets(args: argparse.Namespace) -> None:
    from .datasets import describe, registry_dir

    rows = describe()
    width = max(len(name) for name, _ in rows)
    print(f"geo-factory registry: {registry_dir() / 'dataset_info.json'}")
    for name, source in rows:
        print(f"  {name:<{width}}  {source}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="geo-factory", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    tiny = commands.add_parser("tiny-model", help="Build the tiny offline Mistral model the demo and tests use.")
    tiny.add_argument("output_dir", nargs="?", default="models/tiny-mistral")
    tiny.add_argument("--vocab-size", type=int, default=2048)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_tiny_model)

    datasets = commands.add_parser("datasets", help="List the datasets geo-factory registers.")
    datasets.set_defaults(func=_datasets)

    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    args.func(args)
