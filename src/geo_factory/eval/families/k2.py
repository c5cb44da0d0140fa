"""The K2 family: K2's GeoBench protocol (``prompt_style: k2``): K2's own exemplar files, its Alpaca-style prompt, its scoring.

K2 (``davendw49/k2``, ``evaluation/``) scores each objective question twice, with (``wa``) and without
(``woa``) a ``The answer is:`` line before the answer, and reports both. Its exemplars are the published
``multiple_choice_samples.txt`` and ``multiple_choice_samples_wa.txt`` (read here unchanged). Its
``run_eval.py`` reads ready-made prompts (``source_target_*.json``, not released) and takes the softmax of the
next token after ``tokenizer(prompt)`` (the tokenizer's own special tokens, i.e. BOS on LLaMA), and its
``post_process.py`` normalises the probabilities of the option tokens: each letter (and ``True``/``False``)
encoded alone, as its token table lists them (LLaMA ``A`` = 319, the word-initial piece).

What K2 did not release is reproduced from what it did: a question is written in exactly the layout of the
exemplars, up to the answer (``### Instruction:``, K2's instruction line, the stem, ``Choose from:``, ``X. text``
lines, a blank line, ``### Response:``, and ``The answer is:`` for ``wa``), after the exemplars and the
separator the files put between exemplars (two blank lines). K2's true/false prompts were not released
either: true/false statements are scored zero-shot in the same layout with :data:`TF_INSTRUCTION`.
The prompt is raw text, as in K2: the chat ``template`` is not applied (LLaMA-Factory still uses it to fix
the tokenizer).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...hparams.checks import ConfigError
from ..data import ChoiceQuestion, Question
from ..prompts import Budget, fit_exemplars, is_true_false
from ..scoring import Encoded
from ..tasks import TASKS, members
from .base import BoundTask, Settings
from .geobench import GeoBenchTask


if TYPE_CHECKING:
    from transformers import PreTrainedTokenizer

    from ..scoring import PromptEncoder
    from ..tasks import Task


INSTRUCTION = "Identify the choice that best completes the statement or answers the question."
TF_INSTRUCTION = "Judge whether the following statement is true or false."
ANSWER_IS = "The answer is:"
SEPARATOR = "\n\n\n"  # between two exemplars of K2's files, and between the last one and the question
VARIANTS = {"wa": f"with `{ANSWER_IS}`", "woa": f"without `{ANSWER_IS}`"}
SAMPLE_KEYS = {"woa": "k2_samples", "wa": "k2_samples_wa"}
SAMPLE_FILES = {"woa": "multiple_choice_samples.txt", "wa": "multiple_choice_samples_wa.txt"}
NOTE = (
    "prompt_style: k2: K2's Alpaca-style prompt and exemplar files (k2_samples, k2_samples_wa), each objective "
    "task scored with (_wa) and without (_woa) `The answer is:`, as K2 reports them. K2's prompt-assembly code was "
    "not released: each question is written in its exemplars' layout, after them. Nor were its true/false prompts: "
    f"true/false statements are scored zero-shot in the same layout (`{TF_INSTRUCTION}`), by the probabilities of "
    "`True` and `False`, as K2's scorer does."
)
_EXEMPLAR = re.compile(
    rf"### Instruction:\n{re.escape(INSTRUCTION)}\n.+\nChoose from:\n(?:[A-Z]\. [^\n]*\n)+\n### Response:\n"
    rf"(?P<wa>{re.escape(ANSWER_IS)}\n)?[A-Z]",
    re.DOTALL,
)


@dataclass(frozen=True)
class Samples:
    """One K2 exemplar file, as published, and how many exemplars it holds."""

    path: str
    text: str
    count: int


def read_samples(key: str, path: str, variant: str) -> Samples:
    """Read and check a K2 samples file: every exemplar in K2's layout, ``The answer is:`` in all (wa) or none."""
    where = f"`{key}: {path}`"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{where} cannot be read as a K2 samples file: {err}.") from None
    if not text.strip():
        raise ValueError(f"{where} is empty; expected K2's {SAMPLE_FILES[variant]}.")
    exemplars = text.rstrip("\n").split(SEPARATOR)
    for number, exemplar in enumerate(exemplars, start=1):
        match = _EXEMPLAR.fullmatch(exemplar)
        if match is None or bool(match["wa"]) != (variant == "wa"):
            expected = "### Instruction:, K2's instruction line, the question, Choose from:, `X. option` lines, "
            expected += f"a blank line, ### Response:, {ANSWER_IS + ' on its own line, ' if variant == 'wa' else ''}"
            raise ValueError(
                f"{where}, exemplar {number} (exemplars are separated by two blank lines) is not in K2's layout: "
                f"expected {expected}the letter. Give K2's {SAMPLE_FILES[variant]} unchanged.",
            )
    return Samples(path, text, len(exemplars))


def load_samples(args: Any, config: dict[str, Any], names: list[str]) -> dict[str, Samples]:
    """K2's exemplar files by variant, read and checked, with ``prompt_style: k2``; none with the default style.

    K2's protocol is GeoBench's objective tasks' own: a task of another family, or an `n_shot` or `lang` that its
    fixed exemplars and English prompts would ignore, is refused rather than run otherwise than asked.
    """
    if args.prompt_style != "k2":
        return {}
    others = [name for name in members(names) if name not in TASKS or TASKS[name].family != "geobench"]
    if others:
        raise ConfigError(
            "prompt_style",
            f"`prompt_style: k2` is K2's protocol for GeoBench's objective tasks; {', '.join(others)} would not run "
            "it: evaluate them in a run of their own, with the default `prompt_style`.",
        )
    for key in ("n_shot", "lang"):
        if key in config:
            raise ConfigError(
                key,
                f"`{key}` does not apply with `prompt_style: k2`: K2's prompts are English and its exemplars are "
                f"those of `k2_samples` / `k2_samples_wa`; remove `{key}`.",
            )
    samples = {}
    for variant, key in SAMPLE_KEYS.items():
        path = getattr(args, key)
        if path is None:
            raise ConfigError(
                key, f"`prompt_style: k2` needs `{key}`: the path of K2's {SAMPLE_FILES[variant]} (K2's evaluation/)."
            )
        try:
            samples[variant] = read_samples(key, path, variant)
        except ValueError as err:
            raise ConfigError(key, str(err)) from None
    return samples


def shown_settings(n_shot: int, samples: dict[str, Samples]) -> dict[str, Any]:
    """results.json's ``n_shot`` and ``k2_samples``: with K2's protocol, its files' exemplars."""
    return {
        "n_shot": samples["woa"].count if samples else n_shot,
        "k2_samples": {SAMPLE_KEYS[v]: s.path for v, s in samples.items()} or None,
    }


def question_block(question: ChoiceQuestion, variant: str) -> str:
    """A question in the exemplars' layout, up to its answer."""
    if is_true_false(question):
        body = f"{TF_INSTRUCTION}\n{question.stem}\n"
    else:
        options = "".join(f"{label}. {text}\n" for label, text in question.options)
        body = f"{INSTRUCTION}\n{question.stem}\nChoose from:\n{options}"
    return f"### Instruction:\n{body}\n### Response:\n" + (f"{ANSWER_IS}\n" if variant == "wa" else "")


def prompt_text(samples: Samples, question: ChoiceQuestion, variant: str) -> str:
    """The text K2 feeds the model: its exemplars, then the question (true/false: the question alone)."""
    block = question_block(question, variant)
    return block if is_true_false(question) else samples.text.rstrip("\n") + SEPARATOR + block


def option_tokens(tokenizer: PreTrainedTokenizer, answers: tuple[str, ...]) -> list[int]:
    """The tokens K2 scores: each answer encoded alone (K2's ``token_setup`` tables), its first token where the
    tokenizer splits it (K2's tables only knew one-token answers)."""
    ids = [tokenizer.encode(answer, add_special_tokens=False)[:1] for answer in answers]
    if any(not first for first in ids) or len({tuple(first) for first in ids}) != len(answers):
        raise ValueError(f"The answers {answers} cannot be told apart by their first token with this tokenizer.")
    return [first[0] for first in ids]


def k2_prompts(
    tokenizer: PreTrainedTokenizer, samples: Samples, variant: str, todo: list[ChoiceQuestion], budget: Budget | None
) -> list[Encoded]:
    """The K2 prompt of each of ``todo`` as token ids, checked against ``budget``."""

    def build(question: ChoiceQuestion) -> tuple[Encoded, int]:
        text = prompt_text(samples, question, variant)
        shots = () if is_true_false(question) else tuple(range(samples.count))
        ids = tokenizer(text)["input_ids"]
        return Encoded(ids, option_tokens(tokenizer, question.labels), shots), len(ids)

    return [fit_exemplars(q, (), lambda _, q=q: build(q), budget) for q in todo]


class K2Task(GeoBenchTask):
    """An objective GeoBench task scored K2's way, in one of its two variants (``NAME_wa``, ``NAME_woa``)."""

    family = "k2"

    def __init__(self, task: Task, settings: Settings, folder: Path, layout: str, variant: str) -> None:
        super().__init__(task, settings, folder, layout)
        self.variant = variant
        self.samples: Samples = settings.k2_samples[variant]

    @property
    def name(self) -> str:
        return f"{self.task.name}_{self.variant}"

    @property
    def description(self) -> str:
        return f"{self.task.description}, K2, {VARIANTS[self.variant]}"

    def prompts(self, encoder: PromptEncoder, budget: Callable[[bool], Budget | None]) -> list[Any]:
        return k2_prompts(encoder.tokenizer, self.samples, self.variant, self.selected, budget(False))

    def records(self, batches: Iterator[list[dict[str, Any]]], todo: list[Question]) -> Iterator[list[dict[str, Any]]]:
        """The records with the prompt text each question was scored on, checkable byte for byte."""
        by_id = {question.id: question for question in todo}
        for records in batches:
            for record in records:
                record["prompt"] = prompt_text(self.samples, by_id[record["id"]], self.variant)
            yield records

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        tf = self.task.kind == "tf"
        return {
            "prompt_style": "k2",
            "k2_variant": self.variant,
            "n_shot": 0 if tf else self.samples.count,
            "fewer_shots": 0,
            "k2_samples": None if tf else self.samples.path,
        }

    def notes(self) -> list[str]:
        return [NOTE]

    def fingerprint(self) -> dict[str, Any]:
        return {
            "prompt_style": "k2",
            "k2_samples_sha256": {
                v: hashlib.sha256(s.text.encode()).hexdigest() for v, s in self.settings.k2_samples.items()
            },
        }

    @classmethod
    def check(cls, members: list[BoundTask]) -> None:
        """K2's exemplars come from its files, not from the task: no `n_shot` to check."""
