"""The general family: the general-ability benchmarks JiuZhou reports beside GeoBench (MMLU, CMMLU, C-Eval), in LLaMA-Factory's
evaluation layout, read directly and strictly (datasets 4 no longer runs the loading scripts that read them).

``task_dir/{mmlu,cmmlu,ceval}/`` holds ``NAME.zip`` (one CSV per subject and split) and ``mapping.json``
(subject -> ``{"name", "category"}``). Archive members: MMLU ``data/{split}/SUBJECT_{split}.csv`` without a
header (question, A, B, C, D, answer); CMMLU ``{split}/SUBJECT.csv`` with the header ``,Question,A,B,C,D,Answer``;
C-Eval ``{split}/SUBJECT_{split}.csv`` with ``id,question,A,B,C,D,answer[,explanation]``. A malformed row (field
count, an answer that is not A-D) is an error naming the archive, the member and the row (the header is row 1).

Exemplars are each subject's ``dev`` split, in published order, as the benchmarks' authors and LLaMA-Factory use:
every question of a subject shares them, so the scorer computes that prefix once per subject. Accuracies of
categories and of the whole benchmark are question-weighted, as LLaMA-Factory's old evaluator reported them.

Without a folder (``llamafactory-cli eval`` with no ``task_dir`` and no ``./evaluation``), the same questions come
from the hub datasets lm-evaluation-harness reads, one config per subject, through ``datasets`` (its cache, and
HF_HUB_OFFLINE): ``cais/mmlu`` (question, choices, answer 0-3), ``haonan-li/cmmlu`` (Question, A-D, Answer) and
``ceval/ceval-exam`` (question, A-D, answer). The subjects, their names and categories are the package's own table
(:mod:`.subjects`, as mapping.json has them), so ids, subjects and exemplars are those of the archives.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from ...hparams.checks import ConfigError
from ..data import ChoiceQuestion, EvalDataError, Question
from ..prompts import subset
from ..styles import HARNESS_CEVAL, HARNESS_EN, HARNESS_ZH
from ..tasks import GENERAL_LAYOUT, TASKS, Task
from .base import Binding, BoundTask, Settings, Where
from .subjects import SUBJECTS


LAYOUT = GENERAL_LAYOUT
HUB_LAYOUT = "hub"  # no folder: each benchmark's hub dataset
# The intro per language; {subject} is the subject's name from mapping.json (LLaMA-Factory's old eval templates)
GENERAL_INTRO = {
    "en": "The following are multiple choice questions (with answers) about {subject}.",
    "zh": "以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。",
}
NOTE = (
    "General benchmarks: the exemplars of a question are the first `n_shot` questions of its subject's dev split; "
    "category and benchmark accuracies are question-weighted (each question counts once), as LLaMA-Factory's "
    "evaluator reported them."
)
CATEGORIES = ("STEM", "Social Sciences", "Humanities", "Other")
LABELS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Benchmark:
    folder: str  # under task_dir, and the archive's name
    split: str  # the scored split
    lang: str  # the benchmark's own language: its wording unless `lang` is given
    member_name: str  # archive member, with {split} and {subject}
    headers: tuple[tuple[str, ...], ...]  # allowed header rows; () for none
    first: int  # column of the question; options and answer follow it
    hub: str  # the hub dataset the harness reads, one config per subject, with the same split names
    hub_columns: tuple[str, str | None, str]  # its question, options (None: columns A-D) and answer columns

    @property
    def archive(self) -> str:
        return f"{self.folder}/{self.folder}.zip"

    @property
    def mapping(self) -> str:
        return f"{self.folder}/mapping.json"


BENCHMARKS = {
    "mmlu_test": Benchmark(
        "mmlu",
        "test",
        "en",
        "data/{split}/{subject}_{split}.csv",
        (),
        0,
        "cais/mmlu",
        ("question", "choices", "answer"),
    ),
    "cmmlu_test": Benchmark(
        "cmmlu",
        "test",
        "zh",
        "{split}/{subject}.csv",
        (("", "Question", *LABELS, "Answer"),),
        1,
        "haonan-li/cmmlu",
        ("Question", None, "Answer"),
    ),
    "ceval_validation": Benchmark(
        "ceval",
        "val",
        "zh",
        "{split}/{subject}_{split}.csv",
        (("id", "question", *LABELS, "answer"), ("id", "question", *LABELS, "answer", "explanation")),
        1,
        "ceval/ceval-exam",
        ("question", None, "answer"),
    ),
}


HARNESS_FORMATS = {"mmlu_test": HARNESS_EN, "cmmlu_test": HARNESS_ZH, "ceval_validation": HARNESS_CEVAL}


@dataclass(frozen=True)
class Subject:
    key: str
    name: str
    category: str


@dataclass(frozen=True)
class GeneralData:
    """One benchmark as read: its subjects, the scored questions and the dev split (ids run over all subjects)."""

    task: str
    subjects: dict[str, Subject]
    questions: list[ChoiceQuestion]
    dev: list[ChoiceQuestion]

    def dev_of(self, subject: str) -> list[int]:
        return [i for i, q in enumerate(self.dev) if q.subject == subject]


def check_layout(folder: Path, tasks: list[str], key: str) -> None:
    """The files the general ``tasks`` read must exist: said before any work, naming ``key``."""
    for task in tasks:
        bench = BENCHMARKS[task]
        for name in (bench.archive, bench.mapping):
            if not (folder / name).is_file():
                raise EvalDataError(
                    f"`{key}: {folder}` has no {name}, which `{task}` reads: `{key}` must hold LLaMA-Factory's "
                    f"evaluation layout ({', '.join(f'{b.archive} + {b.mapping}' for b in BENCHMARKS.values())})."
                )


def _mapping(path: Path) -> dict[str, Subject]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EvalDataError(f"{path} is not readable JSON: {err}.") from None
    if not isinstance(raw, dict) or not raw:
        raise EvalDataError(f'{path} must map each subject to {{"name", "category"}}.')
    subjects = {}
    for key, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise EvalDataError(f"{path}, subject `{key}`: needs a non-empty `name`.")
        if entry.get("category") not in CATEGORIES:
            raise EvalDataError(
                f"{path}, subject `{key}`: `category` must be one of {', '.join(CATEGORIES)}, "
                f"got {json.dumps(entry.get('category'), ensure_ascii=False)}."
            )
        subjects[key] = Subject(key, entry["name"].strip(), entry["category"])
    return subjects


def _rows(archive: zipfile.ZipFile, path: Path, member: str, bench: Benchmark) -> list[tuple[int, list[str]]]:
    """(row number, fields) of one member's question rows; the header, when the benchmark has one, is row 1."""
    try:
        text = archive.read(member).decode("utf-8-sig")
    except KeyError:
        raise EvalDataError(f"{path} has no member {member}.") from None
    except UnicodeDecodeError as err:
        raise EvalDataError(f"{path}, member {member}: not UTF-8 text ({err}).") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    numbered = list(enumerate(rows, start=1))
    if bench.headers:
        if not rows or tuple(rows[0]) not in bench.headers:
            allowed = " or ".join(",".join(header) for header in bench.headers)
            raise EvalDataError(f"{path}, member {member}, row 1: the header must be `{allowed}`.")
        width = len(rows[0])
        numbered = numbered[1:]
    else:
        width = bench.first + 6
    for number, row in numbered:
        if len(row) != width:
            raise EvalDataError(f"{path}, member {member}, row {number}: {width} fields expected, got {len(row)}.")
    return numbered


def _question(
    task: str, subject: str, qid: int, stem: str, options: list[str], answer: Any, where: str, allowed: str, got: Any
) -> ChoiceQuestion:
    """One question of an archive row or a hub row, its answer a letter A-D (``where``, ``allowed``, ``got``: what
    the error says of a wrong one)."""
    if answer not in LABELS:
        raise EvalDataError(f"{where}: the answer must be one of {allowed}, got {got!r}.")
    labelled = tuple((label, text.strip()) for label, text in zip(LABELS, options))
    return ChoiceQuestion(task, qid, stem.strip(), labelled, answer, subject)


def _questions(task: str, subject: str, rows: list[tuple[int, list[str]]], path: Path, member: str, start: int):
    bench = BENCHMARKS[task]
    questions = []
    for number, row in rows:
        stem, *options, answer = row[bench.first : bench.first + 6]
        where = f"{path}, member {member}, row {number}"
        answer = answer.strip()
        questions.append(
            _question(
                task, subject, start + len(questions), stem, options, answer, where, ", ".join(LABELS), answer[:40]
            )
        )
    return questions


def load(folder: Path, task: str) -> GeneralData:
    """``task``'s benchmark under ``folder``, every subject of mapping.json (a subject without its files is an error)."""
    bench = BENCHMARKS[task]
    return _load(folder / bench.archive, folder / bench.mapping, task)


@lru_cache(maxsize=4)
def _load(path: Path, mapping: Path, task: str) -> GeneralData:
    bench = BENCHMARKS[task]
    subjects = _mapping(mapping)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise EvalDataError(f"{path} is not a readable zip archive: {err}.") from None
    questions: list[ChoiceQuestion] = []
    dev: list[ChoiceQuestion] = []
    with archive:
        for subject in subjects:
            for split, into in ((bench.split, questions), ("dev", dev)):
                member = bench.member_name.format(split=split, subject=subject)
                rows = _rows(archive, path, member, bench)
                if not rows:
                    raise EvalDataError(f"{path}, member {member}: holds no question.")
                into += _questions(task, subject, rows, path, member, len(into))
    return GeneralData(task, subjects, questions, dev)


def _offline() -> str | None:
    """The variable that keeps ``datasets`` off the hub, if one does."""
    from datasets import config

    if not config.HF_HUB_OFFLINE:
        return None
    hub_offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in config.ENV_VARS_TRUE_VALUES
    return "HF_HUB_OFFLINE" if hub_offline else "HF_DATASETS_OFFLINE"


@contextmanager
def _quiet() -> Iterator[None]:
    """No per-subject warning ("Using the latest cached version") or progress bar: a benchmark has up to 67."""
    from datasets import utils

    verbosity, bars = utils.logging.get_verbosity(), not utils.are_progress_bars_disabled()
    utils.logging.set_verbosity_error()
    utils.disable_progress_bars()
    try:
        yield
    finally:
        utils.logging.set_verbosity(verbosity)
        if bars:
            utils.enable_progress_bars()


def _hub_split(task: str, subject: str, split: str, rows: Any, start: int) -> list[ChoiceQuestion]:
    """One split of one subject's config as the archive's rows would read: stem, A-D, the answer's letter."""
    bench = BENCHMARKS[task]
    question_col, options_col, answer_col = bench.hub_columns
    where = f"The hub dataset {bench.hub}, subject `{subject}`, split {split}"
    missing = {question_col, answer_col, *((options_col,) if options_col else LABELS)} - set(rows.column_names)
    if missing:
        raise EvalDataError(
            f"{where}: no column {', '.join(sorted(missing))} (columns: {', '.join(rows.column_names)})."
        )
    questions = []
    for number, row in enumerate(rows):
        options = row[options_col] if options_col else [row[label] for label in LABELS]
        answer = row[answer_col]
        if options_col and isinstance(answer, int) and 0 <= answer < len(LABELS):
            answer = LABELS[answer]  # cais/mmlu: the answer's index
        answer = answer.strip() if isinstance(answer, str) else answer
        if not isinstance(row[question_col], str) or len(options) != 4 or not all(isinstance(o, str) for o in options):
            raise EvalDataError(f"{where}, row {number}: a question and four options (text) expected.")
        at, allowed = f"{where}, row {number}", "0-3" if options_col else ", ".join(LABELS)
        stem, got = row[question_col], row[answer_col]
        questions.append(_question(task, subject, start + number, stem, options, answer, at, allowed, got))
    if not questions:
        raise EvalDataError(f"{where}: holds no question.")
    return questions


def hub_source(task: str) -> str:
    return f"hub:{BENCHMARKS[task].hub}"


@lru_cache(maxsize=4)
def load_hub(task: str, cache_dir: str | None, token: str | None, key: str = "task_dir") -> GeneralData:
    """``task``'s benchmark from its hub dataset (downloaded, or from the ``datasets`` cache), every subject of the
    package's table in its order, as :func:`load` reads the archive; unreachable and not cached is an error that
    names the dataset and ``key``."""
    from datasets import load_dataset
    from llamafactory.extras import logging

    bench = BENCHMARKS[task]
    subjects = {
        name: Subject(name, entry["name"], entry["category"]) for name, entry in SUBJECTS[bench.folder].items()
    }
    logging.get_logger(f"llamafactory.{__name__}").info_rank0(
        f"{task}: no `{key}`, reading the hub dataset {bench.hub} ({len(subjects)} subjects; cached after the first run)."
    )
    questions: list[ChoiceQuestion] = []
    dev: list[ChoiceQuestion] = []
    with _quiet():
        for subject in subjects:
            try:
                splits = load_dataset(bench.hub, name=subject, cache_dir=cache_dir, token=token)
            except Exception as err:  # datasets raises many kinds: offline, network, access, cache, config
                var = _offline()
                which = f" (subject `{subject}`)" if questions else ""
                if var:
                    raise EvalDataError(
                        f"`{task}` reads the hub dataset {bench.hub}, which is not in the cache{which} and the hub cannot "
                        f"be reached ({var}=1): set `{key}` to a folder in LLaMA-Factory's evaluation layout, or run "
                        "once online to cache it."
                    ) from None
                reason = " ".join(f"{type(err).__name__}: {err}".split())
                raise EvalDataError(
                    f"`{task}` reads the hub dataset {bench.hub}, which could not be loaded{which}: {reason} Set `{key}` "
                    "to a folder in LLaMA-Factory's evaluation layout."
                ) from None
            for split, into in ((bench.split, questions), ("dev", dev)):
                if split not in splits:
                    raise EvalDataError(
                        f"The hub dataset {bench.hub}, subject `{subject}`, has no split {split} "
                        f"(splits: {', '.join(splits)})."
                    )
                into += _hub_split(task, subject, split, splits[split], len(into))
    return GeneralData(task, subjects, questions, dev)


def check_n_shot(key: str, n_shot: int, data: dict[str, GeneralData]) -> None:
    """Exemplars come from each subject's dev split: ``n_shot`` may not exceed the smallest one."""
    for name, benchmark in data.items():
        sizes = Counter(q.subject for q in benchmark.dev)
        subject, smallest = min(sizes.items(), key=lambda item: item[1])
        if n_shot > smallest:
            raise ValueError(
                f"`{key}: {n_shot}` asks for more exemplars than the dev split of `{name}` subject `{subject}` holds "
                f"({smallest}); exemplars come from each subject's dev split. Allowed: 0 to {smallest}."
            )


def select(data: GeneralData, limit: int | None, seed: int) -> list[ChoiceQuestion]:
    """The questions a per-subject cap scores: a seeded random ``limit`` of each subject, in published order."""
    by_subject: dict[str, list[ChoiceQuestion]] = {}
    for question in data.questions:
        by_subject.setdefault(question.subject, []).append(question)
    return [q for questions in by_subject.values() for q in subset(questions, limit, seed)]


class DevExemplars:
    """The first ``n_shot`` dev questions of each question's subject, and the subject-naming intro."""

    def __init__(self, data: GeneralData, n_shot: int) -> None:
        self.data = data
        self.shots = {subject: tuple(data.dev_of(subject)[:n_shot]) for subject in data.subjects}

    @property
    def pool(self) -> list[ChoiceQuestion]:
        return self.data.dev

    def exemplars(self, question: ChoiceQuestion) -> tuple[int, ...]:
        return self.shots[question.subject]

    def intro(self, question: ChoiceQuestion, lang: str) -> str:
        return GENERAL_INTRO[lang].format(subject=self.data.subjects[question.subject].name)


def _accuracy(records: list[dict[str, Any]]) -> dict[str, Any]:
    correct = sum(r["correct"] for r in records)
    return {"accuracy": round(100 * correct / len(records), 4) if records else None, "correct": correct}


def breakdown(data: GeneralData, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-subject and per-category accuracy (question-weighted, as LLaMA-Factory's evaluator reported them)."""
    totals = Counter(q.subject for q in data.questions)
    by_subject: dict[str, list[dict[str, Any]]] = {subject: [] for subject in data.subjects}
    for record in records:
        by_subject[record["subject"]].append(record)
    subjects = {
        key: {
            "name": subject.name,
            "category": subject.category,
            **_accuracy(by_subject[key]),
            "scored": len(by_subject[key]),
            "total": totals[key],
        }
        for key, subject in data.subjects.items()
    }
    categories = {}
    for category in CATEGORIES:
        members = [key for key, subject in data.subjects.items() if subject.category == category]
        if members:
            mine = [r for key in members for r in by_subject[key]]
            categories[category] = {
                **_accuracy(mine),
                "scored": len(mine),
                "total": sum(totals[key] for key in members),
                "subjects": len(members),
            }
    return {"subjects": subjects, "categories": categories}


class GeneralTask(BoundTask):
    family = "general"
    subset_note = " (of each subject, for the general benchmarks)"

    @property
    def default_lang(self) -> str:
        return BENCHMARKS[self.name].lang

    @cached_property
    def data(self) -> GeneralData:
        return load(self.folder, self.name)

    def load(self) -> list[Question]:
        return self.data.questions

    @cached_property
    def selected(self) -> list[Question]:
        return select(self.data, self.settings.max_samples, self.settings.seed)

    def sampler(self) -> DevExemplars:
        return DevExemplars(self.data, self.settings.n_shot)

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return breakdown(self.data, records)

    def notes(self) -> list[str]:
        return [NOTE]

    def harness_format(self, question: ChoiceQuestion) -> tuple[str, str]:
        description, cue = HARNESS_FORMATS[self.name]
        return description.format(subject=self.data.subjects[question.subject].name), cue

    def data_files(self) -> dict[str, Path]:
        bench = BENCHMARKS[self.name]
        return {name: self.folder / name for name in (bench.mapping, bench.archive)}

    @classmethod
    def check(cls, members: list[BoundTask]) -> None:
        if members:
            settings = members[0].settings
            check_n_shot(settings.n_shot_key, settings.n_shot, {m.name: m.data for m in members})


class HubGeneralTask(GeneralTask):
    """A general benchmark read from its hub dataset: the same questions, named by the dataset instead of a file."""

    def __init__(self, task: Task, settings: Settings, where: Where, key: str) -> None:
        from datasets import config

        super().__init__(task, settings, Path(where.cache_dir or config.HF_DATASETS_CACHE), HUB_LAYOUT)
        self.cache_dir, self.token, self.key = where.cache_dir, where.token, key

    @property
    def file(self) -> str:
        return hub_source(self.name)

    @property
    def source(self) -> str:
        return self.file

    @cached_property
    def data(self) -> GeneralData:
        return load_hub(self.name, self.cache_dir, self.token, self.key)

    def data_files(self) -> dict[str, Path]:
        return {}

    def data_digests(self) -> dict[str, str]:
        """The questions as read (subjects, stems, options, answers of both splits): the hub has no file of ours."""
        rows = [[q.subject, q.stem, q.options, q.answer] for q in (*self.data.questions, *self.data.dev)]
        text = json.dumps([list(self.data.subjects), rows], ensure_ascii=False)
        return {self.file: hashlib.sha256(text.encode()).hexdigest()}


def bind(names: list[str], settings: Settings, where: Where) -> Binding:
    """The general tasks of ``names``, read from their folder, which must hold their files; without one, from their
    hub datasets where the caller allows it (``llamafactory-cli eval``), read here so that an unreachable dataset
    stops the run before any model loads."""
    key, task_dir = where.dirs["general"]
    if task_dir is None and where.hub:
        tasks = [HubGeneralTask(TASKS[name], settings, where, key) for name in names]
        for task in tasks:
            task.data  # noqa: B018  (cached: read once)
        return Binding(tasks, tasks[0].folder, HUB_LAYOUT, hub={task.name: task.source for task in tasks})
    if task_dir is None:
        raise ConfigError(
            key,
            f"`{key}` is required for {', '.join(names)}: the folder that holds LLaMA-Factory's evaluation layout "
            "(mmlu/mmlu.zip, cmmlu/cmmlu.zip, ceval/ceval.zip, each beside its mapping.json). `llamafactory-cli eval` "
            "also finds it as `evaluation/` in the working directory, LLaMA-Factory's old default, else reads the hub "
            "datasets (cais/mmlu, haonan-li/cmmlu, ceval/ceval-exam).",
        )
    folder = Path(task_dir)
    if not folder.is_dir():
        raise ConfigError(
            key, f"`{key}: {task_dir}` is not a folder (expected mmlu/, cmmlu/, ceval/ with zip + mapping.json)."
        )
    try:
        check_layout(folder, names, key)
    except EvalDataError as err:
        raise ConfigError(key, str(err)) from None
    return Binding([GeneralTask(TASKS[name], settings, folder, LAYOUT) for name in names], folder, LAYOUT)
