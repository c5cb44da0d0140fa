"""The task registry, lm-evaluation-harness style: a task is a name, its family and where its questions live.

A task is data, as a task is one config in the harness: its benchmark family (``geo_factory.eval.families``) knows
how to read, prompt and summarise it, so nothing here imports a reader and the evaluation loop never asks which
benchmark it runs. Suites name several tasks. GeoBench tasks read a GeoBench folder (K2 or JiuZhou layout); the
general benchmarks (``mmlu_test``, ``cmmlu_test``, ``ceval_validation``, LLaMA-Factory's pre-0.9.5 names) read
LLaMA-Factory's evaluation layout. ``jiuzhou`` is JiuZhou's table: GeoBench's NPEE and APStudy (and their
average) beside C-Eval, CMMLU and MMLU. FormationEval, EarthSE and ClimaQA read their hub datasets' splits
(:func:`hub_task`); their generated-answer tasks have ``kind: answer`` (scored by an answer type, never by option
likelihood, so never in training).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

from ..hparams.checks import ConfigError


OBJECTIVE_SUITE = "geobench"
SUBJECTIVE_SUITE = "geobench_subjective"
JIUZHOU_SUITE = "jiuzhou"
AVERAGE = "geobench_average"  # JiuZhou's headline: the mean of the NPEE and APStudy accuracies
AVERAGE_OF = ("geobench_npee", "geobench_apstudy")
GENERAL_LAYOUT = "llamafactory"  # LLaMA-Factory's evaluation layout: task_dir/{mmlu,cmmlu,ceval}/NAME.zip


@dataclass(frozen=True)
class Task:
    name: str
    family: str  # its module in geo_factory.eval.families
    description: str
    kind: Literal["choice", "tf", "open", "answer"]  # answer: generated, scored by its answer type
    files: dict[str, str] = field(repr=False)  # layout -> file, relative to the task's folder
    judge_only: bool = False  # no reference answers: only a judge can score it
    config: dict[str, Any] | None = field(default=None, repr=False, compare=False)  # a user task's eval_info entry

    @property
    def objective(self) -> bool:
        return self.kind != "open"

    def file_in(self, layout: str) -> str | None:
        return self.files.get(layout)


TASKS: dict[str, Task] = {}


def register(task: Task) -> None:
    TASKS[task.name] = task


register(
    Task(
        "geobench_npee",
        "geobench",
        "NPEE multiple choice",
        "choice",
        {"k2": "geobench_npee.json", "jiuzhou": "objective_task_npee.csv"},
    )
)
register(Task("geobench_npee_tf", "geobench", "NPEE true/false", "tf", {"k2": "geobench_npee.json"}))
register(
    Task(
        "geobench_apstudy",
        "geobench",
        "AP Study multiple choice",
        "choice",
        {"k2": "geobench_apstudy.json", "jiuzhou": "objective_task_apstudy.csv"},
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
            "geobench",
            f"NPEE {_what}, with reference answers",
            "open",
            {"k2": "geobench_npee.json"},
        )
    )
register(
    Task(
        "geobench_open",
        "geobench",
        "JiuZhou's open geoscience questions (judge only)",
        "open",
        {"jiuzhou": "subjective_task.xlsx"},
        judge_only=True,
    )
)
for _name, _folder, _what in (
    ("mmlu_test", "mmlu", "MMLU, test split"),
    ("cmmlu_test", "cmmlu", "CMMLU, test split"),
    ("ceval_validation", "ceval", "C-Eval, validation split"),
):
    register(Task(_name, "general", _what, "choice", {GENERAL_LAYOUT: f"{_folder}/{_folder}.zip"}))


def hub_task(task: str, family: str, description: str, kind: str, repo: str, split: str, **extra: Any) -> Task:
    """A task read from a hub dataset's split (:mod:`.families.hub`); ``extra`` (config ``name``, ``variant``: the
    family's class for it) goes to its config."""
    source = f"hub:{repo}" + (f"/{extra['name']}" if extra.get("name") else "") + f"/{split}"
    return Task(task, family, description, kind, {"hub": source}, config={"repo": repo, "split": split, **extra})


# The geoscience benchmarks published since GeoBench (#35), read from their hub datasets
_FORMATIONEVAL = "AlmazErmilov/FormationEval"
register(
    hub_task(
        "formationeval",
        "formationeval",
        "FormationEval, option likelihood",
        "choice",
        _FORMATIONEVAL,
        "test",
        variant="choice",
    )
)
register(
    hub_task(
        "formationeval_gen",
        "formationeval",
        "FormationEval, the authors' generative protocol",
        "answer",
        _FORMATIONEVAL,
        "test",
        variant="generated",
    )
)
_EARTHSE = {"multiple_choice": "mc", "true_false": "tf", "fill_in_the_blank": "fib", "free_form": "free"}
for _level in ("iron", "silver"):
    for _split, _short in _EARTHSE.items():
        register(
            hub_task(
                f"earth_{_level}_{_short}",
                "earthse",
                f"EarthSE Earth-{_level.title()}, {_split}",
                "answer",
                f"ai-earth/Earth-{_level.title()}",
                _split,
                variant=_split,
            )
        )
for _level in ("Gold", "Silver"):
    _repo, _low = "UCSD-GENIE/ClimaQA", _level.lower()
    register(
        hub_task(
            f"climaqa_{_low}_mcq",
            "climaqa",
            f"ClimaQA {_level}, multiple choice (likelihood)",
            "choice",
            _repo,
            "mcq",
            name=_level,
            variant="mcq",
        )
    )
    register(
        hub_task(
            f"climaqa_{_low}_mcq_gen",
            "climaqa",
            f"ClimaQA {_level}, multiple choice (the authors' prompt, generated)",
            "answer",
            _repo,
            "mcq",
            name=_level,
            variant="mcq_gen",
        )
    )
    register(
        hub_task(
            f"climaqa_{_low}_cloze",
            "climaqa",
            f"ClimaQA {_level}, cloze",
            "answer",
            _repo,
            "cloze",
            name=_level,
            variant="cloze",
        )
    )
    register(
        hub_task(
            f"climaqa_{_low}_ffq",
            "climaqa",
            f"ClimaQA {_level}, free-form (judge, ROUGE-L, BLEU-4)",
            "answer",
            _repo,
            "ffq",
            name=_level,
            variant="ffq",
        )
    )

SUITES: dict[str, tuple[str, ...]] = {
    OBJECTIVE_SUITE: tuple(name for name, task in TASKS.items() if task.objective and task.family == "geobench"),
    SUBJECTIVE_SUITE: tuple(name for name, task in TASKS.items() if not task.objective),
    JIUZHOU_SUITE: (*AVERAGE_OF, "ceval_validation", "cmmlu_test", "mmlu_test"),
    **{
        f"earth_{level}": tuple(f"earth_{level}_{short}" for short in _EARTHSE.values())
        for level in ("iron", "silver")
    },
    **{
        f"climaqa_{level}": tuple(f"climaqa_{level}_{part}" for part in ("mcq", "mcq_gen", "cloze", "ffq"))
        for level in ("gold", "silver")
    },
}


def members(names: list[str]) -> list[str]:
    """The task names that ``names`` stand for, suites opened, each once, in order."""
    return list(dict.fromkeys(member for name in names for member in SUITES.get(name, (name,))))


def check_task_names(
    names: list[str], key: str, objective_only: bool = False, registry: dict[str, Task] | None = None
) -> None:
    """Fail on an unknown task name (with the close ones) before anything is loaded; ``registry`` adds the user's."""
    registry = TASKS if registry is None else registry
    known = [*SUITES, *registry]
    if not names:
        raise ConfigError(key, f"`{key}` names no task; known: {', '.join(known)}.")
    for name in names:
        if name not in registry and name not in SUITES:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(key, f"Unknown evaluation task `{name}` in `{key}`.{hint} Known: {', '.join(known)}.")
        if objective_only and any(registry[member].kind == "answer" for member in SUITES.get(name, (name,))):
            raise ConfigError(
                key,
                f"`{key}` scores option likelihoods during training; `{name}` is scored on generated answers: "
                "evaluate it with `llamafactory-cli eval`.",
            )
        if objective_only and (name == SUBJECTIVE_SUITE or (name in registry and not registry[name].objective)):
            raise ConfigError(
                key,
                f"`{key}` takes objective tasks only (likelihood scoring during training); `{name}` is subjective.",
            )


def average(accuracies: dict[str, float | None]) -> float | None:
    """JiuZhou's headline from the task accuracies (None when one is missing or unscored)."""
    parts = [accuracies.get(name) for name in AVERAGE_OF]
    return None if None in parts else round(sum(parts) / len(parts), 4)
