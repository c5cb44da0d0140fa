"""ClimaQA (``UCSD-GENIE/ClimaQA``, configs ``Gold`` and ``Silver``, CSV splits ``mcq``, ``cloze``, ``ffq``).

Columns ``Question``, ``Answer``, ``Complexity``; ``Options`` in mcq (``a) ... - b) ...``, the answer a letter a-d);
``Validation`` in Gold's mcq and ffq, whose ``True`` rows the authors keep (so does this loader). Cloze questions
hold ``<MASK>``. Tasks, per config: ``_mcq`` by option likelihood, ``_mcq_gen`` by the authors' prompt (their system
prompt, the options as ``a) ...`` lines and ``Correct Option:``; the letter extracted from the reply, where the
authors take the first token), ``_cloze`` by exact match (and folded), ``_ffq`` by the judge (does the reference
support the answer or refute it) with ROUGE-L and BLEU-4 beside it. Results by complexity.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, ClassVar

from ..answers import AnswerQuestion, AnswerSpec, by_dimensions
from ..data import ChoiceQuestion
from .base import Binding, Settings, Where
from .generated import GeneratedTask, ZeroShot
from .hub import HubTask, bind_hub


LETTERS = "abcd"
MCQ_SYSTEM = (
    "You are an expert assistant in the domain of climate science for multiple choice question-answering tasks. The "
    "question will be of the following format:\n--------------\nQuestion_text\n\na) Option a\nb) Option b\nc) Option "
    "c\nd) Option d\n\n-----------\n\nyou need to ouput a single letter that represents the correct option. Make sure "
    "to output a single letter."
)
CLOZE_SYSTEM = (
    "You are an expert assistant in the domain of climate science for fill-in-the-blank question-answering.\nThe "
    "question will contain a sientific statement with a single word masked with the token - <MASK>.\nYou need to find "
    "the most appropriate word that can be filled in it's place based on the context around it.\n\nyou need to ouput "
    "a single word that best fits the blank"
)
QA_SYSTEM = (
    "You are an expert assistant in the domain of climate science for question-answering tasks.\nUse two sentences "
    "maximum and keep the answer concise."
)
NOTE = (
    "ClimaQA: Gold's mcq and ffq keep the rows validated True, as the authors; cloze is scored by exact match "
    "(`folded`: after folding case, white space and punctuation); ffq's accuracy is the share of answers the judge "
    "finds supported by the reference. Results by complexity."
)
_OPTION = re.compile(r"(?:^|\s-\s*)([a-d])\)\s*(.*?)(?=\s-\s*[a-d]\)|$)", re.DOTALL)


class _Rows(HubTask):
    family = "climaqa"
    known = frozenset({"Question", "Answer", "Complexity", "Options", "Validation"})

    @property
    def required(self) -> set[str]:
        split, gold = self.hub["split"], self.hub["name"] == "Gold"
        return (
            {"Question", "Answer", "Complexity"}
            | ({"Options"} if split == "mcq" else set())
            | ({"Validation"} if gold and split in ("mcq", "ffq") else set())
        )

    @cached_property
    def kept(self) -> list[tuple[int, dict[str, Any]]]:
        """(row number, row) of the rows scored: Gold keeps those validated True."""
        return [
            (n, row)
            for n, row in enumerate(self.rows)
            if "Validation" not in self.required or _true(row["Validation"])
        ]

    def options(self, number: int, row: dict[str, Any]) -> list[tuple[str, str]]:
        found = _OPTION.findall(str(row["Options"] or "").strip())
        if [label for label, _ in found] != list(LETTERS[: len(found)]) or len(found) < 2:
            raise self.row_error(number, f"`Options` must read `a) ... - b) ...`, got {str(row['Options'])[:80]!r}.")
        return [(label.upper(), text.strip()) for label, text in found]

    def answer(self, number: int, row: dict[str, Any], labels: int) -> str:
        answer = str(row["Answer"]).strip().lower().rstrip(")")
        if len(answer) != 1 or answer not in LETTERS[:labels]:
            raise self.row_error(number, f"`Answer` must be a letter a-{LETTERS[labels - 1]}, got {row['Answer']!r}.")
        return answer.upper()

    def notes(self) -> list[str]:
        return [NOTE, *super().notes()]


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


class ClimaQAChoice(_Rows):
    def load(self) -> list[ChoiceQuestion]:
        questions = []
        for number, row in self.kept:
            options = self.options(number, row)
            answer = self.answer(number, row, len(options))
            questions.append(ChoiceQuestion(self.name, number, str(row["Question"]).strip(), tuple(options), answer))
        return questions

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        complexity = {number: row["Complexity"] for number, row in self.kept}
        return by_dimensions([{**r, "complexity": complexity[r["id"]]} for r in records], ("complexity",))


class ClimaQAGenerated(_Rows, GeneratedTask):
    dims: ClassVar[tuple[str, ...]] = ("complexity",)
    SPECS: ClassVar[dict[str, AnswerSpec]] = {
        "mcq_gen": AnswerSpec("letter"),
        "cloze": AnswerSpec("text", also=("folded",)),
        "ffq": AnswerSpec("judge", verdict="supports", overlap=True),
    }
    SYSTEMS: ClassVar[dict[str, str]] = {"mcq_gen": MCQ_SYSTEM, "cloze": CLOZE_SYSTEM, "ffq": QA_SYSTEM}

    @property
    def answer_spec(self) -> AnswerSpec:
        return self.SPECS[self.hub["variant"]]

    def load(self) -> list[AnswerQuestion]:
        questions = []
        for number, row in self.kept:
            question = str(row["Question"]).strip()
            if self.hub["variant"] == "mcq_gen":
                options = self.options(number, row)
                answer = self.answer(number, row, len(options))
                lines = "\n".join(f"{label.lower()}) {text}" for label, text in options)
                question = f"{question}\n\n{lines}"
            else:
                answer = str(row["Answer"]).strip()
                if not answer:
                    raise self.row_error(number, "`Answer` is empty.")
            dims = {"complexity": row["Complexity"]}
            questions.append(AnswerQuestion(self.name, number, question, answer, dims=dims))
        return questions

    def sampler(self) -> Any:
        return ZeroShot(self.questions)

    def messages(self, question: AnswerQuestion, exemplars: list[AnswerQuestion], plain: bool) -> list[dict[str, str]]:
        variant = self.hub["variant"]
        cue = {"mcq_gen": " Correct Option: ", "cloze": "\nAnswer: ", "ffq": ""}[variant]
        return [
            {"role": "system", "content": self.SYSTEMS[variant]},
            {"role": "user", "content": question.question + cue},
        ]


def bind(names: list[str], settings: Settings, where: Where) -> Binding:
    return bind_hub(
        names, settings, where, {"mcq": ClimaQAChoice, **dict.fromkeys(ClimaQAGenerated.SPECS, ClimaQAGenerated)}
    )
