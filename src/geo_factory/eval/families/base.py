"""The small protocol every benchmark family implements, and the settings a run hands each of its tasks.

A family binds a registry task (``geo_factory.eval.tasks``) to a folder and the run's settings. The evaluation
loop, the in-training hook and export-lm-eval ask it for the same few things: its questions, the selected ones,
their prompts, how to decorate scored records, what it adds to the summary, its notes, what the predictions
depend on and which files it read. Everything a benchmark does differently lives behind these methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..data import ChoiceQuestion, Question
from ..prompts import Budget, ExemplarSampler, subset
from ..styles import STYLES, lm_eval_records


if TYPE_CHECKING:
    from ..answers import AnswerSpec
    from ..scoring import PromptEncoder
    from ..tasks import Task


@dataclass(frozen=True)
class Settings:
    """How a run asks for its tasks to be scored; built from eval's or the training hook's arguments."""

    n_shot: int
    seed: int
    lang: str | None  # None: each task's own language
    max_samples: int | None
    eval_mode: str = "likelihood"
    n_shot_key: str = "n_shot"  # the key messages name
    k2_samples: dict[str, Any] = field(default_factory=dict)  # prompt_style: k2, by variant
    protocol: str = "default"  # the prompt protocol of geo_factory.eval.styles: default or lm_eval


@dataclass(frozen=True)
class Where:
    """Where a run's families read from: each family's folder as (the key it was given as, its value)."""

    dirs: dict[str, tuple[str, str | None]]
    cache_dir: str | None = None  # hub datasets: the run's cache and token
    token: str | None = None
    hub: bool = False  # the general benchmarks may come from their hub datasets when no folder is given


@dataclass
class Binding:
    """What a family's ``bind`` returns: its bound tasks, the folder and layout read, suite members it lacks."""

    tasks: list[BoundTask]
    folder: Path
    layout: str
    absent: dict[str, str] = field(default_factory=dict)
    hub: dict[str, str] = field(default_factory=dict)  # read from the hub, not a folder: task -> "hub:REPO"


class BoundTask:
    """One task of a family, bound to its folder and the run's settings."""

    family: ClassVar[str]
    default_lang: ClassVar[str] = "en"
    subset_note: ClassVar[str] = ""  # how `max_samples` draws for this family, in the results note

    def __init__(self, task: Task, settings: Settings, folder: Path, layout: str) -> None:
        self.task, self.settings, self.folder, self.layout = task, settings, folder, layout

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def description(self) -> str:
        return self.task.description

    @property
    def objective(self) -> bool:
        return self.task.objective

    @property
    def file(self) -> str:
        return self.task.file_in(self.layout)

    @property
    def source(self) -> str:
        return str(self.folder / self.file)

    @property
    def lang(self) -> str:
        return self.settings.lang or self.default_lang

    @property
    def generation(self) -> bool:
        return not self.objective or self.settings.eval_mode == "generate"

    @property
    def answer_spec(self) -> AnswerSpec | None:
        """How answers generated in free text are read and matched (:mod:`..answers`); None: options are scored."""
        return None

    @cached_property
    def questions(self) -> list[Question]:
        return self.load()

    @cached_property
    def selected(self) -> list[Question]:
        return subset(self.questions, self.settings.max_samples, self.settings.seed)

    def load(self) -> list[Question]:
        raise NotImplementedError

    def sampler(self) -> Any:
        """Where exemplars come from: by default the task's other questions, drawn by seed."""
        return ExemplarSampler(self.questions, self.settings.n_shot, self.settings.seed)

    def prompts(self, encoder: PromptEncoder, budget: Callable[[bool], Budget | None]) -> list[Any]:
        """The prompt of every selected question in the run's protocol, fitted to ``budget(generation)``."""
        return STYLES[self.settings.protocol](self, encoder, budget)

    def harness_format(self, question: ChoiceQuestion) -> tuple[str, str]:
        """lm-evaluation-harness's description and answer cue for ``question`` (``prompt_style: lm_eval``)."""
        raise ValueError(f"`{self.name}` has no lm-evaluation-harness format.")

    def records(self, batches: Iterator[list[dict[str, Any]]], todo: list[Question]) -> Iterator[list[dict[str, Any]]]:
        """Scored records as they are written; a family may add what makes them checkable (``lm_eval``: the text)."""
        return lm_eval_records(self, batches, todo) if self.settings.protocol == "lm_eval" else batches

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """What the family adds to an objective task's summary in results.json."""
        return {}

    def notes(self) -> list[str]:
        return []

    def fingerprint(self) -> dict[str, Any]:
        """What the predictions depend on beyond the shared settings."""
        return {} if self.settings.protocol == "default" else {"prompt_style": self.settings.protocol}

    def data_files(self) -> dict[str, Path]:
        """Every file read, by its name under the folder (their sha256 go to results.json and run_config.json)."""
        return {self.file: self.folder / self.file}

    def data_digests(self) -> dict[str, str]:
        """sha256 of data not read from a file of its own (a hub dataset), by the name results.json gives it."""
        return {}

    @classmethod
    def check(cls, members: list[BoundTask]) -> None:
        """Checks over all of a run's tasks of this family, once their questions are read."""
