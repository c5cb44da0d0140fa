"""The custom family: multiple-choice benchmarks of the user's own, registered in ``eval_info.json``.

``eval_info.json`` sits in the folder that holds the files, in the spirit of LLaMA-Factory's ``dataset_info.json``::

    {"rock_quiz": {"file_name": "rock_quiz.jsonl", "dev_file_name": "rock_quiz_dev.jsonl",
                   "columns": {"question": "question", "options": "options", "answer": "answer",
                               "subject": "topic"},
                   "lang": "en"}}

Files are json (a list of objects), jsonl, csv (with a header) or parquet. ``options`` names one list column or a list
of columns, one per letter (an empty cell is no option); a question has 2 to 10 options, free to vary by row. The
answer is a letter, a 0-based index or the option's text. ``subject`` (and ``category``) give the per-subject table.
Exemplars are the first ``n_shot`` questions of the dev file (of the question's subject, when both name subjects),
else drawn from the task's other questions as for GeoBench. A bad registry or row is an error naming the file, the
row and the column, before any model loads.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any

from ...hparams.checks import ConfigError
from ...rows import read_rows as rows_of
from ..data import ChoiceQuestion, EvalDataError, Question, read_json, row_error
from ..prompts import WORDING, ExemplarSampler, check_n_shot
from ..styles import HARNESS_EN, HARNESS_ZH
from ..tasks import TASKS, Task
from .base import Binding, BoundTask, Where
from .general import GENERAL_INTRO


INFO = "eval_info.json"
LAYOUT = "eval_info"
LABELS = string.ascii_uppercase[:10]
_ENTRY_KEYS = {"file_name", "dev_file_name", "columns", "lang", "description"}
_COLUMN_KEYS = {"question", "options", "answer", "subject", "category"}
NOTE = (
    "Tasks of eval_info.json: exemplars are the first `n_shot` questions of the task's dev file (of the question's "
    "subject when both have subjects), or without one drawn from the task's other questions as for GeoBench; each "
    "question's chance is one over its own number of options."
)


def user_tasks(folder: str | Path | None) -> dict[str, Task]:
    """The tasks ``folder/eval_info.json`` registers (none without the file), checked entry by entry."""
    if folder is None or not (Path(folder) / INFO).is_file():
        return {}
    path = Path(folder) / INFO
    info = read_json(path)
    if not isinstance(info, dict):
        raise EvalDataError(f"{path} must map each task name to its entry (file_name, columns, ...).")
    tasks = {}
    for name, entry in info.items():
        where = f"{path}, task `{name}`"
        if name in TASKS:
            raise EvalDataError(f"{where}: the name is a built-in task's; give your task another name.")
        if not isinstance(entry, dict):
            raise EvalDataError(f"{where}: must be an object with file_name and columns.")
        unknown = sorted(set(entry) - _ENTRY_KEYS)
        if unknown:
            raise EvalDataError(f"{where}: unknown key `{unknown[0]}`; allowed: {', '.join(sorted(_ENTRY_KEYS))}.")
        for key in ("file_name", "dev_file_name"):
            if key in entry and not (isinstance(entry[key], str) and entry[key].strip()):
                raise EvalDataError(f"{where}: `{key}` must name a file in {path.parent}.")
        if "file_name" not in entry:
            raise EvalDataError(f"{where}: `file_name` is required.")
        if entry.get("lang", "en") not in WORDING:
            raise EvalDataError(f"{where}: `lang` must be one of {', '.join(WORDING)}, got {entry['lang']!r}.")
        _check_columns(entry.get("columns"), where)
        description = entry.get("description", f"{name} (eval_info.json)")
        tasks[name] = Task(name, "custom", description, "choice", {LAYOUT: entry["file_name"]}, config=entry)
    return tasks


def _check_columns(columns: Any, where: str) -> None:
    if not isinstance(columns, dict):
        raise EvalDataError(f"{where}: `columns` must map question, options and answer to the file's columns.")
    unknown = sorted(set(columns) - _COLUMN_KEYS)
    if unknown:
        raise EvalDataError(
            f"{where}: unknown column role `{unknown[0]}`; allowed: {', '.join(sorted(_COLUMN_KEYS))}."
        )
    for role in ("question", "options", "answer"):
        if role not in columns:
            raise EvalDataError(f"{where}: `columns.{role}` is required.")
    options = columns["options"]
    if isinstance(options, list):
        if not 2 <= len(options) <= len(LABELS) or not all(isinstance(c, str) for c in options):
            raise EvalDataError(f"{where}: `columns.options` lists 2 to {len(LABELS)} column names, got {options!r}.")
    elif not isinstance(options, str):
        raise EvalDataError(f"{where}: `columns.options` is one list column or a list of columns, got {options!r}.")
    for role in _COLUMN_KEYS - {"options"}:
        if role in columns and not isinstance(columns[role], str):
            raise EvalDataError(f"{where}: `columns.{role}` must be a column name, got {columns[role]!r}.")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a task's file, each an object."""
    if not path.is_file():
        raise EvalDataError(f"{path} does not exist (named in {INFO}).")
    rows = rows_of(path)
    if not all(isinstance(row, dict) for row in rows):
        raise EvalDataError(f"{path} must hold a list of rows (objects).")
    return rows


def _cell(row: dict[str, Any], column: str, path: Path, where: str) -> Any:
    if column not in row:
        raise row_error(path, where, f"has no column `{column}` (columns: {', '.join(map(str, row))}).")
    return row[column]


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _options(row: dict[str, Any], columns: dict[str, Any], path: Path, where: str) -> list[str]:
    spec = columns["options"]
    if isinstance(spec, str):
        cells = _cell(row, spec, path, where)
        if isinstance(cells, str):  # a list column of a csv file: JSON text
            try:
                cells = json.loads(cells)
            except json.JSONDecodeError:
                raise row_error(path, where, f"column `{spec}` must hold a list of options.") from None
        if not isinstance(cells, list):
            raise row_error(path, where, f"column `{spec}` must hold a list of options, got {cells!r}.")
        options = [_text(cell) for cell in cells]
        if any(not option for option in options):
            raise row_error(path, where, f"column `{spec}` holds an empty option.")
    else:
        options = [_text(_cell(row, column, path, where)) for column in spec]
        while options and not options[-1]:  # rows with fewer options leave the last columns empty
            options.pop()
        if any(not option for option in options):
            column = spec[options.index("")]
            raise row_error(path, where, f"column `{column}` is empty but a later option is not.")
    if not 2 <= len(options) <= len(LABELS):
        column = spec if isinstance(spec, str) else ", ".join(spec)
        raise row_error(path, where, f"needs 2 to {len(LABELS)} options (column {column}), found {len(options)}.")
    return options


def _answer(value: Any, options: list[str], column: str, path: Path, where: str) -> str:
    """A letter, a 0-based index or the option's text, as the option's letter."""
    labels = LABELS[: len(options)]
    if isinstance(value, bool):
        value = None
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
        if not 0 <= index < len(options):
            raise row_error(path, where, f"column `{column}`: index {index} is out of range 0 to {len(options) - 1}.")
        return labels[index]
    text = _text(value)
    if len(text) == 1 and text in labels:
        return text
    if text in options:
        return labels[options.index(text)]
    raise row_error(
        path, where, f"column `{column}`: {value!r} is not a letter {labels[0]}-{labels[-1]}, an index or an option."
    )


def read_questions(task: str, path: Path, columns: dict[str, Any]) -> list[ChoiceQuestion]:
    questions = []
    for number, row in enumerate(read_rows(path)):
        where = f"row {number}"
        stem = _text(_cell(row, columns["question"], path, where))
        if not stem:
            raise row_error(path, where, f"column `{columns['question']}`: the question is empty.")
        options = _options(row, columns, path, where)
        answer = _answer(_cell(row, columns["answer"], path, where), options, columns["answer"], path, where)
        subject = _text(_cell(row, columns["subject"], path, where)) if "subject" in columns else None
        labelled = tuple(zip(LABELS, options))
        questions.append(ChoiceQuestion(task, len(questions), stem, labelled, answer, subject or None))
    if not questions:
        raise EvalDataError(f"{path} holds no question.")
    return questions


class DevExemplars:
    """The first ``n_shot`` questions of the dev file (of the question's subject, when the dev file has it)."""

    def __init__(self, dev: list[ChoiceQuestion], n_shot: int) -> None:
        self.dev, self.n_shot = dev, n_shot
        by_subject: dict[str | None, list[int]] = {}
        for i, question in enumerate(dev):
            by_subject.setdefault(question.subject, []).append(i)
        self.shots = {subject: tuple(ids[:n_shot]) for subject, ids in by_subject.items()}
        self.first = tuple(range(min(n_shot, len(dev))))

    @property
    def pool(self) -> list[ChoiceQuestion]:
        return self.dev

    def exemplars(self, question: ChoiceQuestion) -> tuple[int, ...]:
        return self.shots.get(question.subject, self.first)

    def intro(self, question: ChoiceQuestion, lang: str) -> str:
        return _intro(question, lang)


def _intro(question: ChoiceQuestion, lang: str) -> str:
    """Names the subject where the task has subjects, else GeoBench's geoscience intro."""
    return GENERAL_INTRO[lang].format(subject=question.subject) if question.subject else WORDING[lang].choice_intro


class _Sampler(ExemplarSampler):
    def intro(self, question: ChoiceQuestion, lang: str) -> str:
        return _intro(question, lang)


class CustomTask(BoundTask):
    family = "custom"

    @property
    def spec(self) -> dict[str, Any]:
        return self.task.config

    @property
    def default_lang(self) -> str:
        return self.spec.get("lang", "en")

    def load(self) -> list[Question]:
        return read_questions(self.name, self.folder / self.file, self.spec["columns"])

    @cached_property
    def dev(self) -> list[ChoiceQuestion] | None:
        dev = self.spec.get("dev_file_name")
        return None if dev is None else read_questions(self.name, self.folder / dev, self.spec["columns"])

    def sampler(self) -> Any:
        if self.dev is None:
            return _Sampler(self.questions, self.settings.n_shot, self.settings.seed)
        return DevExemplars(self.dev, self.settings.n_shot)

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-subject (and per-category) accuracy, question-weighted, when the task has subjects."""
        if "subject" not in self.spec["columns"]:
            return {}
        category = {}
        if "category" in self.spec["columns"]:  # a subject's category: the column's value on its rows
            column = self.spec["columns"]["category"]
            rows = read_rows(self.folder / self.file)
            category = {q.subject: _text(row.get(column)) for q, row in zip(self.questions, rows)}
        totals = Counter(q.subject for q in self.questions)
        subjects: dict[str, Any] = {}
        for subject in totals:
            mine = [r for r in records if r.get("subject") == subject]
            correct = sum(r["correct"] for r in mine)
            subjects[subject] = {
                **({"category": category[subject]} if category else {}),
                "accuracy": round(100 * correct / len(mine), 4) if mine else None,
                "correct": correct,
                "scored": len(mine),
                "total": totals[subject],
            }
        out: dict[str, Any] = {"subjects": subjects}
        if category:
            parts: dict[str, dict[str, int]] = {}
            for subject, part in subjects.items():
                into = parts.setdefault(category[subject], {"correct": 0, "scored": 0, "total": 0, "subjects": 0})
                for key in ("correct", "scored", "total"):
                    into[key] += part[key]
                into["subjects"] += 1
            out["categories"] = {
                name: {"accuracy": round(100 * p["correct"] / p["scored"], 4) if p["scored"] else None, **p}
                for name, p in parts.items()
            }
        return out

    def notes(self) -> list[str]:
        return [NOTE]

    def harness_format(self, question: ChoiceQuestion) -> tuple[str, str]:
        """MMLU's format (CMMLU's in Chinese), the subject named where the task has subjects."""
        description, cue = HARNESS_ZH if self.default_lang == "zh" else HARNESS_EN
        return (description.format(subject=question.subject) if question.subject else ""), cue

    def data_files(self) -> dict[str, Path]:
        names = [INFO, self.file, *([self.spec["dev_file_name"]] if "dev_file_name" in self.spec else [])]
        return {name: self.folder / name for name in names}

    @classmethod
    def check(cls, members: list[BoundTask]) -> None:
        if not members:
            return
        settings = members[0].settings
        check_n_shot(settings.n_shot_key, settings.n_shot, {m.name: m.questions for m in members if m.dev is None})
        for member in members:
            if member.dev is not None and settings.n_shot > len(member.dev):
                raise ValueError(
                    f"`{settings.n_shot_key}: {settings.n_shot}` asks for more exemplars than the dev file of "
                    f"`{member.name}` holds ({len(member.dev)}). Allowed: 0 to {len(member.dev)}."
                )


def bind(names: list[str], settings: Any, where: Where) -> Binding:
    """The user's tasks of ``names``, from ``eval_info.json`` in their folder."""
    key, folder = where.dirs["custom"]
    tasks = user_tasks(folder)
    missing = [name for name in names if name not in tasks]
    if missing:
        raise ConfigError(key, f"`{missing[0]}` is not a task of {Path(folder or '.') / INFO} (`{key}`).")
    return Binding([CustomTask(tasks[name], settings, Path(folder), LAYOUT) for name in names], Path(folder), LAYOUT)
