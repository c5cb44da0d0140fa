"""EarthSE (``ai-earth/Earth-Iron``, 4,133 questions, and ``ai-earth/Earth-Silver``, 1,000; MIT): Parquet splits
``multiple_choice``, ``true_false``, ``fill_in_the_blank`` and ``free_form``, options written inside the question.

Each split is a task (``earth_iron_mc``, ``_tf``, ``_fib``, ``_free``; suites ``earth_iron`` and ``earth_silver``)
asked with the authors' zero-shot prompt of that split. Multiple choice, true/false and fill-in-the-blank are scored
as the authors score them, the reply equal to the answer (white space around the reply stripped), and beside it
after folding case, white space and punctuation (``folded``), for fill-in-the-blank also the comma-separated phrases
as a set (``phrases``). Free-form answers are judged as the authors do, the reference (A) against the model's answer
(B), and the task's accuracy is the model's win rate; ROUGE-L and BLEU-4 against the reference stand beside it, as
for GeoBench's subjective tasks. Results by sphere and by the benchmark's task category.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..answers import AnswerQuestion, AnswerSpec
from .base import Binding, Settings, Where
from .generated import GeneratedTask, ZeroShot
from .hub import HubTask, bind_hub


PROMPTS = {
    "multiple_choice": "Please respond to the following multiple-choice question by providing your answer as a single "
    "letter, without any additional text.\n\n{question}\n\nThe answer is (single letter):",
    "true_false": 'Please answer the following true or false question with "True" or "False" without adding any '
    'additional text.\n\n{question}\n\nThe answer is ("True" or "False"):',
    "fill_in_the_blank": "Please answer the fill-in-the-blank question below with lowercase words or phrases. If your "
    "answer contains multiple words or phrases, please separate them with commas. No additional text is required."
    "\n\n{question}\n\nThe answer is:",
    "free_form": "Please answer the following question:\n\n{question}\n\nThe answer is:",
}
SYSTEM = "You are a helpful assistant."  # the authors' client's system prompt
SPECS = {
    "multiple_choice": AnswerSpec("text", also=("folded",)),
    "true_false": AnswerSpec("text", also=("folded",)),
    "fill_in_the_blank": AnswerSpec("text", also=("folded", "phrases")),
    "free_form": AnswerSpec("judge", verdict="win_rate", overlap=True),
}
NOTE = (
    "EarthSE: the authors' zero-shot prompts; accuracy is their exact match (the reply equal to the answer), `folded` "
    "the same after folding case, white space and punctuation, `phrases` fill-in-the-blank's phrases as a set; "
    "free-form accuracy is the win rate against the reference answer by the judge. Results by sphere and task_type "
    "(the dataset's `task`)."
)


class EarthSETask(HubTask, GeneratedTask):
    family = "earthse"
    required = frozenset({"idx", "question", "answer", "task", "sphere"})
    known = required | {"reasoning_chain", "subject", "sub_discipline"}
    dims: ClassVar[tuple[str, ...]] = ("sphere", "task_type")

    @property
    def split(self) -> str:
        return self.hub["split"]

    @property
    def answer_spec(self) -> AnswerSpec:
        return SPECS[self.split]

    def load(self) -> list[AnswerQuestion]:
        questions = []
        for number, row in enumerate(self.rows):
            if not isinstance(row["question"], str) or not row["question"].strip():
                raise self.row_error(number, "the question is empty.")
            if row["answer"] is None or not str(row["answer"]).strip():
                raise self.row_error(number, "the answer is empty.")
            dims = {"sphere": row["sphere"], "task_type": row["task"]}
            questions.append(AnswerQuestion(self.name, number, row["question"].strip(), str(row["answer"]), dims=dims))
        return questions

    def sampler(self) -> Any:
        return ZeroShot(self.questions)

    def messages(self, question: AnswerQuestion, exemplars: list[AnswerQuestion], plain: bool) -> list[dict[str, str]]:
        prompt = PROMPTS[self.split].format(question=question.question)
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]

    def notes(self) -> list[str]:
        return [NOTE, *super().notes()]


def bind(names: list[str], settings: Settings, where: Where) -> Binding:
    return bind_hub(names, settings, where, dict.fromkeys(PROMPTS, EarthSETask))
