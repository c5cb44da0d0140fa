"""Prompt protocols a family's multiple-choice tasks are scored with.

``default`` is LLaMA-Factory's (JiuZhou's numbers come from it): the run's chat template, exemplars as user and
assistant turns, ``Answer:`` then the letter (:mod:`.prompts`). ``lm_eval`` is lm-evaluation-harness 0.4's, so that
a score here is the harness's: its task yamls' ``description`` line, each exemplar as ``doc_to_text`` + ``" "`` +
its letter, exemplars joined and followed by a blank line (``fewshot_delimiter``), the first ``n_shot`` dev
questions (``sampler: first_n``), raw text without a template or special tokens, and the option scored as the
continuation ``" A"`` (``target_delimiter``), the first token where the options differ. K2's own protocol is a family
of its own (:mod:`.families.k2`), as it changes what is scored, not only how it is asked. Each record of
predictions.jsonl carries the text an ``lm_eval`` question was scored after (``prompt``), to compare with the harness's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..hparams.checks import ConfigError
from .prompts import Budget, fit_exemplars
from .scoring import Encoded, chat_prompts, choice_prompts
from .tasks import members


if TYPE_CHECKING:
    from .data import ChoiceQuestion
    from .families.base import BoundTask
    from .scoring import PromptEncoder


TARGET_DELIMITER, FEWSHOT_DELIMITER = " ", "\n\n"
# The harness's task formats: (description with {subject}, the cue that ends doc_to_text); mmlu, cmmlu, ceval-valid
HARNESS_EN = ("The following are multiple choice questions (with answers) about {subject}.\n\n", "Answer:")
HARNESS_ZH = ("以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\n\n", "答案：")
HARNESS_CEVAL = ("以下是中国关于{subject}的单项选择题，请选出其中的正确答案。\n\n", "答案：")


def default_prompts(task: BoundTask, encoder: PromptEncoder, budget: Callable[[bool], Budget | None]) -> list[Any]:
    build = chat_prompts if task.generation else choice_prompts
    s = task.settings
    return build(
        encoder, task.questions, task.selected, s.n_shot, s.seed, task.lang, budget(task.generation), task.sampler()
    )


def harness_text(question: ChoiceQuestion, cue: str) -> str:
    """The harness's ``doc_to_text``: the stem, ``A. option`` lines, the cue."""
    options = "".join(f"\n{label}. {text}" for label, text in question.options)
    return f"{question.stem}{options}\n{cue}"


def harness_context(task: BoundTask, question: ChoiceQuestion, shots: tuple[int, ...], pool: list) -> str:
    """The text the harness scores a question's options after: description, exemplars (``shots`` of ``pool``), the
    question."""
    description, cue = task.harness_format(question)
    exemplars = "".join(
        harness_text(pool[i], cue) + TARGET_DELIMITER + pool[i].answer + FEWSHOT_DELIMITER for i in shots
    )
    return description + exemplars + harness_text(question, cue)


def lm_eval_prompts(task: BoundTask, encoder: PromptEncoder, budget: Callable[[bool], Budget | None]) -> list[Any]:
    tokenizer, sampler = encoder.tokenizer, task.sampler()

    def build(question: ChoiceQuestion, shots: tuple[int, ...]) -> tuple[Encoded, int]:
        context = harness_context(task, question, shots, sampler.pool)
        ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        candidates = []
        for label in question.labels:  # the continuation's first token, as the harness splits context + continuation
            whole = tokenizer(context + TARGET_DELIMITER + label, add_special_tokens=False)["input_ids"]
            candidates.append(whole[len(ids)])
        if len(set(candidates)) != len(candidates):
            raise ValueError(f"The options {question.labels} cannot be told apart by one token with this tokenizer.")
        return Encoded(ids, candidates, shots), len(ids) + 1

    return [
        fit_exemplars(q, sampler.exemplars(q), lambda shots, q=q: build(q, shots), budget(False))
        for q in task.selected
    ]


def lm_eval_records(
    task: BoundTask, batches: Iterator[list[dict[str, Any]]], todo: list[ChoiceQuestion]
) -> Iterator[list[dict[str, Any]]]:
    """The records with the text each question's options were scored after (its kept exemplars: the last ``shots``
    of its draw, as :func:`.prompts.fit_exemplars` drops from the front)."""
    sampler, by_id = task.sampler(), {question.id: question for question in todo}
    for records in batches:
        for record in records:
            question = by_id[record["id"]]
            shots = sampler.exemplars(question)
            kept = shots[len(shots) - record["shots"] :] if record["shots"] else ()
            record["prompt"] = harness_context(task, question, kept, sampler.pool)
        yield records


STYLES = {"default": default_prompts, "lm_eval": lm_eval_prompts}


def protocol(style: str, config: dict[str, Any], tasks: dict[str, Any], names: list[str]) -> str:
    """The shared protocol ``prompt_style`` asks for; the harness's applies to the general benchmarks and the user's
    tasks (its formats), so a task of another family is refused. It fixes the wording: a ``lang`` other than a
    task's own is refused once tasks are bound (:func:`check_lang`)."""
    if style != "lm_eval":
        return "default"
    others = [name for name in members(names) if tasks[name].family not in ("general", "custom")]
    if others:
        raise ConfigError(
            "prompt_style",
            f"`prompt_style: lm_eval` is lm-evaluation-harness's protocol for MMLU, CMMLU, C-Eval and tasks of your "
            f"own; {', '.join(others)} has no harness format: evaluate it in a run of its own.",
        )
    return "lm_eval"


def check_lang(tasks: list[BoundTask]) -> None:
    """With ``prompt_style: lm_eval``, a given ``lang`` must be each task's own (an LLaMA-Factory yaml's ``lang: en``
    on MMLU is): the harness's wording is the task's, never translated."""
    for task in tasks:
        lang = task.settings.lang
        if task.settings.protocol == "lm_eval" and lang is not None and lang != task.default_lang:
            raise ConfigError(
                "lang",
                f"`lang: {lang}` differs from the language of `{task.name}` ({task.default_lang}); with "
                "`prompt_style: lm_eval` the harness's wording is the task's own: remove `lang` or set it to "
                f"{task.default_lang}.",
            )
