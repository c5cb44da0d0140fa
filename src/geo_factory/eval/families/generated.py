"""Tasks scored on answers the model generates (:mod:`..answers`), and the user's own such tasks.

:class:`GeneratedTask` is what every family of generated answers shares: a chat prompt per question (exemplars as
user and assistant turns, fitted to the budget), its answer spec, the records of :func:`..answers.answer_records`
and the accuracy by the benchmark's dimensions. The hub families (FormationEval's generative protocol, EarthSE,
ClimaQA) subclass it with their authors' prompts.

The user's tasks are entries of ``eval_info.json`` with ``answer_type`` (family ``answers``)::

    {"depths": {"file_name": "depths.jsonl", "columns": {"question": "q", "answer": "km"},
                "answer_type": "number", "tolerance": 0.05},
     "terms":  {"file_name": "terms.csv", "columns": {"question": "q", "answer": "a", "subject": "topic"},
                "answer_type": "text", "fold": true, "extract": "Answer:\\\\s*(.+)", "num_samples": 5,
                "temperature": 0.7}}

Exemplars are chosen as for the multiple-choice tasks of ``eval_info.json``: the first ``n_shot`` rows of
``dev_file_name`` (of the question's subject, when both have subjects), else drawn from the task's other questions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from ..answers import AnswerQuestion, AnswerSpec, by_dimensions, parse_number, spec_from_entry
from ..data import EvalDataError, row_error
from ..prompts import Budget, fit_exemplars
from ..scoring import Chat, PromptEncoder
from . import custom
from .base import Binding, BoundTask, Where
from .custom import INFO, CustomTask, read_rows


NOTE = (
    "Generated answers: reasoning blocks (<think>...</think>) are removed before extraction; a reply with no "
    "answer in it counts as wrong and is listed under extraction_failed_ids."
)


class GeneratedTask(BoundTask):
    """A task whose questions are answered in free text and scored by an :class:`AnswerSpec`."""

    dims: ClassVar[tuple[str, ...]] = ()  # the record keys its results are broken down by

    @property
    def generation(self) -> bool:
        return True

    @property
    def answer_spec(self) -> AnswerSpec:
        raise NotImplementedError

    def messages(self, question: AnswerQuestion, exemplars: list[AnswerQuestion], plain: bool) -> list[dict[str, str]]:
        """Exemplars as user and assistant turns, then the question (one text for a template without turns)."""
        if plain:
            text = "".join(f"{q.question}\n{q.answer}\n\n" for q in exemplars) + question.question
            return [{"role": "user", "content": text}]
        turns = [
            turn
            for q in exemplars
            for turn in ({"role": "user", "content": q.question}, {"role": "assistant", "content": q.answer})
        ]
        return [*turns, {"role": "user", "content": question.question}]

    def prompts(self, encoder: PromptEncoder, budget: Callable[[bool], Budget | None]) -> list[Chat]:
        sampler = self.sampler()

        def build(question: AnswerQuestion, shots: tuple[int, ...]) -> tuple[Chat, int]:
            messages = self.messages(question, [sampler.pool[i] for i in shots], encoder.plain)
            return Chat(messages, len(shots)), encoder.prompt_length(messages)

        return [
            fit_exemplars(q, sampler.exemplars(q), lambda shots, q=q: build(q, shots), budget(True))
            for q in self.selected
        ]

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return by_dimensions(records, self.dims, self.answer_spec.also)

    def notes(self) -> list[str]:
        return [NOTE]

    def fingerprint(self) -> dict[str, Any]:
        return {**super().fingerprint(), f"answers:{self.name}": self.answer_spec.fingerprint()}


class ZeroShot:
    """No exemplars, whatever `n_shot` says: the protocol of a benchmark whose authors ask zero-shot."""

    def __init__(self, pool: list[Any]) -> None:
        self.pool = pool

    def exemplars(self, question: Any) -> tuple[int, ...]:
        return ()


def read_answers(task: str, path: Path, spec: AnswerSpec, columns: dict[str, str]) -> list[AnswerQuestion]:
    """The questions and reference answers of one file; a reference the answer type cannot hold is an error."""
    questions = []
    for where, row in read_rows(path):
        cells = {}
        for role, column in columns.items():
            if column not in row:
                raise row_error(path, where, f"has no column `{column}` (columns: {', '.join(map(str, row))}).")
            cells[role] = "" if row[column] is None else str(row[column]).strip()
        for role in ("question", "answer"):
            if not cells[role]:
                raise row_error(path, where, f"column `{columns[role]}`: the {role} is empty.")
        answer = cells["answer"]
        if isinstance(row[columns["answer"]], float) and row[columns["answer"]].is_integer():
            answer = str(int(row[columns["answer"]]))  # pandas' 3.0 for 3
        if spec.type == "number" and parse_number(answer) is None:
            raise row_error(
                path, where, f"column `{columns['answer']}`: {answer!r} is not a number (`answer_type: number`)."
            )
        if spec.type == "letter":
            answer = answer.upper()
            if answer not in spec.letters or len(answer) != 1:
                raise row_error(
                    path,
                    where,
                    f"column `{columns['answer']}`: {cells['answer']!r} is not one of the letters {spec.letters}.",
                )
        questions.append(AnswerQuestion(task, len(questions), cells["question"], answer, cells.get("subject") or None))
    if not questions:
        raise EvalDataError(f"{path} holds no question.")
    return questions


class CustomAnswerTask(GeneratedTask, CustomTask):
    """A task of ``eval_info.json`` with ``answer_type``: its entry, language and files as a multiple-choice one's."""

    family = "answers"

    @cached_property
    def answer_spec(self) -> AnswerSpec:
        return spec_from_entry(self.spec, f"{self.folder / INFO}, task `{self.name}`")

    @property
    def dims(self) -> tuple[str, ...]:
        return ("subject",) if "subject" in self.spec["columns"] else ()

    def load(self) -> list[AnswerQuestion]:
        return read_answers(self.name, self.folder / self.file, self.answer_spec, self.spec["columns"])

    @cached_property
    def dev(self) -> list[AnswerQuestion] | None:
        dev = self.spec.get("dev_file_name")
        return (
            None if dev is None else read_answers(self.name, self.folder / dev, self.answer_spec, self.spec["columns"])
        )


def bind(names: list[str], settings: Any, where: Where) -> Binding:
    """The user's tasks with generated answers, from ``eval_info.json`` in the folder of the user's tasks."""
    binding = custom.bind(names, settings, where)
    binding.tasks = [CustomAnswerTask(t.task, settings, t.folder, t.layout) for t in binding.tasks]
    return binding
