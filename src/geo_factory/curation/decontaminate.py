"""Keep GeoBench out of training data: drop every row that shares a long n-gram with a GeoBench item.

GeoBench's NPEE and AP questions are public exam questions that web corpora and instruction sets contain.
A row is dropped when it shares ``n`` consecutive tokens (13 by default) with any GeoBench question stem,
option, option set or reference answer. Tokens are lower-cased words, and single characters for Chinese
(and other CJK scripts), after NFKC normalisation, so that re-cased, re-spaced or re-punctuated copies match.
A field shorter than ``n`` tokens is matched as part of its whole item (stem, options and answer in the
published order). Copies with reordered options are matched without n-grams too: a row that holds a stem of
at least :data:`MIN_STEM` tokens and every one of its options (in any order) is dropped.

GeoBench is read where ``llamafactory-cli eval`` reads it: ``task_dir``, or the hub dataset.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset


REPORT_NAME = "geobench_decontamination.json"
_TOKEN = re.compile(
    r"[\u2e80-\u2fff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\W_]+", re.UNICODE
)


def tokens(text: str) -> list[str]:
    """Lower-cased words, CJK characters one by one; punctuation and spacing ignored."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def ngrams(toks: list[str], n: int) -> set[tuple[str, ...]]:
    return set(zip(*(toks[i:] for i in range(n))))


MIN_STEM = 5  # tokens; shorter stems ("Define: tephra") are matched through their reference answers only


def _item_fields(question: Any) -> list[str]:
    """The texts of one GeoBench item that must not appear in training data."""
    from ..eval.data import ChoiceQuestion

    if isinstance(question, ChoiceQuestion):
        options = [text for _, text in question.options if text]
        whole = "\n".join([question.stem, *(f"{label}. {text}" for label, text in question.options), question.answer])
        return [question.stem, *options, " ".join(options), whole]
    return [question.question, question.reference or "", f"{question.question}\n{question.reference or ''}"]


@dataclass
class GeoBenchIndex:
    """Every n-gram of every GeoBench item, mapped to the ids (``task:id``) of the items that hold it."""

    n: int
    source: str
    grams: dict[tuple[str, ...], set[str]] = field(default_factory=dict)
    # order-free rule: first MIN_STEM tokens of a stem -> (item id, stem, options) as space-joined tokens
    stems: dict[tuple[str, ...], list[tuple[str, str, list[str]]]] = field(default_factory=dict)
    items: int = 0

    @classmethod
    def load(cls, task_dir: str | None, n: int, cache_dir: str | None = None) -> GeoBenchIndex:
        from ..eval.data import detect_layout, resolve_task_dir
        from ..eval.tasks import OBJECTIVE_SUITE, SUBJECTIVE_SUITE, expand

        folder = resolve_task_dir(task_dir, cache_dir=cache_dir)
        layout = detect_layout(folder)
        index = cls(n=n, source=str(folder))
        for task in expand([OBJECTIVE_SUITE, SUBJECTIVE_SUITE], layout, folder):
            if task.file_in(layout) is None or not (folder / task.file_in(layout)).is_file():
                continue
            for question in task.load(folder, layout):
                options = [text for _, text in getattr(question, "options", ()) if text]
                index.add(f"{task.name}:{question.id}", _item_fields(question), getattr(question, "stem", ""), options)
        return index

    def add(self, item_id: str, texts: Iterable[str], stem: str = "", options: Iterable[str] = ()) -> None:
        self.items += 1
        for text in texts:
            for gram in ngrams(tokens(text), self.n):
                self.grams.setdefault(gram, set()).add(item_id)
        stem_tokens = tokens(stem)
        option_tokens = [" ".join(tokens(option)) for option in options]
        if len(stem_tokens) >= MIN_STEM and all(option_tokens):
            entry = (item_id, " ".join(stem_tokens), option_tokens)
            self.stems.setdefault(tuple(stem_tokens[:MIN_STEM]), []).append(entry)

    def match(self, text: str) -> set[str]:
        """Ids of the GeoBench items ``text`` shares an n-gram with, or holds stem and options of (empty: clean)."""
        toks = tokens(text)
        # membership tests, not set.intersection(dict), which would copy the whole index into a set per call
        shared = [gram for gram in ngrams(toks, self.n) if gram in self.grams]
        matched = set().union(*(self.grams[gram] for gram in shared)) if shared else set()
        anchors = [anchor for anchor in ngrams(toks, MIN_STEM) if anchor in self.stems]
        if anchors:
            joined = f" {' '.join(toks)} "
            for anchor in anchors:
                for item_id, stem, options in self.stems[anchor]:
                    if f" {stem} " in joined and all(f" {option} " in joined for option in options):
                        matched.add(item_id)
        return matched


_INDEXES: dict[tuple[str | None, int], GeoBenchIndex] = {}


def get_index(task_dir: str | None, n: int, cache_dir: str | None = None) -> GeoBenchIndex:
    """One index per process and setting: parsing builds it (and so checks GeoBench is there), loading reuses it."""
    key = (task_dir, n)
    if key not in _INDEXES:
        _INDEXES[key] = GeoBenchIndex.load(task_dir, n, cache_dir=cache_dir)
    return _INDEXES[key]


def _row_text(row: dict[str, Any]) -> str:
    """All the text of one row aligned by LLaMA-Factory (``_prompt``, ``_response``, ``_system``)."""
    parts = [row.get("_system") or ""]
    for key in ("_prompt", "_response"):
        parts.extend(message.get("content") or "" for message in row.get(key) or [])
    return "\n".join(parts)


def scan(texts: Iterable[str], index: GeoBenchIndex) -> tuple[list[int], dict[int, list[str]]]:
    """Indices of the clean texts, and the matched GeoBench ids of each dropped one."""
    keep, dropped = [], {}
    for i, text in enumerate(texts):
        matched = index.match(text)
        if matched:
            dropped[i] = sorted(matched)
        else:
            keep.append(i)
    return keep, dropped


def _aligned_texts(dataset: Dataset, batch_size: int = 1000) -> Iterator[str]:
    columns = [c for c in ("_system", "_prompt", "_response") if c in dataset.column_names]
    for batch in dataset.select_columns(columns).iter(batch_size=batch_size):
        for i in range(len(batch[columns[0]])):
            yield _row_text({c: batch[c][i] for c in columns})


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
    keep, dropped = scan(_aligned_texts(dataset), index)
    report = {**summarize(name, len(dataset), dropped), "seconds": round(time.perf_counter() - start, 3)}
    logger.info_rank0(
        f"GeoBench decontamination ({index.n}-grams, {index.items} items from {index.source}): dropped "
        f"{report['dropped']} of {report['rows']} rows of `{name}`, matching {len(report['geobench_ids'])} "
        f"GeoBench items ({report['seconds']:.2f} s)."
    )
    _record(training_args, report)
    return dataset.select(keep) if dropped else dataset


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
    """Each .json (a list of rows) or .jsonl file, every string of a row checked, written clean to ``output_dir``."""
    import json

    from ..extras import write_json_atomic

    paths = [Path(p) for p in inputs]
    for path in paths:
        if path.suffix not in (".json", ".jsonl") or not path.is_file():
            raise ValueError(f"{path}: expected a .json (list of rows) or .jsonl file.")
    out = Path(output_dir)
    index = get_index(task_dir, n, cache_dir=cache_dir)
    reports = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
            if not isinstance(rows, list):
                raise ValueError(f"{path}: a .json file must hold a list of rows.")
        keep, dropped = scan(map(_file_text, rows), index)
        out.mkdir(parents=True, exist_ok=True)
        clean = [rows[i] for i in keep]
        if path.suffix == ".jsonl":
            (out / path.name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in clean), "utf-8")
        else:
            write_json_atomic(out / path.name, clean)
        reports.append({**summarize(str(path), len(rows), dropped), "dropped_rows": dropped})
    write_json_atomic(out / REPORT_NAME, {"ngram": n, "geobench": index.source, "datasets": reports})
    return reports
