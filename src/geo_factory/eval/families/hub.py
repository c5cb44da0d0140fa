"""Benchmarks read from their hub datasets through ``datasets`` and its cache (FormationEval, EarthSE, ClimaQA).

A task names its dataset, config and split in its registry entry (``Task.config``: ``repo``, ``name``, ``split``).
The split is read when the task is bound, before any model loads: offline and not cached is one line naming the
dataset (as the general benchmarks' hub path says it); a column the loader needs that is missing, or one it does not
know, is one line naming the column, so that a change upstream is a clear error and never a silent misreading.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from ..data import EvalDataError
from ..tasks import TASKS, Task, members
from .base import Binding, BoundTask, Settings, Where
from .general import _offline, _quiet


LAYOUT = "hub"


def load_split(repo: str, name: str | None, split: str, task: str, cache_dir: str | None, token: str | None) -> Any:
    """One split of a hub dataset (downloaded, or from the ``datasets`` cache)."""
    from datasets import load_dataset

    which = f"{repo}" + (f" (config {name}, split {split})" if name else f" (split {split})")
    with _quiet():
        try:
            return load_dataset(repo, name=name, split=split, cache_dir=cache_dir, token=token)
        except Exception as err:  # datasets raises many kinds: offline, network, access, cache, config
            var = _offline()
            if var:
                raise EvalDataError(
                    f"`{task}` reads the hub dataset {which}, which is not in the cache and the hub cannot be reached "
                    f"({var}=1): run once online to cache it, or leave `{task}` out of `task`."
                ) from None
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            raise EvalDataError(
                f"`{task}` reads the hub dataset {which}, which could not be loaded: {reason}"
            ) from None


def check_columns(rows: Any, required: set[str], known: set[str], where: str) -> None:
    """Every column the loader reads is there, and none it does not know is."""
    columns = set(rows.column_names)
    missing, unknown = sorted(required - columns), sorted(columns - known)
    if missing:
        raise EvalDataError(f"{where}: no column `{missing[0]}` (columns: {', '.join(rows.column_names)}).")
    if unknown:
        raise EvalDataError(
            f"{where}: unexpected column `{unknown[0]}` (known: {', '.join(sorted(known))}); the dataset changed "
            "upstream: geo-factory must be updated to read it."
        )


class HubTask(BoundTask):
    """A task whose questions are one split of a hub dataset."""

    required: ClassVar[frozenset[str]] = frozenset()  # the columns read
    known: ClassVar[frozenset[str]] = frozenset()  # every column the dataset card names

    def __init__(self, task: Task, settings: Settings, where: Where) -> None:
        from datasets import config

        super().__init__(task, settings, Path(where.cache_dir or config.HF_DATASETS_CACHE), LAYOUT)
        self.where = where

    @property
    def hub(self) -> dict[str, Any]:
        return self.task.config

    @property
    def file(self) -> str:
        name = f"/{self.hub['name']}" if self.hub.get("name") else ""
        return f"hub:{self.hub['repo']}{name}/{self.hub['split']}"

    @property
    def source(self) -> str:
        return self.file

    @property
    def where_rows(self) -> str:
        return f"The hub dataset {self.hub['repo']}" + (f", config {self.hub['name']}" if self.hub.get("name") else "")

    @cached_property
    def rows(self) -> list[dict[str, Any]]:
        """The split's rows, its columns checked."""
        rows = load_split(
            self.hub["repo"],
            self.hub.get("name"),
            self.hub["split"],
            self.name,
            self.where.cache_dir,
            self.where.token,
        )
        check_columns(rows, self.required, self.known, f"{self.where_rows}, split {self.hub['split']}")
        return list(rows)

    def row_error(self, number: int, problem: str) -> EvalDataError:
        return EvalDataError(f"{self.where_rows}, split {self.hub['split']}, row {number}: {problem}")

    def data_files(self) -> dict[str, Path]:
        return {}

    def data_digests(self) -> dict[str, str]:
        """The rows as read: the hub has no file of ours."""
        text = json.dumps(self.rows, ensure_ascii=False, sort_keys=True, default=str)
        return {self.file: hashlib.sha256(text.encode()).hexdigest()}


def bind_hub(names: list[str], settings: Settings, where: Where, classes: dict[str, type[HubTask]]) -> Binding:
    """The tasks of ``names`` (a suite opened), each of the class its variant names, read now so that an unreachable
    dataset or a changed column stops the run before any model loads."""
    tasks = [classes[TASKS[name].config["variant"]](TASKS[name], settings, where) for name in members(names)]
    for task in tasks:
        task.questions  # noqa: B018  (cached: read once)
    return Binding(tasks, tasks[0].folder, LAYOUT, hub={task.name: task.source for task in tasks})
