"""``geo-factory build-corpus``: raw geoscience text to a clean pretraining corpus, on datatrove.

Stages, each a datatrove executor whose finished tasks are skipped on a re-run (``skip_completed``):

1. ``filter``: read → count tokens → normalise → language id → Gopher → C4 → PII → ``work/filtered``
2. ``exact_sigs`` → ``exact_find``: exact duplicates (hash of the normalised text)
3. ``minhash_sigs`` → ``minhash_buckets`` → ``minhash_cluster``: MinHash near-duplicates
4. ``final``: filtered → drop exact and near duplicates → ``corpus/*.jsonl`` (a ``text`` column)

Then ``dataset_info.json`` (an entry for ``stage: pt`` / ``tspt``) and ``report.json``: documents and tokens into
and out of every step, with examples of what each removed. ``--executor slurm`` submits the same stages as
dependent Slurm array jobs through datatrove's ``SlurmPipelineExecutor``.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


READERS = {".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".parquet": "parquet", ".txt": "txt"}
STEP_NAMES = ("normalise", "tokens", "language", "gopher", "c4", "pii", "exact_dedup", "near_dedup")
EXAMPLES = 3


@dataclass
class CorpusConfig:
    inputs: list[str]
    output: str
    name: str | None = None
    dataset_dir: str = "data"
    languages: tuple[str, ...] = ("zh", "en")
    min_doc_words: int = 50
    steps_off: tuple[str, ...] = ()
    tokenizer: str | None = None
    tasks: int = 2
    workers: int = -1
    executor: str = "local"
    slurm: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False

    def __post_init__(self):
        unknown = [s for s in self.steps_off if s not in ("normalise", "language", "quality", "dedup", "pii")]
        if unknown:
            raise ValueError(f"--skip-step {unknown[0]}: allowed: normalise, language, quality, dedup, pii.")
        if self.tasks < 1:
            raise ValueError(f"--tasks must be >= 1, got {self.tasks}.")
        if self.executor not in ("local", "slurm"):
            raise ValueError(f"--executor {self.executor}: allowed: local, slurm.")
        if self.executor == "slurm" and not self.slurm.get("partition"):
            raise ValueError("--executor slurm needs --slurm-partition.")
        if "language" not in self.steps_off:
            from .steps import LanguageFilter

            known = LanguageFilter.known_languages()
            if not self.languages:
                raise ValueError("--languages is empty: name the languages to keep, or --skip-step language.")
            unknown = [code for code in self.languages if code not in known]
            if unknown:
                raise ValueError(
                    f"--languages {','.join(unknown)}: not a language the offline detector knows; it knows "
                    f"(ISO 639 codes): {', '.join(sorted(known))}."
                )
        self.name = self.name or Path(self.output).name

    def settings(self) -> dict[str, Any]:
        """What decides the corpus: a resumed run must have the same (workers, executor and name do not)."""
        return {
            "inputs": _input_files(self),
            "languages": list(self.languages),
            "min_doc_words": self.min_doc_words,
            "steps_off": sorted(self.steps_off),
            "tokenizer": self.tokenizer,
            "tasks": self.tasks,
        }


def _split_input(spec: str) -> list[tuple[str, str, str]]:
    """``(reader kind, folder, glob)`` for a folder, a file or a glob of .jsonl / .parquet / .txt files."""
    if os.path.isdir(spec):
        found = {
            kind: f"**/*{ext}"
            for ext, kind in READERS.items()
            if glob.glob(os.path.join(spec, f"**/*{ext}"), recursive=True)
        }
        if not found:
            raise ValueError(f"{spec}: no .jsonl, .jsonl.gz, .parquet or .txt file in this folder.")
        return [(kind, spec, pattern) for kind, pattern in found.items()]
    if not glob.glob(spec, recursive=True):
        raise ValueError(f"{spec}: no such file, folder or matching files.")
    kinds = {next((k for e, k in READERS.items() if p.endswith(e)), None) for p in glob.glob(spec, recursive=True)}
    if None in kinds or len(kinds) != 1:
        raise ValueError(f"{spec}: expected .jsonl, .jsonl.gz, .parquet or .txt files (one kind per pattern).")
    parts = Path(spec).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts) - 1)
    return [(kinds.pop(), str(Path(*parts[:fixed])) if fixed else ".", str(Path(*parts[fixed:])))]


def _registry_input(name: str, dataset_dir: str) -> tuple[str, str, str, str]:
    """A registry dataset: its local file or folder (or hub id) and its text column."""
    from ..datasets import merged_registry

    info, _ = merged_registry(dataset_dir)
    entry = info[name]
    text_key = (entry.get("columns") or {}).get("prompt", "text")
    if "file_name" in entry:
        path = (
            entry["file_name"] if os.path.isabs(entry["file_name"]) else os.path.join(dataset_dir, entry["file_name"])
        )
        return (*_split_input(path)[0], text_key)
    if "hf_hub_url" in entry:
        return ("hf", entry["hf_hub_url"], entry.get("split", "train"), text_key)
    raise ValueError(f"`{name}`: only registry datasets with `file_name` or `hf_hub_url` can be read.")


def _sources(config: CorpusConfig) -> list[tuple[str, str, str, str]]:
    """``(reader kind, folder or hub id, glob or split, text key)`` of every input."""
    from ..datasets import merged_registry

    known, _ = merged_registry(config.dataset_dir)
    sources = []
    for spec in config.inputs:
        if spec in known and not os.path.exists(spec):
            sources.append(_registry_input(spec, config.dataset_dir))
        else:
            sources += [(*s, "text") for s in _split_input(spec)]
    return sources


def _input_files(config: CorpusConfig) -> list[dict[str, Any]]:
    """Every input file with its size and modification time (a hub dataset: its id and split)."""
    files = []
    for kind, folder, pattern, text_key in _sources(config):
        if kind == "hf":
            files.append({"hub": folder, "split": pattern, "text_key": text_key})
            continue
        for path in sorted(glob.glob(os.path.join(folder, pattern), recursive=True)):
            stat = os.stat(path)
            files.append({"path": os.path.abspath(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return files


def _readers(config: CorpusConfig) -> list:
    from datatrove.pipeline.readers import HuggingFaceDatasetReader, JsonlReader, ParquetReader

    from .steps import TextFileReader, counting_adapter

    readers = []
    for kind, folder, pattern, text_key in _sources(config):
        if kind == "hf":
            readers.append(
                HuggingFaceDatasetReader(folder, {"split": pattern}, text_key=text_key, adapter=counting_adapter)
            )
        else:
            cls = {"jsonl": JsonlReader, "parquet": ParquetReader, "txt": TextFileReader}[kind]
            readers.append(cls(folder, glob_pattern=pattern, text_key=text_key, adapter=counting_adapter))
    return readers


def _doc_text(doc) -> bytes:
    return doc.text.encode("utf-8")


def _writer(folder: Path, slim: bool = False):
    from datatrove.pipeline.writers import JsonlWriter

    return JsonlWriter(str(folder), compression=None, adapter=_text_only if slim else None)


def _text_only(_writer, doc) -> dict[str, Any]:
    return {"text": doc.text}


def build_stages(config: CorpusConfig) -> list[tuple[str, list, int]]:
    """``(stage name, pipeline, tasks)`` in order."""
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.exact_dedup import (
        ExactDedupConfig,
        ExactDedupFilter,
        ExactDedupSignature,
        ExactFindDedups,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.hashing import HashConfig

    from .steps import (
        GeoC4Filter,
        GeoGopherFilter,
        GeoWordTokenizer,
        LanguageFilter,
        Normalizer,
        PIIRemover,
        StageReader,
        TokenCounter,
    )

    out, work = Path(config.output), Path(config.output) / "work"
    removed = work / "removed"
    off = set(config.steps_off)
    first: list = [*_readers(config), TokenCounter(config.tokenizer)]
    if "normalise" not in off:
        first.append(Normalizer())
    if "language" not in off:
        first.append(LanguageFilter(config.languages, exclusion_writer=_writer(removed / "language")))
    if "quality" not in off:
        first.append(GeoGopherFilter(config.min_doc_words, exclusion_writer=_writer(removed / "gopher")))
        first.append(GeoC4Filter(exclusion_writer=_writer(removed / "c4")))
    if "pii" not in off:
        first.append(PIIRemover())
    first.append(_writer(work / "filtered"))
    stages = [("filter", first, config.tasks)]

    def filtered():
        return StageReader(str(work / "filtered"), glob_pattern="*.jsonl")

    final: list = [filtered()]
    if "dedup" not in off:
        exact = ExactDedupConfig(content_getter=_doc_text)
        minhash = MinhashConfig(hash_config=HashConfig(hash_fc="sha1"))  # its xxhash path fails on xxhash 4
        exact_filter = ExactDedupFilter(str(work / "exact_dups"), exact, exclusion_writer=_writer(removed / "exact"))
        stages += [
            ("exact_sigs", [filtered(), ExactDedupSignature(str(work / "exact_sigs"), exact)], config.tasks),
            ("exact_find", [ExactFindDedups(str(work / "exact_sigs"), str(work / "exact_dups"), exact)], 1),
            (
                "minhash_sigs",
                [
                    filtered(),
                    exact_filter,
                    MinhashDedupSignature(str(work / "minhash_sigs"), minhash, GeoWordTokenizer()),
                ],
                config.tasks,
            ),
            (
                "minhash_buckets",
                [MinhashDedupBuckets(str(work / "minhash_sigs"), str(work / "minhash_buckets"), config=minhash)],
                minhash.num_buckets,
            ),
            (
                "minhash_cluster",
                [MinhashDedupCluster(str(work / "minhash_buckets"), str(work / "minhash_ids"), config=minhash)],
                1,
            ),
        ]
        near = MinhashDedupFilter(str(work / "minhash_ids"), exclusion_writer=_writer(removed / "near"))
        final += [ExactDedupFilter(str(work / "exact_dups"), exact, exclusion_writer=_writer(removed / "exact")), near]
    final.append(_writer(out / "corpus", slim=True))
    stages.append(("final", final, config.tasks))
    return stages


def _executors(config: CorpusConfig, stages: list[tuple[str, list, int]]) -> list:
    from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor

    logs, executors, previous = Path(config.output) / "work" / "logs", [], None
    for name, pipeline, tasks in stages:
        if config.executor == "local":
            executor = LocalPipelineExecutor(
                pipeline, tasks=tasks, workers=config.workers, logging_dir=str(logs / name), depends=previous
            )
        else:
            executor = SlurmPipelineExecutor(
                pipeline,
                tasks=tasks,
                time=config.slurm.get("time", "24:00:00"),
                partition=config.slurm["partition"],
                cpus_per_task=config.slurm.get("cpus_per_task", 1),
                mem_per_cpu_gb=config.slurm.get("mem_per_cpu_gb", 2),
                job_name=f"{config.name}_{name}",
                logging_dir=str(logs / name),
                slurm_logs_folder=str(logs / name / "slurm_logs"),
                depends=previous,
                venv_path=config.slurm.get("venv_path"),
                sbatch_args=config.slurm.get("sbatch_args"),
            )
        executors.append(executor)
        previous = executor
    return executors


SETTINGS = "settings.json"  # in OUTPUT/work: what the corpus is built from, so that only the same run resumes
OUTPUTS = ("work", "corpus", "dataset_info.json", "report.json")  # what --overwrite removes


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The settings and input files that differ, in words."""
    parts = [
        f"{key} was {old.get(key)!r}, now {new[key]!r}" for key in new if key != "inputs" and old.get(key) != new[key]
    ]
    before = {f.get("path") or f.get("hub"): f for f in old.get("inputs", [])}
    now = {f.get("path") or f.get("hub"): f for f in new["inputs"]}
    for what, names in (
        ("new inputs", [p for p in now if p not in before]),
        ("inputs no longer given", [p for p in before if p not in now]),
        ("inputs changed since (size or time)", [p for p in now if p in before and now[p] != before[p]]),
    ):
        if names:
            parts.append(f"{what}: {', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''}")
    return "; ".join(parts)


def _prepare_output(config: CorpusConfig) -> dict[str, Any]:
    """Resume only what the same inputs and settings started; record them for the next run."""
    import shutil

    from ..extras import write_json_atomic

    out, settings = Path(config.output), config.settings()
    record = out / "work" / SETTINGS
    if config.overwrite:
        for name in OUTPUTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    elif record.is_file():
        previous = json.loads(record.read_text(encoding="utf-8"))
        if previous != settings:
            raise ValueError(
                f"--output {out} holds a corpus built from other inputs or settings ({_difference(previous, settings)}); "
                "a run resumes only the same build: choose another --output, or add --overwrite to start over."
            )
    elif out.is_dir() and any(out.iterdir()):
        raise ValueError(
            f"--output {out} is not empty and holds no build-corpus record ({record}): choose an empty or new "
            f"folder, or add --overwrite to replace {', '.join(OUTPUTS)} there."
        )
    record.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, settings)
    return settings


def build_corpus(config: CorpusConfig) -> dict[str, Any] | None:
    """Run (or, with Slurm, submit) every stage; locally, write dataset_info.json and report.json and return it."""
    stages = build_stages(config)  # reads the inputs' file lists: bad inputs fail before any work
    settings = _prepare_output(config)
    executors = _executors(config, stages)
    executors[-1].run()  # runs (or submits) its dependencies first
    if config.executor == "slurm":
        return None
    return write_outputs(config, settings)


def write_outputs(config: CorpusConfig, settings: dict[str, Any]) -> dict[str, Any]:
    from ..extras import write_json_atomic

    out = Path(config.output)
    (out / "corpus").mkdir(exist_ok=True)  # empty when the filters kept no document: the writer made no file
    write_json_atomic(out / "dataset_info.json", {config.name: {"file_name": "corpus", "columns": {"prompt": "text"}}})
    report = make_report(out)
    report["settings"] = settings
    write_json_atomic(out / "report.json", report)
    return report


def _stats(out: Path, stage: str) -> list[dict[str, Any]]:
    """One stage's stats over all its shards: datatrove's own stats.json covers only the shards of its last run
    (a resumed run skips the others), so the per-shard files are merged as its ``merge_stats`` tool does."""
    from datatrove.utils.stats import PipelineStats

    shards = sorted((out / "work" / "logs" / stage / "stats").glob("*.json"))
    merged = sum((PipelineStats.from_json(json.loads(path.read_text())) for path in shards), start=PipelineStats())
    return json.loads(merged.to_json()) if shards else []


def _examples(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                meta = doc.get("metadata", {})
                reason = meta.get("filter_reason")
                rows.append({"id": doc.get("id"), "reason": reason, "text": doc["text"][:300]})
                if len(rows) >= EXAMPLES:
                    return rows
    return rows


def make_report(out: Path) -> dict[str, Any]:
    """Docs and tokens in and out of every step, read from datatrove's merged stats, with removed examples, and the
    input rows the readers skipped for want of text."""
    removed = {"language": "language", "quality (Gopher)": "gopher", "quality (C4)": "c4"}
    steps, tokens_read, without_text = [], 0, 0
    for stage in ("filter", "final"):
        for i, step in enumerate(_stats(out, stage)):
            name = step["name"].split(": ", 1)[-1]
            stats = {k: v["total"] if isinstance(v, dict) else v for k, v in step["stats"].items()}  # sums
            if name == "token counter":
                tokens_read = stats.get("doc_len_tokens", 0)
            kind = step["name"].split(": ", 1)[0]
            if "READER" in kind:
                without_text += stats.get("no_text", 0)
            if name == "token counter" or "total" not in stats or "WRITER" in kind or "READER" in kind:
                continue
            key = removed.get(name)
            if "exact-deduplication" in name:
                key, name = "exact", "exact dedup"
            elif "MinHash" in name:
                key, name = "near", "near dedup (MinHash)"
            tokens = stats.get("doc_len_tokens")
            if tokens is None:  # MinhashDedupFilter records no document stats: the writer after it does
                tokens = _stats(out, stage)[i + 1]["stats"].get("doc_len_tokens", {}).get("total")
            entry = {
                "step": name,
                "docs_in": stats.get("total", 0),
                "docs_out": stats.get("forwarded", stats.get("total", 0) - stats.get("dropped", 0)),
                "tokens_out": tokens or 0,
                "modified": stats.get("modified", 0),
            }
            if key is not None:
                entry["removed_examples"] = _examples(out / "work" / "removed" / key)
                entry["reasons"] = {k[8:]: v for k, v in stats.items() if k.startswith("dropped_")}
            steps.append(entry)
    for previous, entry in zip([None, *steps], steps):
        entry["tokens_in"] = tokens_read if previous is None else previous["tokens_out"]
    docs_in = steps[0]["docs_in"] if steps else 0
    docs_out = steps[-1]["docs_out"] if steps else 0
    return {
        "rows_without_text": without_text,
        "docs_in": docs_in,
        "docs_out": docs_out,
        "steps": steps,
        "corpus": str(out / "corpus"),
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{'step':<22} {'docs in':>9} {'docs out':>9} {'removed':>8} {'tokens in':>11} {'tokens out':>11}"]
    for s in report["steps"]:
        lines.append(
            f"{s['step']:<22} {s['docs_in']:>9,} {s['docs_out']:>9,} {s['docs_in'] - s['docs_out']:>8,} "
            f"{s['tokens_in']:>11,} {s['tokens_out']:>11,}"
        )
    for s in report["steps"]:
        for example in s.get("removed_examples", [])[:1]:
            text = " ".join(example["text"].split())[:100]
            reason = f" ({example['reason']})" if example["reason"] else ""
            lines.append(f"  removed by {s['step']}{reason}: {text}")
    return "\n".join(lines)
