"""Evaluation tasks: a registry from task name to task, lm-evaluation-harness style.

A task knows where its questions live in each layout and how to read them; suites name several tasks.
GeoBench tasks read a GeoBench folder (K2 or JiuZhou layout); the general benchmarks (``mmlu_test``,
``cmmlu_test``, ``ceval_validation``, LLaMA-Factory's pre-0.9.5 names) read LLaMA-Factory's evaluation layout.
``jiuzhou`` is JiuZhou's table: GeoBench's NPEE and APStudy (and their average) beside C-Eval, CMMLU and MMLU.
Import-light on purpose: the argument dataclasses validate task names with it at parse time.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from . import data, general


OBJECTIVE_SUITE = "geobench"
SUBJECTIVE_SUITE = "geobench_subjective"
JIUZHOU_SUITE = "jiuzhou"
AVERAGE = "geobench_average"  # JiuZhou's headline: the mean of the NPEE and APStudy accuracies
AVERAGE_OF = ("geobench_npee", "geobench_apstudy")


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    kind: Literal["choice", "tf", "open"]
    sources: dict[str, tuple[str, Callable[[Path, str], list[data.Question]]]] = field(repr=False)
    judge_only: bool = False  # no reference answers: only a judge can score it

    @property
    def objective(self) -> bool:
        return self.kind != "open"

    @property
    def general(self) -> bool:
        """A general-ability benchmark (LLaMA-Factory's layout, subjects, dev-split exemplars), not GeoBench."""
        return general.LAYOUT in self.sources

    def file_in(self, layout: str) -> str | None:
        return self.sources[layout][0] if layout in self.sources else None

    def load(self, folder: Path, layout: str) -> list[data.Question]:
        file_name, loader = self.sources[layout]
        path = folder / file_name
        if not path.is_file():
            raise data.GeoBenchDataError(f"`{self.name}` reads {path}, which does not exist.")
        questions = loader(path, self.name)
        if not questions:
            raise data.GeoBenchDataError(f"{path} holds no `{self.name}` question.")
        return questions


TASKS: dict[str, Task] = {}


def register(task: Task) -> None:
    TASKS[task.name] = task


register(
    Task(
        "geobench_npee",
        "NPEE multiple choice",
        "choice",
        {
            "k2": ("geobench_npee.json", data.load_npee_choice),
            "jiuzhou": ("objective_task_npee.csv", data.load_choice_csv),
        },
    )
)
register(Task("geobench_npee_tf", "NPEE true/false", "tf", {"k2": ("geobench_npee.json", data.load_npee_tf)}))
register(
    Task(
        "geobench_apstudy",
        "AP Study multiple choice",
        "choice",
        {
            "k2": ("geobench_apstudy.json", data.load_apstudy_json),
            "jiuzhou": ("objective_task_apstudy.csv", data.load_choice_csv),
        },
    )
)
for _section, _what in (
    ("noun", "term definitions"),
    ("completion", "fill in the blanks"),
    ("qa", "short answers"),
    ("discussion", "essay questions"),
):
    register(
        Task(
            f"geobench_npee_{_section}",
            f"NPEE {_what}, with reference answers",
            "open",
            {"k2": ("geobench_npee.json", partial(data.load_npee_open, section=_section))},
        )
    )
register(
    Task(
        "geobench_open",
        "JiuZhou's open geoscience questions (judge only)",
        "open",
        {"jiuzhou": ("subjective_task.xlsx", data.load_open_xlsx)},
        judge_only=True,
    )
)

for _name, _what in (
    ("mmlu_test", "MMLU, test split"),
    ("cmmlu_test", "CMMLU, test split"),
    ("ceval_validation", "C-Eval, validation split"),
):
    register(
        Task(
            _name,
            _what,
            "choice",
            {
                general.LAYOUT: (
                    general.BENCHMARKS[_name].archive,
                    lambda path, task: general.load(path.parents[1], task).questions,
                )
            },
        )
    )

SUITES: dict[str, tuple[str, ...]] = {
    OBJECTIVE_SUITE: tuple(name for name, task in TASKS.items() if task.objective and not task.general),
    SUBJECTIVE_SUITE: tuple(name for name, task in TASKS.items() if not task.objective),
    JIUZHOU_SUITE: (*AVERAGE_OF, "ceval_validation", "cmmlu_test", "mmlu_test"),
}


def families(names: list[str]) -> tuple[list[str], list[str]]:
    """(GeoBench names, general task names) that ``names`` stand for; the ``jiuzhou`` suite is both."""
    geobench_names: list[str] = []
    general_names: list[str] = []
    for name in names:
        for member in SUITES[JIUZHOU_SUITE] if name == JIUZHOU_SUITE else (name,):
            into = general_names if member in TASKS and TASKS[member].general else geobench_names
            if member not in into:
                into.append(member)
    return geobench_names, general_names


def check_task_names(names: list[str], key: str, objective_only: bool = False) -> None:
    """Fail on an unknown task name (with the close ones) before anything is loaded."""
    if not names:
        raise ValueError(f"`{key}` names no task; known: {', '.join([*SUITES, *TASKS])}.")
    for name in names:
        if name not in TASKS and name not in SUITES:
            close = difflib.get_close_matches(name, [*SUITES, *TASKS], n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(
                f"Unknown GeoBench task `{name}` in `{key}`.{hint} Known: {', '.join([*SUITES, *TASKS])}."
            )
        if objective_only and (name == SUBJECTIVE_SUITE or (name in TASKS and not TASKS[name].objective)):
            raise ValueError(
                f"`{key}` takes objective tasks only (likelihood scoring during training); `{name}` is subjective."
            )


def expand(names: list[str], layout: str, folder: Path) -> list[Task]:
    """The tasks ``names`` stand for in this layout: suites keep the members it has, named tasks must exist."""
    tasks: dict[str, Task] = {}
    for name in names:
        if name in SUITES:
            members = [TASKS[member] for member in SUITES[name] if layout in TASKS[member].sources]
            if not members:
                raise data.GeoBenchDataError(f"{folder} ({layout} layout) has no task of the `{name}` suite.")
            tasks.update((task.name, task) for task in members)
        elif layout not in TASKS[name].sources:
            where = ", ".join(
                f"{task_layout} layout: {file}" for task_layout, (file, _) in TASKS[name].sources.items()
            )
            raise data.GeoBenchDataError(
                f"`{name}` is not part of the {layout} layout in {folder} (it is in the {where})."
            )
        else:
            tasks[name] = TASKS[name]
    return list(tasks.values())


def absent(names: list[str], layout: str) -> dict[str, str]:
    """Members of the suites in ``names`` that this layout lacks, and why: said in the table and results.json."""
    missing = {}
    for name in names:
        for member in SUITES.get(name, ()):
            if layout not in TASKS[member].sources:
                where = ", ".join(f"the {other} layout ({file})" for other, (file, _) in TASKS[member].sources.items())
                missing[member] = f"not part of the {layout} layout (it is in {where}): not scored"
    return missing
