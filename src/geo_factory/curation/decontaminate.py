"""Keep GeoBench out of training data: drop every row that shares a long n-gram with a GeoBench item.

GeoBench's NPEE and AP questions are public exam questions that web corpora and instruction sets contain.
A row is dropped when it shares ``n`` consecutive tokens (13 by default) with any GeoBench question stem,
option, option set or reference answer. Tokens are lower-cased words, and single characters for Chinese
(and other CJK scripts), after NFKC normalisation, so that re-cased, re-spaced or re-punctuated copies match.
A field shorter than ``n`` tokens is matched as part of its whole item (stem, options and answer in the
published order). Copies with reordered options are matched without n-grams too: a row that holds a stem of
at least :data:`MIN_STEM` tokens and every one of its options (in any order) is dropped.

Speed (a 100k-row set is scanned in a few seconds): a row shares an ``n``-gram with GeoBench only if, at one of
its positions ``0, s, 2s, ...`` (``s = n - k + 1``), it holds a GeoBench ``k``-gram (``k = n - n // 2``), so
only those positions are probed, and only a row with a hit is checked in full. The stem rule is probed by one
token per stem (its rarest in GeoBench) before the stem and options are looked for. The exact ``n``-gram table
is built the first time a probe hits (a clean set never pays for it), and a set of at least
:data:`PARALLEL_ROWS` rows is scanned on ``preprocessing_num_workers`` forked processes.

GeoBench is read where ``llamafactory-cli eval`` reads it: ``task_dir``, or the hub dataset.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset


REPORT_NAME = "geobench_decontamination.json"
_TOKEN = re.compile(
    r"[\u2e80-\u2fff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\W_]+", re.UNICODE
)


_ASCII_SEPARATORS = {i: " " for i in range(128) if not chr(i).isalnum()}


def tokens(text: str) -> list[str]:
    """Lower-cased words, CJK characters one by one; punctuation and spacing ignored."""
    if text.isascii():  # the same tokens as the pattern gives, at C speed (NFKC leaves ASCII as it is)
        return text.lower().translate(_ASCII_SEPARATORS).split()
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def ngrams(toks: list[str], n: int) -> set[tuple[str, ...]]:
    return set(zip(*(toks[i:] for i in range(n))))


MIN_STEM = 5  # tokens; shorter stems ("Define: tephra") are matched through their reference answers only


def _item_fields(question: Any) -> list[str]:
    """The texts of one GeoBench item that must not appear in training data.

    The whole item holds the stem, each option, the question and the reference as runs of its tokens, so their
    n-grams are among its own: only the options without their labels need a text of their own.
    """
    from ..eval.data import ChoiceQuestion

    if isinstance(question, ChoiceQuestion):
        options = [text for _, text in question.options if text]
        whole = "\n".join([question.stem, *(f"{label}. {text}" for label, text in question.options), question.answer])
        return [" ".join(options), whole]
    return [f"{question.question}\n{question.reference or ''}"]


@dataclass
class GeoBenchIndex:
    """Every n-gram of every GeoBench item, mapped to the ids (``task:id``) of the items that hold it."""

    n: int
    source: str
    fields: list[tuple[str, list[str]]] = field(default_factory=list)  # (item id, its texts)
    probes: set[tuple[str, ...]] = field(default_factory=set)  # every k-gram of every field
    # order-free rule: (item id, stem, options) as space-joined tokens, and how often each stem token occurs
    stems: list[tuple[str, str, list[str]]] = field(default_factory=list)
    stem_counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    _grams: dict[tuple[str, ...], set[str]] | None = None
    _anchors: dict[str, list[tuple[str, str, list[str]]]] | None = None

    @property
    def items(self) -> int:
        return len(self.fields)

    @property
    def k(self) -> int:
        return self.n - self.n // 2

    @classmethod
    def load(cls, task_dir: str | None, n: int, cache_dir: str | None = None) -> GeoBenchIndex:
        from ..eval.families.geobench import load_all, resolve_task_dir

        start = time.perf_counter()
        folder = resolve_task_dir(task_dir, cache_dir=cache_dir)
        index = cls(n=n, source=str(folder))
        for name, questions in load_all(str(folder)).items():
            for question in questions:
                options = [text for _, text in getattr(question, "options", ()) if text]
                index.add(f"{name}:{question.id}", _item_fields(question), getattr(question, "stem", ""), options)
        index.seconds = time.perf_counter() - start
        return index

    def add(self, item_id: str, texts: Iterable[str], stem: str = "", options: Iterable[str] = ()) -> None:
        texts = list(texts)
        self.fields.append((item_id, texts))
        for text in texts:
            self.probes.update(ngrams(tokens(text), self.k))
        self._grams = None
        stem_tokens = tokens(stem)
        option_tokens = [" ".join(tokens(option)) for option in options]
        if len(stem_tokens) >= MIN_STEM and all(option_tokens):
            self.stems.append((item_id, " ".join(stem_tokens), option_tokens))
            self.stem_counts.update(set(stem_tokens))
            self._anchors = None

    @property
    def grams(self) -> dict[tuple[str, ...], set[str]]:
        """Each n-gram of the fields, with the ids of the items that hold it."""
        if self._grams is None:
            self._grams = {}
            for item_id, texts in self.fields:
                for text in texts:
                    for gram in ngrams(tokens(text), self.n):
                        self._grams.setdefault(gram, set()).add(item_id)
        return self._grams

    def anchors(self) -> dict[str, list[tuple[str, str, list[str]]]]:
        """Each stem under its rarest token: a row without that token cannot hold the stem."""
        if self._anchors is None:
            self._anchors = {}
            for entry in self.stems:
                rarest = min(entry[1].split(" "), key=lambda tok: (self.stem_counts[tok], -len(tok)))
                self._anchors.setdefault(rarest, []).append(entry)
        return self._anchors

    def match(self, text: str) -> set[str]:
        """Ids of the GeoBench items ``text`` shares an n-gram with, or holds stem and options of (empty: clean)."""
        toks = tokens(text)
        k, stride, matched = self.k, self.n - self.k + 1, set()
        # the k-grams at 0, stride, 2 * stride, ...: k strided slices zipped, all in C
        if not self.probes.isdisjoint(zip(*(toks[j::stride] for j in range(k)))):
            # membership tests, not set.intersection(dict), which would copy the whole index into a set per call
            shared = [gram for gram in ngrams(toks, self.n) if gram in self.grams]
            matched.update(*(self.grams[gram] for gram in shared))
        anchors = self.anchors()
        hits = anchors.keys() & toks  # in C: each token looked up in the dictionary
        if hits:
            joined = f" {' '.join(toks)} "
            for tok in hits:
                for item_id, stem, options in anchors[tok]:
                    if f" {stem} " in joined and all(f" {option} " in joined for option in options):
                        matched.add(item_id)
        return matched


_INDEXES: dict[tuple[str | None, int], GeoBenchIndex] = {}


def get_index(task_dir: str | None, n: int, cache_dir: str | None = None, keys: tuple[str, ...] = ()) -> GeoBenchIndex:
    """One index per process and setting: parsing builds it (and so checks GeoBench is there), loading reuses it.

    ``keys``: the caller's settings that give ``task_dir``; with all of them unset, GeoBench comes from the hub, and
    when it cannot, the error names them.
    """
    key = (task_dir, n)
    if key not in _INDEXES:
        try:
            _INDEXES[key] = GeoBenchIndex.load(task_dir, n, cache_dir=cache_dir)
        except ValueError as err:
            if task_dir is not None or not keys:
                raise
            from ..hparams.checks import ConfigError

            named = " or ".join(f"`{name}`" for name in keys)
            raise ConfigError(
                keys[0],
                f"Set {named} to a local GeoBench folder: none is set, and GeoBench could not be read from the hub: "
                f"{err}",
            ) from None
    return _INDEXES[key]


def _row_text(row: dict[str, Any]) -> str:
    """All the text of one row aligned by LLaMA-Factory (``_prompt``, ``_response``, ``_system``)."""
    parts = [row.get("_system") or ""]
    for key in ("_prompt", "_response"):
        parts.extend(message.get("content") or "" for message in row.get(key) or [])
    return "\n".join(parts)


def scan(texts: Iterable[str], index: GeoBenchIndex, start: int = 0) -> dict[int, list[str]]:
    """The matched GeoBench ids of each contaminated text, by its position (counted from ``start``)."""
    dropped = {}
    for i, text in enumerate(texts, start):
        matched = index.match(text)
        if matched:
            dropped[i] = sorted(matched)
    return dropped


_ALIGNED = ("_system", "_prompt", "_response")
PARALLEL_ROWS = 20_000  # below this, starting worker processes costs more than it saves
_WORK: tuple[Dataset, GeoBenchIndex] | None = None  # what a forked worker scans


def _batch_texts(table: Any) -> list[str]:
    """The text of each aligned row, assembled by Arrow in C: no per-row Python dictionaries."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_list(column.type):  # messages: their contents, one per line
            values = column.values  # of a column of empty lists (pt's `_response`), typed null
            contents = (
                values.field("content") if pa.types.is_struct(values.type) else pa.nulls(len(values), pa.string())
            )
            contents = pc.fill_null(contents, "")
            column = pc.binary_join(pa.ListArray.from_arrays(column.offsets, contents), "\n")
        parts.append(pc.fill_null(column.cast(pa.string()) if pa.types.is_null(column.type) else column, ""))
    return pc.binary_join_element_wise(*parts, "\n").to_pylist()


def _scan_rows(start: int, end: int, work: tuple[Dataset, GeoBenchIndex] | None = None) -> dict[int, list[str]]:
    dataset, index = work or _WORK
    columns = [c for c in _ALIGNED if c in dataset.column_names]
    rows = dataset.select(range(start, end)).select_columns(columns).with_format("arrow")
    return scan((text for batch in rows.iter(batch_size=10_000) for text in _batch_texts(batch)), index, start)


def _set_work(dataset: Dataset, index: GeoBenchIndex) -> None:
    global _WORK
    _WORK = (dataset, index)


def scan_aligned(dataset: Dataset, index: GeoBenchIndex, workers: int) -> dict[int, list[str]]:
    """The matched GeoBench ids of each contaminated row, on ``workers`` forked processes.

    Forked, so the workers share the index and the memory-mapped dataset instead of receiving pickled copies.
    """
    import multiprocessing

    if workers <= 1:
        return _scan_rows(0, len(dataset), (dataset, index))
    bounds = [(len(dataset) * w // workers, len(dataset) * (w + 1) // workers) for w in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers, initializer=_set_work, initargs=(dataset, index)) as pool:
        parts = pool.starmap(_scan_rows, bounds)
    return {row: ids for part in parts for row, ids in part.items()}


def summarize(name: str, total: int, dropped: dict[int, list[str]]) -> dict[str, Any]:
    ids = sorted({item for items in dropped.values() for item in items})
    return {"dataset": name, "rows": total, "dropped": len(dropped), "kept": total - len(dropped), "geobench_ids": ids}


# ---------------------------------------------------------------------------------------------
# Inside `llamafactory-cli train`: called on every dataset LLaMA-Factory aligns (see hooks.py).

_REPORTS: dict[str, dict[str, Any]] = {}


def decontaminate_aligned(
    dataset: Dataset | IterableDataset, name: str, data_args: Any, training_args: Any
) -> Dataset | IterableDataset:
    """Drop the contaminated rows of one aligned dataset; log the count and write it next to the outputs."""
    from datasets import IterableDataset
    from llamafactory.extras import logging

    args = getattr(data_args, "geobench_decontamination", None)
    if args is None:
        return dataset
    logger = logging.get_logger(f"llamafactory.{__name__}")
    index = get_index(args.geobench_decontaminate_task_dir, args.geobench_decontaminate_ngram)
    if isinstance(dataset, IterableDataset):  # a stream cannot be counted before training: filter it lazily
        logger.warning_rank0(
            f"GeoBench decontamination of the stream `{name}`: contaminated rows are skipped as they are read; "
            "they are not counted (only a dataset loaded in full is counted)."
        )
        _record(training_args, {"dataset": name, "streaming": True, "rows": None, "dropped": None})
        return dataset.filter(lambda row: not index.match(_row_text(row)))

    start = time.perf_counter()
    workers = getattr(data_args, "preprocessing_num_workers", None) or 1
    workers = workers if len(dataset) >= PARALLEL_ROWS else 1
    dropped = scan_aligned(dataset, index, workers)
    report = {
        **summarize(name, len(dataset), dropped),
        "seconds": round(time.perf_counter() - start, 3),
        "index_seconds": round(index.seconds, 3),  # reading GeoBench once per run, before the first dataset
        "processes": workers,
    }
    logger.info_rank0(
        f"GeoBench decontamination ({index.n}-grams, {index.items} items from {index.source}): dropped "
        f"{report['dropped']} of {report['rows']} rows of `{name}`, matching {len(report['geobench_ids'])} "
        f"GeoBench items ({report['seconds']:.2f} s on {workers} process{'es' if workers > 1 else ''})."
    )
    _record(training_args, report)
    return dataset.select([i for i in range(len(dataset)) if i not in dropped]) if dropped else dataset


def _record(training_args: Any, report: dict[str, Any]) -> None:
    from ..extras import write_json_atomic

    output_dir = Path(training_args.output_dir)
    reports = _REPORTS.setdefault(str(output_dir), {})
    reports[report["dataset"]] = report
    if training_args.should_save:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / REPORT_NAME, {"datasets": list(reports.values())})


# ---------------------------------------------------------------------------------------------
# `geo-factory decontaminate`: the same on files.


def _file_text(row: Any) -> str:
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        return "\n".join(_file_text(value) for value in row.values())
    if isinstance(row, list):
        return "\n".join(_file_text(value) for value in row)
    return ""


def decontaminate_files(
    inputs: list[str], output_dir: str, task_dir: str | None, n: int, cache_dir: str | None = None
) -> list[dict[str, Any]]:
    """Each .json (a list of rows) or .jsonl file, every string of a row checked, written clean to ``output_dir``.

    Every file is read before anything is written, so a bad file, or two files that would be written to the same
    name, stop the command with the output folder untouched.
    """
    import json

    from ..extras import write_json_atomic
    from ..rows import read_rows

    paths = [Path(p) for p in inputs]
    for path in paths:
        if path.suffix not in (".json", ".jsonl"):
            raise ValueError(f"{path}: expected a .json (list of rows) or .jsonl file.")
        if not path.is_file():
            raise ValueError(f"{path}: no such file.")
    out = Path(output_dir)
    written: dict[str, Path] = {}
    for path in paths:
        if path.name in written:
            raise ValueError(
                f"{written[path.name]} and {path} would both be written to {out / path.name}: give files of "
                "different names, or run once per file with its own --output."
            )
        written[path.name] = path
    _check_output_spares_inputs(out, paths)
    contents = [(path, read_rows(path)) for path in paths]
    index = get_index(task_dir, n, cache_dir=cache_dir)
    reports = []
    out.mkdir(parents=True, exist_ok=True)
    for path, rows in contents:
        dropped = scan(map(_file_text, rows), index)
        clean = [row for i, row in enumerate(rows) if i not in dropped]
        if path.suffix == ".jsonl":
            (out / path.name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in clean), "utf-8")
        else:
            write_json_atomic(out / path.name, clean)
        reports.append({**summarize(str(path), len(rows), dropped), "dropped_rows": dropped})
    write_json_atomic(out / REPORT_NAME, {"ngram": n, "geobench": index.source, "datasets": reports})
    return reports


def _check_output_spares_inputs(out: Path, inputs: list[Path]) -> None:
    """Refuse an ``--output`` that is an input, or that would write a clean file or the report over one: the inputs
    are only read."""
    if out.exists() and any(out.samefile(path) for path in inputs):
        raise ValueError(f"--output {out} is an input file: name a folder for the clean files.")
    for target in [*(out / path.name for path in inputs), out / REPORT_NAME]:
        hit = next((path for path in inputs if target.exists() and target.samefile(path)), None)
        if hit is not None:
            raise ValueError(
                f"--output {out} would write {target} over the input {hit}: choose another folder (the inputs stay "
                "as they are)."
            )
