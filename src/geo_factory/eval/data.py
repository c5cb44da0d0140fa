"""What every benchmark family reads into: questions, and the error that names a bad file and row.

A family's reader is strict: a malformed row (wrong type, missing field, an answer that is not a label) is an
:class:`EvalDataError` naming its file and row. Defects of content in published rows are not errors: such a
question is kept and counted as published, and its id is listed in results.json under ``data_issues``
(:attr:`ChoiceQuestion.issues`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


TF_LABELS = ("True", "False")


class EvalDataError(ValueError):
    """A malformed benchmark file or row."""


GeoBenchDataError = EvalDataError  # the name before the evaluation package ran more than GeoBench


@dataclass(frozen=True)
class ChoiceQuestion:
    """A multiple-choice or true/false question; ``options`` keeps the published order and labels."""

    task: str
    id: int
    stem: str
    options: tuple[tuple[str, str], ...]  # (label, text); true/false questions have labels True/False, no text
    answer: str
    subject: str | None = None  # a general benchmark's subject (mapping.json key); GeoBench has none

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(label for label, _ in self.options))

    @property
    def issues(self) -> list[str]:
        """Defects of content this question was published with."""
        checks = {
            "gold_not_in_options": self.answer not in self.labels,
            "duplicate_option_labels": len(self.labels) != len(self.options),
            "empty_option_text": self.labels != TF_LABELS and any(not text for _, text in self.options),
            "empty_question": not self.stem,
        }
        return [name for name, failed in checks.items() if failed]


@dataclass(frozen=True)
class OpenQuestion:
    """A subjective question: scored against ``reference`` when there is one, by the judge otherwise."""

    task: str
    id: int
    question: str
    reference: str | None


Question = ChoiceQuestion | OpenQuestion


def question_key(question: ChoiceQuestion) -> tuple[str, ...]:
    """What makes two published questions the same question: the stem and the option texts, in order, with case and
    white space normalised (a repeat differing only in those is the same question, asked again)."""
    return tuple(" ".join(text.split()).casefold() for text in (question.stem, *(t for _, t in question.options)))


def repeats(questions: list[ChoiceQuestion]) -> dict[str, list[int]]:
    """Published repeats, as data issues: every copy after a question's first (``repeated_question``), and every copy
    of a question keyed more than one way (``conflicting_keys``: no answer can be right on all of them)."""
    groups: dict[tuple[str, ...], list[ChoiceQuestion]] = {}
    for question in questions:
        groups.setdefault(question_key(question), []).append(question)
    found = {
        "repeated_question": [q.id for copies in groups.values() for q in copies[1:]],
        "conflicting_keys": [
            q.id for copies in groups.values() if len({q.answer for q in copies}) > 1 for q in copies
        ],
    }
    return {issue: sorted(ids) for issue, ids in found.items() if ids}


def row_error(path: Path, where: str, problem: str) -> EvalDataError:
    return EvalDataError(f"{path}, {where}: {problem}")


def as_string(value: Any, path: Path, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise row_error(path, where, f"{what} must be a string, got {json.dumps(value)[:80]}.")
    return value.strip()


def as_text(value: Any, path: Path, where: str, what: str) -> str:
    if not as_string(value, path, where, what):
        raise row_error(path, where, f"{what} is empty.")
    return value.strip()


def as_letter(value: Any, path: Path, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]", value.strip()):
        raise row_error(path, where, f"the answer must be one capital letter, got {json.dumps(value)[:40]}.")
    return value.strip()


def read_json(path: Path, unique_keys: bool = False) -> Any:
    """A UTF-8 JSON file (a BOM allowed); ``unique_keys``: an object that repeats a key is an error, not its last
    value silently kept (a registry whose task is named twice)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise EvalDataError(
            f"{path}: the encoding must be UTF-8 (with or without a BOM), but byte {err.start} is not UTF-8."
        ) from None
    try:
        return json.loads(text, object_pairs_hook=_unique(path) if unique_keys else None)
    except json.JSONDecodeError as err:
        raise EvalDataError(f"{path} is not valid JSON: {err}.") from None


def _unique(path: Path) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        repeated = [key for key, n in Counter(key for key, _ in items).items() if n > 1]
        if repeated:
            raise EvalDataError(f"{path}: the key `{repeated[0]}` is given twice in one object; each must be unique.")
        return dict(items)

    return pairs
