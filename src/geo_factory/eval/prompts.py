"""Prompt wording (en/zh) and the few-shot exemplar draw.

The general benchmarks (MMLU, CMMLU, C-Eval) use their standard wording, the intro naming the subject
(``GENERAL_INTRO`` there, LLaMA-Factory's old ``en``/``zh`` eval templates), and exemplars from each subject's
dev split (``geo_factory.eval.families.general.DevExemplars``). GeoBench has no dev split, so exemplars come from the task being evaluated. Each task gets one
permutation of its questions, seeded by ``seed`` and the task name; a question's exemplars are the first
``n_shot`` questions of that permutation other than itself (and other than exact duplicates of its stem,
which would hand it the answer). All but a handful of questions thus share the same exemplars, which
makes their prompts share a token prefix that the scorer computes once.

Exemplars are user/assistant turns, as in LLaMA-Factory's own evaluator: an exemplar's answer is encoded
by the chat template exactly as the scored answer is, whatever the template and tokenizer.

A prompt longer than the model can take (:class:`Budget`) loses exemplars from the front until it fits; each
record says how many it kept. ``max_samples`` scores a seeded random subset (:func:`subset`), not the first N:
published files are ordered (K2's first 20 NPEE questions have no gold "A").
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .data import TF_LABELS, ChoiceQuestion, OpenQuestion


T = TypeVar("T")


@dataclass(frozen=True)
class Wording:
    choice_intro: str
    tf_intro: str
    tf_cue: str
    answer_cue: str
    tf_words: dict[str, str]  # label -> how the model should write it
    open_prompts: dict[str, str]  # task -> instruction with {question}


WORDING = {
    "en": Wording(
        choice_intro="The following are multiple choice questions (with answers) about geoscience.",
        tf_intro="The following are true or false statements (with answers) about geoscience.",
        tf_cue="True or false?",
        answer_cue="Answer:",
        tf_words={"True": "True", "False": "False"},
        open_prompts={
            "geobench_npee_noun": "Explain the geoscience term: {question}",
            "geobench_npee_completion": "Fill in the blank marked () in this geoscience statement: {question}",
            "geobench_npee_qa": "Answer this geoscience question: {question}",
            "geobench_npee_discussion": "Discuss this geoscience topic: {question}",
            "geobench_open": "{question}",
        },
    ),
    "zh": Wording(
        choice_intro="以下是关于地球科学的单项选择题（附答案）。",
        tf_intro="以下是关于地球科学的判断题（附答案）。",
        tf_cue="判断正误。",
        answer_cue="答案：",
        tf_words={"True": "正确", "False": "错误"},
        open_prompts={
            "geobench_npee_noun": "解释地学名词：{question}",
            "geobench_npee_completion": "填写下列地学表述中 () 处的内容：{question}",
            "geobench_npee_qa": "回答下列地学问题：{question}",
            "geobench_npee_discussion": "论述下列地学问题：{question}",
            "geobench_open": "{question}",
        },
    ),
}


def is_true_false(question: ChoiceQuestion) -> bool:
    return question.labels == TF_LABELS


def answer_text(question: ChoiceQuestion, label: str, lang: str) -> str:
    """What the model should write for ``label``: the letter, or the true/false word of ``lang``."""
    return WORDING[lang].tf_words[label] if is_true_false(question) else label


def render(question: ChoiceQuestion, lang: str) -> str:
    wording = WORDING[lang]
    if is_true_false(question):
        return f"{question.stem}\n{wording.tf_cue}\n{wording.answer_cue}"
    options = "".join(f"\n{label}. {text}" for label, text in question.options)
    return f"{question.stem}{options}\n{wording.answer_cue}"


class ExemplarSampler:
    """The exemplars of every question of one task, drawn deterministically by seed."""

    def __init__(self, questions: list[ChoiceQuestion], n_shot: int, seed: int) -> None:
        self.questions, self.n_shot = questions, n_shot
        self.order = list(range(len(questions)))
        if questions:
            random.Random(f"{questions[0].task}:{seed}").shuffle(self.order)

    def exemplars(self, question: ChoiceQuestion) -> tuple[int, ...]:
        picked = []
        for index in self.order:
            if len(picked) == self.n_shot:
                break
            other = self.questions[index]
            if other.id != question.id and other.stem != question.stem:
                picked.append(index)
        return tuple(picked)

    @property
    def pool(self) -> list[ChoiceQuestion]:
        """What :meth:`exemplars` indexes into."""
        return self.questions

    def intro(self, question: ChoiceQuestion, lang: str) -> str:
        wording = WORDING[lang]
        return wording.tf_intro if is_true_false(question) else wording.choice_intro


def subset(questions: list, limit: int | None, seed: int) -> list:
    """The questions ``max_samples`` scores: a seeded random ``limit`` of them (a larger limit extends the same draw),
    in published order; all of them without a limit."""
    if limit is None or limit >= len(questions):
        return questions
    order = list(range(len(questions)))
    first = questions[0]
    draw = first.task if getattr(first, "subject", None) is None else f"{first.task}/{first.subject}"
    random.Random(f"{draw}:subset:{seed}").shuffle(order)  # not the exemplars' permutation
    keep = set(order[:limit])
    return [question for i, question in enumerate(questions) if i in keep]


def check_n_shot(key: str, n_shot: int, questions: dict[str, list]) -> None:
    """Exemplars come from the task itself: a task of N questions offers at most N - 1 per question."""
    if not questions:
        return
    name, smallest = min(questions.items(), key=lambda item: len(item[1]))
    if n_shot > len(smallest) - 1:
        raise ValueError(
            f"`{key}: {n_shot}` asks for more exemplars than `{name}` offers: its {len(smallest)} questions "
            f"give each at most {len(smallest) - 1} others. Allowed here: 0 to {len(smallest) - 1}."
        )


@dataclass(frozen=True)
class Budget:
    """How many prompt tokens a question may take, and where the limit comes from (for the messages)."""

    tokens: int
    source: str


def fit_exemplars(
    question: ChoiceQuestion | OpenQuestion,
    shots: tuple[int, ...],
    build: Callable[[tuple[int, ...]], tuple[T, int]],
    budget: Budget | None,
) -> T:
    """The prompt ``build(kept) -> (prompt, tokens)`` of ``question``, exemplars dropped from the front until it fits."""
    for start in range(len(shots) + 1):
        prompt, tokens = build(shots[start:])
        if budget is None or tokens <= budget.tokens:
            return prompt
    raise ValueError(
        f"`{question.task}` question {question.id} takes {tokens} prompt tokens even without exemplars, more than "
        f"{budget.tokens}, {budget.source}. Leave the task out, or use a model with a longer context."
    )


def choice_messages(
    question: ChoiceQuestion, exemplars: list[ChoiceQuestion], lang: str, plain: bool, intro: str | None = None
) -> list[dict[str, str]]:
    """Exemplar turns, then the question; the caller adds the assistant turn to score or generate.

    ``plain``: the template adds no text around turns (base models), so turns are separated here.
    ``intro``: the first line; by default GeoBench's.
    """
    if intro is None:
        wording = WORDING[lang]
        intro = wording.tf_intro if is_true_false(question) else wording.choice_intro
    messages = []
    for i, shown in enumerate([*exemplars, question]):
        content = render(shown, lang)
        if i == 0:
            content = f"{intro}\n\n{content}"
        elif plain:
            content = f"\n\n{content}"
        messages.append({"role": "user", "content": content})
        if i < len(exemplars):
            messages.append({"role": "assistant", "content": answer_text(shown, shown.answer, lang)})
    return messages


def open_messages(question: OpenQuestion, lang: str) -> list[dict[str, str]]:
    prompt = WORDING[lang].open_prompts[question.task].format(question=question.question)
    return [{"role": "user", "content": prompt}]
