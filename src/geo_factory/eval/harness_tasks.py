"""``lm_eval:NAME`` tasks in ``llamafactory-cli eval``: lm-evaluation-harness tasks and groups, run by the harness
itself (``lm_eval.simple_evaluate``) on geo-factory's model (:class:`.harness.GeoFactoryLM`).

Names and ``lm_eval_include_path`` are resolved with the harness's ``TaskManager`` when the run is checked, before
a model loads (the user's folder alone first: the built-in index takes seconds to build). Each requested name is one
``simple_evaluate`` call, so a task that fails leaves the others' results, and its summary is kept in
``save_dir/lm_eval_tasks/`` as it finishes: a resumed run skips it. With ``log_samples``, the harness's own
``EvaluationTracker`` writes its files (``results_*.json``, ``samples_<task>_*.jsonl``) under ``save_dir/lm_eval/``.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamafactory.extras import logging

from ..extras import missing_offline, write_json_atomic
from ..hparams.checks import ConfigError, split


if TYPE_CHECKING:
    from lm_eval.api.model import LM

    from ..hparams import GeoBenchTrainArguments


PREFIX = "lm_eval:"
FINISHED, HARNESS_FILES = "lm_eval_tasks", "lm_eval"  # folders under save_dir
EXTRA = "pip install 'geo-factory[lm-eval]'"
DATASET_KEYS = ("dataset_path", "dataset_name")
logger = logging.get_logger(f"llamafactory.{__name__}")  # under LLaMA-Factory's logger: its format and verbosity


def split_names(task: str) -> tuple[list[str], list[str]]:
    """``task``'s native names and its harness names (without the prefix), each in order."""
    names = split(task)
    return [n for n in names if not n.startswith(PREFIX)], [n[len(PREFIX) :] for n in names if n.startswith(PREFIX)]


@dataclass
class HarnessOptions:
    """The harness's run options that change answers (its CLI's names in comments)."""

    n_shot: int | None  # --num_fewshot; None: each task's own
    limit: int | None  # --limit (`max_samples`)
    seed: int  # --seed N: python, numpy, torch and few-shot seeds
    apply_chat_template: bool
    fewshot_as_multiturn: bool
    system_instruction: str | None
    log_samples: bool


class HarnessTasks:
    """The run's harness tasks: resolved at check time, run after the native tasks, summarised for results.json."""

    def __init__(self, names: list[str], include_path: str | None, options: HarnessOptions, manager: Any) -> None:
        self.names, self.include_path, self.options, self.manager = names, include_path, options, manager
        self.save: Path | None = None
        self.done: list[str] = []  # names finished in `save` (rank 0 reads them; every rank is told)

    @classmethod
    def resolve(
        cls,
        names: list[str],
        include_path: str | None,
        options: HarnessOptions,
        keys: tuple[str, str] = ("task", "lm_eval_include_path"),
    ) -> HarnessTasks:
        """Check lm-eval, the include path and every name (closest names on a miss); raise :class:`ConfigError`
        naming ``keys`` (the task list's, the include path's)."""
        task_key, path_key = keys
        try:
            from lm_eval.tasks import TaskManager
        except ImportError:
            raise ConfigError(
                task_key, f"`{PREFIX}` tasks run lm-evaluation-harness, which is not installed: {EXTRA}."
            ) from None
        if include_path is not None and not os.path.isdir(include_path):
            raise ConfigError(path_key, f"`{path_key}: {include_path}` is not a folder of task yamls.")
        manager = TaskManager(include_path=include_path, include_defaults=False) if include_path else None
        if manager is None or any(name not in manager.all_tasks for name in names):
            manager = TaskManager(include_path=include_path)
        for name in names:
            if name not in manager.all_tasks:
                close = difflib.get_close_matches(name, manager.all_tasks, n=3, cutoff=0.6)
                hint = f" Did you mean: {', '.join(PREFIX + c for c in close)}?" if close else ""
                where = f" or in `{path_key}: {include_path}`" if include_path else ""
                raise ConfigError(
                    task_key,
                    f"Unknown lm-evaluation-harness task `{PREFIX}{name}` in `{task_key}`: not in the harness{where}."
                    + hint,
                )
            _check_cached(manager, name, task_key)
        return cls(names, include_path, options, manager)

    def fingerprint(self) -> dict[str, Any]:
        """What the harness's answers depend on beyond the model (resume must match it)."""
        from lm_eval import __version__

        return {
            "tasks": self.names,
            "include_path": self.include_path,
            "lm_eval_version": __version__,
            **{k: v for k, v in vars(self.options).items() if k != "log_samples"},
        }

    def open(self, save_dir: Path, overwrite: bool, main: bool = True) -> list[str]:
        """Start or resume in ``save_dir`` (the main process reads and clears it): the names already finished."""
        self.save = save_dir
        if main and overwrite:
            for folder in (FINISHED, HARNESS_FILES):
                shutil.rmtree(save_dir / folder, ignore_errors=True)
        self.done = [name for name in self.names if main and self._finished(name).exists()]
        return self.done

    def _finished(self, name: str) -> Path:
        return self.save / FINISHED / f"{name.replace('/', '_')}.json"

    def run(self, lm: LM | None, model: dict[str, Any], main: bool = True) -> tuple[dict[str, Any], list[str]]:
        """Every name's summaries (finished ones read back), and a note per task that failed; on the main process
        (the others take part in the harness's gathering only). ``model``: as the harness's ``model_args``
        (``pretrained``, ``peft``): its files go to a folder named for it."""
        summaries: dict[str, dict[str, Any]] = {}
        notes = []
        for name in self.names:
            path = self._finished(name)
            if name not in self.done:
                try:
                    summary = self.evaluate(name, lm, model, main)
                except Exception as err:  # the other tasks' results stand; this one is named in the notes
                    notes.append(f"{PREFIX}{name} failed and has no result: {type(err).__name__}: {err}")
                    logger.exception(notes[-1])
                    continue
                if main:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_json_atomic(path, summary)
            if main:
                with open(path, encoding="utf-8") as f:
                    summaries.update(json.load(f))
        return summaries, notes

    def evaluate(self, name: str, lm: LM, model: dict[str, Any], main: bool = True) -> dict[str, dict[str, Any]]:
        """One requested name through ``simple_evaluate``: the summary of each row of its table (on the main
        process; the others answer their share of the requests and return nothing)."""
        from lm_eval import simple_evaluate
        from lm_eval.loggers import EvaluationTracker

        o = self.options
        tracker = EvaluationTracker(output_path=str(self.save / HARNESS_FILES)) if o.log_samples and main else None
        results = simple_evaluate(
            model=lm,
            model_args=model,
            tasks=[name],
            num_fewshot=o.n_shot,
            limit=o.limit,
            log_samples=o.log_samples,
            evaluation_tracker=tracker,
            system_instruction=o.system_instruction,
            apply_chat_template=o.apply_chat_template,
            fewshot_as_multiturn=o.fewshot_as_multiturn,
            task_manager=self.manager,
            random_seed=o.seed,
            numpy_random_seed=o.seed,
            torch_random_seed=o.seed,
            fewshot_random_seed=o.seed,
        )
        if results is None or not main:
            return {}
        if tracker is not None:
            samples = results.pop("samples")
            tracker.save_results_aggregated(results=results, samples=samples)
            for task in results["configs"]:
                tracker.save_results_samples(task_name=task, samples=samples[task])
        return summarize(name, results)

    def folders(self) -> dict[str, str]:
        """results.json's data settings when the run has no native task."""
        return {"task_dir": self.include_path or "lm-evaluation-harness", "layout": "lm_eval"}


def _check_cached(manager: Any, name: str, key: str) -> None:
    """Offline, each hub dataset the task (a group: each of its tasks) reads is in the ``datasets`` cache; else one
    line naming it, before a model loads (the harness would fail after, deep inside ``datasets``)."""
    for task, (repo, subset) in _hub_datasets(manager.task_index, name, {}):
        if "/" not in repo or os.path.exists(repo):  # a builder (json, csv), a legacy name, a local folder
            continue
        cache = missing_offline(repo, subset)
        if cache is not None:
            via = "" if task == name else f" (its task `{task}`)"
            raise ConfigError(
                key,
                f"`{PREFIX}{name}`{via} reads the hub dataset {repo}{f' (config {subset})' if subset else ''}, which is "
                f"not in the datasets cache ({cache}), and the run is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE): "
                "run once online to cache it, or leave the task out.",
            )


def _hub_datasets(
    index: dict[str, Any], name: str, overrides: dict[str, Any]
) -> Iterator[tuple[str, tuple[str, Any]]]:
    """``(task, (dataset_path, dataset_name))`` of every task ``name`` runs: a task, a group's members (with the
    group's overrides), a tag's tasks; from the harness's index, without building a task (that loads its data)."""
    from lm_eval.tasks._index import Kind

    entry = index.get(name)
    if entry is None:
        return
    cfg = entry.cfg or {}
    if entry.kind is Kind.TAG:
        for task in sorted(entry.tags):
            yield from _hub_datasets(index, task, overrides)
    elif entry.kind is Kind.GROUP:  # its own dataset keys apply to its members, as the harness builds them
        own = {k: cfg[k] for k in DATASET_KEYS if k in cfg}
        yield from _members(index, cfg.get("task") or [], {**own, **overrides})
    else:
        cfg = {**cfg, **overrides}
        if isinstance(cfg.get("dataset_path"), str):
            yield name, (cfg["dataset_path"], cfg.get("dataset_name"))


def _members(index: dict[str, Any], members: list[Any], overrides: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for member in members:
        if isinstance(member, str):
            yield from _hub_datasets(index, member, overrides)
        elif isinstance(member, dict) and isinstance(member.get("task"), str):  # a task with the group's overrides
            own = {k: v for k, v in member.items() if k in DATASET_KEYS}
            yield from _hub_datasets(index, member["task"], {**overrides, **own})
        elif isinstance(member, dict) and isinstance(member.get("task"), list):  # an inline group
            yield from _members(index, member["task"], overrides)


def for_training(args: GeoBenchTrainArguments) -> HarnessTasks | None:
    """The in-training hook's `lm_eval:` tasks (each task's own few-shot setting; `geobench_max_samples` as the limit,
    `geobench_seed` as the seeds), resolved when the training arguments are checked."""
    if not args.harness_task_names:
        return None
    options = HarnessOptions(None, args.geobench_max_samples, args.geobench_seed, False, False, None, False)
    keys = ("geobench_tasks", "geobench_lm_eval_include_path")
    return HarnessTasks.resolve(args.harness_task_names, args.geobench_lm_eval_include_path, options, keys)


def summarize(name: str, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One results.json entry per row of the harness's table (a group and its subtasks): every metric under the
    harness's own name (``acc,none``, ``exact_match,strict-match``, their ``_stderr``)."""
    summaries = {}
    for task, row in results["results"].items():
        metrics = {k: v for k, v in row.items() if "," in k}  # `metric,filter` and `metric_stderr,filter`
        headline = next((k for k in metrics if "_stderr" not in k), None)
        samples = results.get("n-samples", {}).get(task, {})
        summaries[f"{PREFIX}{task}"] = {
            "kind": "lm_eval",
            "family": "lm_eval",
            "description": f"lm-evaluation-harness {'group' if task in results.get('groups', {}) else 'task'}"
            + ("" if task == name else f" of `{PREFIX}{name}`"),
            "metric": headline,
            **({headline: metrics[headline]} if headline else {}),
            "metrics": metrics,
            "higher_is_better": results.get("higher_is_better", {}).get(task, {}),
            "n_shot": results.get("n-shot", {}).get(task),
            "version": results.get("versions", {}).get(task),
            **({"scored": samples["effective"], "total": samples["original"]} if samples else {}),
            "seconds": round(float(results.get("total_evaluation_time_seconds", 0.0)), 2),
        }
    return summaries
