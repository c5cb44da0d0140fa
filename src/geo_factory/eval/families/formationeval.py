"""FormationEval (``AlmazErmilov/FormationEval``, CC-BY-4.0): four-option questions on petroleum geoscience, one
JSON array, split ``test``.

Two protocols on the same questions: ``formationeval`` scores the options' likelihood (or, with ``eval_mode:
generate``, the project's generated letter) as every multiple-choice task; ``formationeval_gen`` is the authors'
zero-shot generative protocol: their system prompt, the question with ``A) ...`` lines and ``Answer:``, and their
extraction (:func:`..answers.extract_letter`: reasoning blocks dropped, the first letter, then "correct answer /
answer is / Answer:" patterns, then the last standalone letter). Both report accuracy by difficulty, by domain (a
question counts under each of its domains) and by whether a calculation is required.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from ..answers import AnswerQuestion, AnswerSpec, by_dimensions
from ..data import ChoiceQuestion
from .base import Binding, Settings, Where
from .generated import GeneratedTask, ZeroShot
from .hub import HubTask, bind_hub


LABELS = ("A", "B", "C", "D")
DIMS = ("difficulty", "domains", "calc_required")
SYSTEM = (
    "You are taking a multiple-choice exam on Oil & Gas geoscience.\nFor each question, select the single best answer "
    "from the options provided.\nReply with exactly one letter: A, B, C, or D. No explanation."
)
NOTE = (
    "FormationEval: formationeval_gen is the authors' zero-shot protocol (their system and user prompts, their letter "
    "extraction; `n_shot` does not apply); results by difficulty, domain (a question under each of its domains) and "
    "calc_required."
)


class _Rows(HubTask):
    required = frozenset(
        {"id", "question", "choices", "answer_index", "answer_key", "difficulty", "domains", "metadata"}
    )
    known = required | {
        "topics", "language", "rationale", "sources", "derivation_mode", "image", "evidence", "tooling",
    }  # fmt: skip

    @cached_property
    def table(self) -> list[tuple[str, list[str], str, dict[str, Any]]]:
        """(question, four choices, answer letter, dimensions) of each row, checked."""
        out = []
        for number, row in enumerate(self.rows):
            choices, index = row["choices"], row["answer_index"]
            if not isinstance(row["question"], str) or not isinstance(choices, list) or len(choices) != 4:
                raise self.row_error(number, "a question and four choices expected.")
            if not isinstance(index, int) or not 0 <= index < 4 or row["answer_key"] != LABELS[index]:
                raise self.row_error(
                    number,
                    f"answer_index must be 0-3 and answer_key its letter, got {index!r} and {row['answer_key']!r}.",
                )
            metadata = row["metadata"] or {}
            dims = {
                "difficulty": row["difficulty"],
                "domains": list(row["domains"] or []),
                "calc_required": bool(metadata.get("calc_required")),
            }
            out.append((row["question"].strip(), [str(c).strip() for c in choices], LABELS[index], dims))
        return out

    def notes(self) -> list[str]:
        return [NOTE, *super().notes()]


class FormationEvalChoice(_Rows):
    family = "formationeval"

    def load(self) -> list[ChoiceQuestion]:
        return [
            ChoiceQuestion(self.name, i, stem, tuple(zip(LABELS, choices)), answer)
            for i, (stem, choices, answer, _) in enumerate(self.table)
        ]

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return by_dimensions([{**r, **self.table[r["id"]][3]} for r in records], DIMS)


class FormationEvalGenerated(_Rows, GeneratedTask):
    family = "formationeval"
    dims = DIMS

    @property
    def answer_spec(self) -> AnswerSpec:
        return AnswerSpec("letter")

    def load(self) -> list[AnswerQuestion]:
        return [
            AnswerQuestion(
                self.name, i, f"{stem}\n\n" + "\n".join(f"{label}) {c}" for label, c in zip(LABELS, choices)) + "\n\nAnswer:",
                answer, dims=dims,
            )
            for i, (stem, choices, answer, dims) in enumerate(self.table)
        ]  # fmt: skip

    def sampler(self) -> Any:
        return ZeroShot(self.questions)

    def messages(self, question: AnswerQuestion, exemplars: list[AnswerQuestion], plain: bool) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question.question}]


def bind(names: list[str], settings: Settings, where: Where) -> Binding:
    return bind_hub(names, settings, where, {"choice": FormationEvalChoice, "generated": FormationEvalGenerated})
