"""The evaluation plan: the tasks a run asks for, each bound to its family, folder and settings, built once.

``llamafactory-cli eval``, the in-training hook, ``geo-factory export-lm-eval`` and decontamination all build
their tasks here, so a task name means the same questions, selection and prompts wherever it is used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import harness_tasks
from .families import FAMILIES, custom
from .families.base import Binding, BoundTask, Settings, Where
from .styles import check_lang
from .tasks import SUITES, TASKS, Task, check_task_names


if TYPE_CHECKING:
    from ..hparams import GeoBenchTrainArguments


@dataclass
class Plan:
    tasks: list[BoundTask]
    bindings: dict[str, Binding]  # by family module
    settings: Settings
    harness: harness_tasks.HarnessTasks | None = None  # the in-training hook's `lm_eval:` tasks

    @property
    def absent(self) -> dict[str, str]:
        return {name: why for binding in self.bindings.values() for name, why in binding.absent.items()}

    @property
    def layout(self) -> str:
        """GeoBench's layout when it is read, else the first family's (None: `lm_eval:` tasks alone)."""
        binding = self.bindings.get("geobench") or next(iter(self.bindings.values()), None)
        return None if binding is None else binding.layout

    def folders(self) -> dict[str, str]:
        """The folders read, as results.json's settings show them: `task_dir`, and GeoBench's own beside others."""
        geobench = self.bindings.get("geobench")
        others = [binding for family, binding in self.bindings.items() if family != "geobench"]
        main = others[0] if others else geobench
        data = {"task_dir": str(main.folder), "layout": main.layout}
        hub = {name: source for binding in others for name, source in binding.hub.items()}
        if hub:
            data["hub_datasets"] = hub
        if main.hub:  # no folder: the hub datasets stand where it would be
            data["task_dir"] = ", ".join(dict.fromkeys(hub.values()))
        if geobench is not None and others:
            data.update(geobench_task_dir=str(geobench.folder), geobench_layout=geobench.layout)
        return data

    def hashes(self) -> dict[str, str]:
        """sha256 of every file read, by its name under its folder, and of every hub dataset read, by its name."""
        files = {name: path for task in self.tasks for name, path in task.data_files().items()}
        digests = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
        for task in self.tasks:
            digests.update(task.data_digests())
        return dict(sorted(digests.items()))

    def load(self) -> None:
        """Read every task's questions and run each family's checks over them: data errors surface here."""
        for task in self.tasks:
            task.questions  # noqa: B018  (cached: read once)
        for cls in dict.fromkeys(type(task) for task in self.tasks):
            cls.check([task for task in self.tasks if type(task) is cls])


def registry(custom_dir: str | None) -> dict[str, Task]:
    """The built-in tasks and the user's (``eval_info.json`` in ``custom_dir``)."""
    return {**TASKS, **custom.user_tasks(custom_dir)}


def _by_family(names: list[str], tasks: dict[str, Task]) -> dict[str, list[str]]:
    """The names each family binds: a suite within one family stays a name (it takes what the layout has), a
    suite across families (``jiuzhou``) is opened into its tasks."""
    grouped: dict[str, list[str]] = {}
    for name in names:
        members = SUITES.get(name, (name,))
        families = {tasks[member].family for member in members}
        for family, member in (
            [(families.pop(), name)] if len(families) == 1 else [(tasks[m].family, m) for m in members]
        ):
            grouped.setdefault(family, [])
            if member not in grouped[family]:
                grouped[family].append(member)
    return grouped


def build(names: list[str], settings: Settings, where: Where, key: str = "task", objective_only: bool = False) -> Plan:
    """Check ``names`` (given as ``key``) and bind them to their families. Local folders are checked before a hub
    download: families bind from the last to the first, and the run scores them in :data:`FAMILIES` order."""
    tasks = registry(where.dirs.get("custom", (None, None))[1])
    check_task_names(names, key, objective_only, tasks)
    grouped = _by_family(names, tasks)
    bindings = {
        family: FAMILIES[family].bind(grouped[family], settings, where)
        for family in reversed(FAMILIES)
        if family in grouped
    }
    bindings = {family: bindings[family] for family in FAMILIES if family in bindings}
    plan = Plan([task for binding in bindings.values() for task in binding.tasks], bindings, settings)
    check_lang(plan.tasks)
    return plan


def for_training(args: GeoBenchTrainArguments, cache_dir: str | None = None, token: str | None = None) -> Plan:
    """The in-training hook's plan (objective tasks, likelihood): checked at parsing, built again by the callback.
    Tasks of the user's own are read from ``geobench_general_task_dir/eval_info.json``."""
    settings = Settings(
        n_shot=args.geobench_n_shot,
        seed=args.geobench_seed,
        lang=args.geobench_lang,
        max_samples=args.geobench_max_samples,
        n_shot_key="geobench_n_shot",
    )
    where = Where(
        {
            "geobench": ("geobench_task_dir", args.geobench_task_dir),
            "general": ("geobench_general_task_dir", args.geobench_general_task_dir),
            "custom": ("geobench_general_task_dir", args.geobench_general_task_dir),
        },
        cache_dir,
        token,
    )
    harness = harness_tasks.for_training(args)
    if not args.task_names and harness is not None:  # `lm_eval:` tasks alone
        return Plan([], {}, settings, harness)
    plan = build(args.task_names, settings, where, key="geobench_tasks", objective_only=True)
    plan.harness = harness
    return plan


def families_of(names: list[str], tasks: dict[str, Task]) -> set[str]:
    """The families ``names`` (checked against ``tasks``) draw on."""
    return set(_by_family(names, tasks))
