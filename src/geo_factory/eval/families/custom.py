"""The custom family: multiple-choice benchmarks of the user's own, registered in ``eval_info.json``.

``eval_info.json`` sits in the folder that holds the files, in the spirit of LLaMA-Factory's ``dataset_info.json``::

    {"rock_quiz": {"file_name": "rock_quiz.jsonl", "dev_file_name": "rock_quiz_dev.jsonl",
                   "columns": {"question": "question", "options": "options", "answer": "answer",
                               "subject": "topic"},
                   "lang": "en"}}

Files are json (a list of objects), jsonl, csv (with a header) or parquet. ``options`` names one list column or a list
of columns, one per letter (an empty cell, or a missing key, is no option); a question has 2 to 10 options, free to
vary by row. The answer is a letter (either case), a 0-based index (``2`` or pandas' ``2.0``) or the option's text;
``answer_format`` (``letter``, ``index`` or ``text``) says which, and without it an answer that reads two ways to two
different options (``"3"`` among the options ``1`` to ``4``) is refused, never guessed. ``subject`` (and
``category``, one per subject) give the per-subject table. Exemplars are the first ``n_shot`` questions of the dev
file (of the question's subject, when both name subjects), else drawn from the task's other questions as for
GeoBench. A bad registry or row is an error naming the file, the line (as an editor counts them) and the column,
before any model loads.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any

from ...hparams.checks import ConfigError
from ...rows import numbered_rows
from ..answers import answer_task
from ..data import ChoiceQuestion, EvalDataError, Question, read_json, row_error
from ..prompts import WORDING, ExemplarSampler, check_n_shot
from ..styles import HARNESS_EN, HARNESS_ZH
from ..tasks import TASKS, Task
from .base import Binding, BoundTask, Where
from .general import GENERAL_INTRO


INFO = "eval_info.json"
LAYOUT = "eval_info"
LABELS = string.ascii_uppercase[:10]
_ENTRY_KEYS = {"file_name", "dev_file_name", "columns", "lang", "description", "answer_format"}
ANSWER_FORMATS = ("letter", "index", "text")
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
    info = read_json(path, unique_keys=True)
    if not isinstance(info, dict):
        raise EvalDataError(f"{path} must map each task name to its entry (file_name, columns, ...).")
    tasks = {}
    for name, entry in info.items():
        where = f"{path}, task `{name}`"
        if name in TASKS:
            raise EvalDataError(f"{where}: the name is a built-in task's; give your task another name.")
        if not isinstance(entry, dict):
            raise EvalDataError(f"{where}: must be an object with file_name and columns.")
        if "answer_type" in entry:  # answers generated in free text (family `answers`)
            tasks[name] = answer_task(name, entry, where, LAYOUT)
            continue
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
        if entry.get("answer_format", "letter") not in ANSWER_FORMATS:
            raise EvalDataError(
                f"{where}: `answer_format` must be one of {', '.join(ANSWER_FORMATS)}, got {entry['answer_format']!r}."
            )
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
    if "category" in columns and "subject" not in columns:
        raise EvalDataError(
            f"{where}: `columns.category` groups subjects into categories, so it needs `columns.subject` too "
            "(or leave `category` out)."
        )


def read_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The rows of a task's file, each an object, with the line (``line N``) that names it."""
    if not path.is_file():
        raise EvalDataError(f"{path} does not exist (named in {INFO}).")
    try:
        rows = numbered_rows(path)
    except ValueError as err:
        raise EvalDataError(str(err)) from None
    for where, row in rows:
        if not isinstance(row, dict):
            raise row_error(path, where, "a row must be an object of columns.")
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
    else:  # the first two options are required columns; a later one a row lacks is no option
        options = [_text(_cell(row, c, path, where) if i < 2 else row.get(c)) for i, c in enumerate(spec)]
        while options and not options[-1]:  # rows with fewer options leave the last columns empty
            options.pop()
        if any(not option for option in options):
            column = spec[options.index("")]
            raise row_error(path, where, f"column `{column}` is empty but a later option is not.")
    if not 2 <= len(options) <= len(LABELS):
        column = spec if isinstance(spec, str) else ", ".join(spec)
        raise row_error(path, where, f"needs 2 to {len(LABELS)} options (column {column}), found {len(options)}.")
    return options


_INDEX = re.compile(r"\d+(\.0*)?")  # 2, or 2.0 as pandas writes an integer column that has gaps


def _answer(value: Any, options: list[str], fmt: str | None, column: str, path: Path, where: str) -> str:
    """The option's letter that ``value`` names, read as ``fmt`` (letter, index or text); without ``fmt``, every
    reading that fits must name the same option."""
    labels = LABELS[: len(options)]
    text = "" if isinstance(value, bool) else _text(value)
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    readings: dict[str, str] = {}
    if len(text) == 1 and text.upper() in labels:
        readings["letter"] = text.upper()
    if _INDEX.fullmatch(text) and not isinstance(value, bool) and int(float(text)) < len(options):
        readings["index"] = labels[int(float(text))]
    if text and text in options:
        readings["text"] = labels[options.index(text)]
    elif isinstance(value, (int, float, str)) and not isinstance(value, bool) and _text(value) in options:
        readings["text"] = labels[options.index(_text(value))]
    if fmt is not None:
        if fmt in readings:
            return readings[fmt]
        wanted = {
            "letter": f"a letter {labels[0]}-{labels[-1]}",
            "index": f"an index 0 to {len(options) - 1}",
            "text": "the text of an option",
        }[fmt]
        raise row_error(path, where, f"column `{column}`: {value!r} is not {wanted} (`answer_format: {fmt}`).")
    if len(set(readings.values())) > 1:
        shown = " or ".join(
            f"as {'an' if how == 'index' else 'a' if how == 'letter' else 'an option'} {how} it is option {label} "
            f"({options[labels.index(label)]!r})"
            for how, label in readings.items()
        )
        raise row_error(
            path,
            where,
            f"column `{column}`: the answer {value!r} is ambiguous: {shown}. Say how the answers are written: "
            f'`"answer_format": "letter"`, `"index"` or `"text"` in the task\'s entry of {INFO}.',
        )
    if readings:
        return next(iter(readings.values()))
    if _INDEX.fullmatch(text):
        raise row_error(path, where, f"column `{column}`: index {text} is out of range 0 to {len(options) - 1}.")
    raise row_error(
        path, where, f"column `{column}`: {value!r} is not a letter {labels[0]}-{labels[-1]}, an index or an option."
    )


def read_questions(task: str, path: Path, spec: dict[str, Any]) -> tuple[list[ChoiceQuestion], dict[str, str]]:
    """The questions of one file, and each subject's category (one per subject) when the task names categories."""
    columns, fmt = spec["columns"], spec.get("answer_format")
    questions, categories, first = [], {}, {}
    rows = read_rows(path)
    for where, row in rows:
        stem = _text(_cell(row, columns["question"], path, where))
        if not stem:
            raise row_error(path, where, f"column `{columns['question']}`: the question is empty.")
        options = _options(row, columns, path, where)
        answer = _answer(_cell(row, columns["answer"], path, where), options, fmt, columns["answer"], path, where)
        subject = _text(_cell(row, columns["subject"], path, where)) if "subject" in columns else None
        if subject and "category" in columns:
            category = _text(_cell(row, columns["category"], path, where))
            if categories.setdefault(subject, category) != category:
                raise row_error(
                    path,
                    where,
                    f"column `{columns['category']}`: subject `{subject}` is in category {category!r} here but in "
                    f"{categories[subject]!r} on {first[subject]}; a subject belongs to one category.",
                )
            first.setdefault(subject, where)
        labelled = tuple(zip(LABELS, options))
        questions.append(ChoiceQuestion(task, len(questions), stem, labelled, answer, subject or None))
    if not questions:
        raise EvalDataError(f"{path} holds no question.")
    if not isinstance(columns["options"], str):
        for column in columns["options"][2:]:
            if not any(column in row for _, row in rows):
                raise EvalDataError(f"{path}: no row has the column `{column}` that `columns.options` names.")
    return questions, categories


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
        return self.of_subject(question.subject)

    def of_subject(self, subject: str | None) -> tuple[int, ...]:
        """The exemplars of a question of ``subject``: the dev file's first of that subject, else its first."""
        return self.shots.get(subject, self.first)

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

    @cached_property
    def _read(self) -> tuple[list[ChoiceQuestion], dict[str, str]]:
        return read_questions(self.name, self.folder / self.file, self.spec)

    def load(self) -> list[Question]:
        return self._read[0]

    @property
    def categories(self) -> dict[str, str]:
        """Each subject's category, when the task names categories."""
        return self._read[1]

    @cached_property
    def dev(self) -> list[ChoiceQuestion] | None:
        dev = self.spec.get("dev_file_name")
        return None if dev is None else read_questions(self.name, self.folder / dev, self.spec)[0]

    def sampler(self) -> Any:
        if self.dev is None:
            return _Sampler(self.questions, self.settings.n_shot, self.settings.seed)
        return DevExemplars(self.dev, self.settings.n_shot)

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-subject (and per-category) accuracy, question-weighted, when the task has subjects."""
        if "subject" not in self.spec["columns"]:
            return {}
        category = self.categories
        totals = Counter(q.subject for q in self.questions)
        subjects: dict[str, Any] = {}
        for subject in totals:
            mine = [r for r in records if r.get("subject") == subject]
            correct = sum(r["correct"] for r in mine)
            subjects[subject] = {
                **({"category": category.get(subject)} if category else {}),
                "accuracy": round(100 * correct / len(mine), 4) if mine else None,
                "correct": correct,
                "scored": len(mine),
                "total": totals[subject],
            }
        out: dict[str, Any] = {"subjects": subjects}
        if category:
            parts: dict[str, dict[str, int]] = {}
            for subject, part in subjects.items():
                into = parts.setdefault(category.get(subject), {"correct": 0, "scored": 0, "total": 0, "subjects": 0})
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
            if member.dev is None:
                continue
            sampler = DevExemplars(member.dev, settings.n_shot)
            for subject in dict.fromkeys(q.subject for q in member.questions):
                kept = len(sampler.of_subject(subject))
                if kept < settings.n_shot:
                    own = subject is not None and subject in sampler.shots  # else the dev file's first questions
                    part = f"the rows of subject `{subject}` in " if own else ""
                    raise ValueError(
                        f"`{settings.n_shot_key}: {settings.n_shot}` asks for more exemplars than {part}the dev file "
                        f"of `{member.name}` {'hold' if own else 'holds'} ({kept}): a question's exemplars are the first dev questions of its "
                        f"subject. Allowed: 0 to {kept}{', or add dev questions of that subject' if own else ''}."
                    )


def bind(names: list[str], settings: Any, where: Where) -> Binding:
    """The user's tasks of ``names``, from ``eval_info.json`` in their folder."""
    key, folder = where.dirs["custom"]
    tasks = user_tasks(folder)
    missing = [name for name in names if name not in tasks]
    if missing:
        raise ConfigError(key, f"`{missing[0]}` is not a task of {Path(folder or '.') / INFO} (`{key}`).")
    return Binding([CustomTask(tasks[name], settings, Path(folder), LAYOUT) for name in names], Path(folder), LAYOUT)
