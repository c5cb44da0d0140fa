"""The files of an evaluation ``save_dir`` (GeoBench and the general benchmarks), and resuming a run from them.

``run_config.json`` (written first: what the predictions depend on), ``predictions.jsonl`` (appended and
synced after every batch), then at the end ``results.json``, ``results.log`` and ``geobench.png``. A run
killed at any point resumes from ``predictions.jsonl`` (a torn last line is dropped) when rerun with the
same settings; ``results.json`` marks a finished run, which only ``overwrite_save_dir`` replaces.
"""

from __future__ import annotations

import json
import os
import statistics
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..extras import write_json_atomic
from .answers import summarize_answers
from .data import question_key, repeats
from .tasks import AVERAGE, AVERAGE_OF, average


if TYPE_CHECKING:
    from .data import ChoiceQuestion
    from .families.base import BoundTask
    from .plan import Plan


RUN_CONFIG, PREDICTIONS, RESULTS, RESULTS_LOG, CHART = (
    "run_config.json",
    "predictions.jsonl",
    "results.json",
    "results.log",
    "geobench.png",
)
OUTPUTS = (RUN_CONFIG, PREDICTIONS, RESULTS, RESULTS_LOG, CHART)


class SaveDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def check(self, overwrite: bool) -> None:
        """Refuse a finished run before anything is loaded or written."""
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"`save_dir: {self.path}` exists and is not a folder.")
        if (self.path / RESULTS).exists() and not overwrite:
            raise ValueError(
                f"`save_dir: {self.path}` holds a finished evaluation run ({RESULTS}); set `overwrite_save_dir: true` "
                "to replace it, or choose another `save_dir`."
            )

    def open(self, fingerprint: dict[str, Any], overwrite: bool) -> dict[tuple[str, int], dict[str, Any]]:
        """Start or resume: the predictions made so far, keyed by (task, id)."""
        self.check(overwrite)
        if overwrite:
            for name in OUTPUTS:
                (self.path / name).unlink(missing_ok=True)

        run_config = self.path / RUN_CONFIG
        if run_config.exists():
            self.check_resumable(fingerprint)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json_atomic(run_config, fingerprint)
        return self._read_predictions()

    def check_resumable(self, fingerprint: dict[str, Any]) -> None:
        """An unfinished run here must have been started with the same settings (reads only)."""
        run_config = self.path / RUN_CONFIG
        if not run_config.exists():
            return
        with open(run_config, encoding="utf-8") as f:
            previous = json.load(f)
        changed = sorted(k for k in {*previous, *fingerprint} if previous.get(k) != fingerprint.get(k))
        if changed:
            raise ValueError(
                f"`save_dir: {self.path}` holds an unfinished run with other settings ({', '.join(changed)} "
                f"differ, see {run_config}); rerun with those settings to resume it, or set "
                "`overwrite_save_dir: true` to start over."
            )

    def _read_predictions(self) -> dict[tuple[str, int], dict[str, Any]]:
        path = self.path / PREDICTIONS
        if not path.exists():
            return {}
        data = path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # killed mid-line: drop the torn tail, its batch is scored again
            with open(path, "r+b") as f:
                f.truncate(complete)
        records = {}
        for number, line in enumerate(data[:complete].decode("utf-8").splitlines(), start=1):
            try:
                record = json.loads(line)
                records[(record["task"], record["id"])] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(
                    f"{path}, line {number}: not an evaluation prediction; remove the file to start over."
                ) from None
        return records

    def append(self, records: list[dict[str, Any]]) -> None:
        """Add records; a later record of the same question (its judged answer) supersedes the earlier one."""
        with open(self.path / PREDICTIONS, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
            f.flush()
            os.fsync(f.fileno())

    def finish(self, results: dict[str, Any], others: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
        """predictions.jsonl without superseded lines, the chart and the table, then results.json (run finished)."""
        tmp = self.path / (PREDICTIONS + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / PREDICTIONS)
        plot(results, others, self.path / CHART)
        with open(self.path / RESULTS_LOG, "w", encoding="utf-8") as f:
            f.write(format_table(results))
        write_json_atomic(self.path / RESULTS, results)


def read_results(path: str | Path) -> dict[str, Any]:
    """Another run's results.json, for ``compare_with``."""
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"`compare_with` names {path}, which is not a readable results.json: {err}.") from None
    if not isinstance(results, dict) or not isinstance(results.get("tasks"), dict):
        raise ValueError(f"`compare_with` names {path}, which is not an evaluation results.json (no `tasks`).")
    return results


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 4) if whole else None


def _issues(questions: list[ChoiceQuestion]) -> dict[str, list[int]]:
    issues: dict[str, list[int]] = {}
    for question in questions:
        for issue in question.issues:
            issues.setdefault(issue, []).append(question.id)
    return {**issues, **repeats(questions)}


def deduplicated(questions: list[ChoiceQuestion], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The accuracy with each distinct question counted once (its first scored copy), leaving out the questions
    keyed more than one way; ``conflicting_keys`` counts those distinct questions among the scored ones."""
    answers: dict[tuple[str, ...], set[str]] = {}
    for question in questions:
        answers.setdefault(question_key(question), set()).add(question.answer)
    by_id = {record["id"]: record for record in records}
    counted: dict[tuple[str, ...], bool] = {}
    conflicting = set()
    for question in questions:
        key = question_key(question)
        if question.id not in by_id or key in counted:
            continue
        if len(answers[key]) > 1:
            conflicting.add(key)
            continue
        counted[key] = by_id[question.id]["correct"]
    correct = sum(counted.values())
    return {
        "scored": len(counted),
        "correct": correct,
        "accuracy": _percent(correct, len(counted)),
        "conflicting_keys": len(conflicting),
    }


def summarize_objective(task: BoundTask, records: list[dict[str, Any]]) -> dict[str, Any]:
    questions = task.questions
    correct = sum(record["correct"] for record in records)
    scored_ids = {record["id"] for record in records}
    scored = [q for q in questions if q.id in scored_ids]
    summary = {
        "kind": "objective",
        "family": task.family,
        "description": task.description,
        "metric": "accuracy",
        "accuracy": _percent(correct, len(records)),
        "correct": correct,
        "scored": len(records),
        "total": len(questions),
        "deduplicated": deduplicated(questions, records),
        "chance": round(100 * statistics.fmean(1 / len(q.labels) for q in scored), 4) if scored else None,
        "data_issues": _issues(questions),
        "source": task.source,
    }
    if any("response" in record for record in records):
        summary["extraction_failures"] = sum(record["prediction"] is None for record in records)
    return summary


def summarize_open(task: BoundTask, records: list[dict[str, Any]]) -> dict[str, Any]:
    judge_only = task.task.judge_only
    summary: dict[str, Any] = {
        "kind": "subjective",
        "family": task.family,
        "description": task.description,
        "metric": "judge" if judge_only else "rouge-l",
        "scored": len(records),
        "total": len(task.questions),
        "source": task.source,
    }
    if not judge_only:
        for metric in ("rouge-l", "bleu-4"):
            summary[metric] = round(statistics.fmean(r["scores"][metric] for r in records), 4) if records else None
    judged = [r for r in records if "judge" in r]
    if judged:
        ok = [r["judge"] for r in judged if r["judge"] is not None]
        criteria = list(ok[0]) if ok else []
        summary["judge"] = {c: round(statistics.fmean(s[c] for s in ok), 4) for c in criteria}
        summary["judge_mean"] = round(statistics.fmean(summary["judge"].values()), 4) if criteria else None
        summary["judged"] = len(ok)
        summary["judge_failures"] = len(judged) - len(ok)
    return summary


def summarize(plan: Plan, records: dict[str, list[dict[str, Any]]], hashes: dict[str, str]) -> dict[str, Any]:
    """Every task's summary, in run order, with JiuZhou's NPEE/APStudy average right after its parts."""
    tasks = {}
    for task in plan.tasks:
        mine = records[task.name]
        if task.objective:
            s = task.settings
            summary = summarize_objective(task, mine) if task.answer_spec is None else summarize_answers(task, mine)
            summary.update(
                eval_mode="generate" if task.generation else s.eval_mode,
                n_shot=s.n_shot,
                fewer_shots=sum(r.get("shots", s.n_shot) < s.n_shot for r in mine),
                seed=s.seed,
                lang=task.lang,
            )
            summary.update(task.summary(mine))
        else:
            summary = summarize_open(task, mine)
        summary["data_sha256"] = hashes[task.file]
        if len(task.selected) < len(task.questions):
            summary["sample_ids"] = [q.id for q in task.selected]
        tasks[task.name] = summary
    if all(name in tasks for name in AVERAGE_OF):
        after = max(list(tasks).index(name) for name in AVERAGE_OF) + 1  # shown right after its parts
        rest = {name: tasks.pop(name) for name in list(tasks)[after:]}
        tasks[AVERAGE] = {
            "kind": "average",
            "description": "mean of the NPEE and APStudy accuracies (JiuZhou's headline)",
            "metric": "accuracy",
            "accuracy": average({name: tasks[name]["accuracy"] for name in AVERAGE_OF}),
            "chance": average({name: tasks[name]["chance"] for name in AVERAGE_OF}),
            "of": list(AVERAGE_OF),
        }
        tasks.update(rest)
    return tasks


def run_notes(plan: Plan, tasks: dict[str, Any]) -> list[str]:
    """The families' notes, then how `max_samples` drew its subset, when it did."""
    notes = list(dict.fromkeys(note for task in plan.tasks for note in task.notes()))
    if any("sample_ids" in summary for summary in tasks.values()):
        s = plan.tasks[0].settings
        per = "".join(dict.fromkeys(task.subset_note for task in plan.tasks))
        notes.append(
            f"`max_samples: {s.max_samples}`: a random subset of each task{per} was scored, drawn by "
            f"`seed: {s.seed}`; its question ids are `sample_ids` in results.json."
        )
    return notes


def chart_metrics(summary: dict[str, Any]) -> list[tuple[str, float | None]]:
    """Every number of a task the chart shows, on a 0-100 scale: accuracy, or ROUGE-L, BLEU-4 and each judge score."""
    if summary["kind"] != "subjective":
        return [(summary["metric"], summary.get(summary["metric"]))]
    metrics = [(m, summary[m]) for m in ("rouge-l", "bleu-4") if m in summary]
    metrics += [(f"judge {c} x10", 10 * v) for c, v in summary.get("judge", {}).items()]
    return metrics or [("judge x10", None)]


def _ids(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:10]))
    return f"id{'s' if len(ids) > 1 else ''} {shown}{', ...' if len(ids) > 10 else ''}"


def data_issue_lines(results: dict[str, Any], own: bool | None = None) -> list[str]:
    """One line per task with data issues; ``own``: only the user's tasks (True) or only published ones (False)."""
    lines = []
    for name, summary in results["tasks"].items():
        issues = summary.get("data_issues") or {}
        if issues and own in (None, summary.get("family") == "custom"):
            listed = "; ".join(f"{issue} {len(ids)} ({_ids(ids)})" for issue, ids in issues.items())
            lines.append(f"{name}: {listed}")
    return lines


def format_table(results: dict[str, Any]) -> str:
    """The console table and results.log: every score with its chance level, then what qualifies the numbers."""
    rows = [("task", "metric", "value", "chance", "scored/total")]
    for name, summary in results["tasks"].items():
        count = f"{summary['scored']}/{summary['total']}" if "total" in summary else "-"
        metrics = [(summary["metric"], summary.get(summary["metric"]), summary.get("chance"))]
        if summary["kind"] == "lm_eval":  # every metric of the harness's table, by its name (`acc,none`)
            metrics = [(m, v, None) for m, v in summary["metrics"].items() if "_stderr" not in m]
        if summary["kind"] == "subjective":
            metrics = [(m, summary[m], None) for m in ("rouge-l", "bleu-4") if m in summary]
            metrics += [(f"judge {c}", v, None) for c, v in summary.get("judge", {}).items()]
            if "judge_failures" in summary:
                metrics.append(("judge failures", summary["judge_failures"], None))
        if "extraction_failures" in summary:
            metrics.append(("extraction failures", summary["extraction_failures"], None))
        for metric, value, chance in metrics:
            shown = ["-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v) for v in (value, chance)]
            rows.append((name, metric, *shown, count))
        once = summary.get("deduplicated")
        if once and once["scored"] != summary["scored"]:  # published repeats: each question once, beside it
            shown = "-" if once["accuracy"] is None else f"{once['accuracy']:.2f}"
            rows.append((name, "  each question once", shown, "", f"{once['scored']}/{summary['scored']}"))
        for category, part in summary.get("categories", {}).items():  # general benchmarks, question-weighted
            shown = ["-" if v is None else f"{v:.2f}" for v in (part["accuracy"], summary.get("chance"))]
            rows.append((name, f"  {category}", *shown, f"{part['scored']}/{part['total']}"))
    for name in results.get("absent", {}):
        rows.append((name, "absent", "-", "-", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))

    settings = results["settings"]
    header = f"{title(results)}: {results['model']['name']}"
    if any(summary["kind"] == "objective" for summary in results["tasks"].values()):
        style = settings.get("prompt_style", "default")
        prompts = "" if style == "default" else f", {style} prompts"
        header += f" (objective: {settings['eval_mode']}, {settings['n_shot']}-shot{prompts}, seed {settings['seed']})"
    footer = [f"{name}: {why}." for name, why in results.get("absent", {}).items()]
    for name, summary in results["tasks"].items():
        if summary.get("fewer_shots"):
            footer.append(
                f"{name}: {summary['fewer_shots']} of {summary['scored']} questions were scored with fewer than "
                f"{summary['n_shot']} exemplars (prompt limit: {settings['prompt_limit']})."
            )
    for own, heading in (
        (False, "Data issues, published defects kept and counted as published:"),
        (True, "Data issues in your own files, the questions kept and counted as written:"),
    ):
        issues = data_issue_lines(results, own)
        if issues:
            footer += [heading, *(f"  {line}" for line in issues)]
    if any(
        s.get("deduplicated", {}).get("scored", s.get("scored")) != s.get("scored") for s in results["tasks"].values()
    ):
        footer.append(
            "each question once: the accuracy with every repeated question counted once and the questions keyed "
            "more than one way (conflicting_keys) left out; the published protocol's accuracy stays the headline."
        )
    footer += results["notes"]
    data = f"data: {settings['task_dir']} ({settings['layout']} layout)"
    if settings.get("geobench_task_dir"):
        data += f"; GeoBench: {settings['geobench_task_dir']} ({settings['geobench_layout']} layout)"
    return "\n".join([header, data, "", *lines, "", *footer, ""])


def title(results: dict[str, Any]) -> str:
    """What was evaluated: GeoBench, the general benchmarks, both (JiuZhou's table), or tasks of the user's own."""
    summaries = [s for s in results["tasks"].values() if s["kind"] != "average"]
    # results.json files written before tasks recorded their family: the general benchmarks are those with categories
    families = {s.get("family") or ("general" if "categories" in s else "geobench") for s in summaries}
    families = {"geobench" if family == "k2" else family for family in families}
    names = {
        frozenset({"geobench"}): "GeoBench",
        frozenset({"general"}): "General benchmarks",
        frozenset({"geobench", "general"}): "GeoBench and general benchmarks",
    }
    return names.get(frozenset(families), "Evaluation")


def question_sets(results: dict[str, Any], others: list[dict[str, Any]]) -> list[str]:
    """Tasks that another run of ``compare_with`` scored on other questions (other data, or another subset)."""

    def key(summary: dict[str, Any], with_hash: bool) -> tuple:
        return (summary.get("total"), summary.get("sample_ids"), summary.get("data_sha256") if with_hash else None)

    differ = []
    for other, label in zip(others, labels([results, *others])[1:]):
        for name, summary in results["tasks"].items():
            theirs = other.get("tasks", {}).get(name)
            if summary["kind"] == "average" or theirs is None:
                continue
            with_hash = "data_sha256" in summary and "data_sha256" in theirs
            if key(summary, with_hash) != key(theirs, with_hash):
                differ.append(f"{name} ({label})")
    return differ


def _describe(run: dict[str, Any], key: str) -> str | None:
    settings = run.get("settings", {})
    if key == "data":
        folder, layout = settings.get("task_dir"), settings.get("layout")
        if not folder:
            return None
        name = Path(folder).name
        return name if layout in name else f"{name} ({layout} layout)"
    if key == "n_shot":
        return f"{settings['n_shot']}-shot" if "n_shot" in settings else None
    value = settings.get(key)
    return None if value is None else f"{key} {value}"


def labels(runs: list[dict[str, Any]]) -> list[str]:
    """Legend labels: the model's name, plus the data and settings that tell runs of the same model apart."""
    names = [run.get("model", {}).get("name", f"run {i + 1}") for i, run in enumerate(runs)]
    result = []
    for run, name in zip(runs, names):
        same = [other for other, other_name in zip(runs, names) if other_name == name]
        extra = [
            _describe(run, key)
            for key in ("data", "eval_mode", "n_shot", "seed", "max_samples")
            if len({_describe(other, key) for other in same}) > 1
        ]
        label = f"{name} ({', '.join(e for e in extra if e)})" if len(same) > 1 and any(extra) else name
        result.append(label)
    return [label if result.count(label) == 1 else f"{label} #{i + 1}" for i, label in enumerate(result)]


def plot(results: dict[str, Any], others: list[dict[str, Any]], path: Path) -> None:
    """Bars of every metric per task, with its chance level; with ``compare_with``, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [results, *others]
    slots = list(
        dict.fromkeys(
            (task, metric) for run in runs for task, summary in run.get("tasks", {}).items()
            for metric, _ in chart_metrics(summary)
        )
    )  # fmt: skip
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.1 * len(slots) + 2), 5.0))
    chance_shown = False
    for i, (run, label) in enumerate(zip(runs, labels(runs))):
        values = [dict(chart_metrics(run["tasks"][t])).get(m) if t in run.get("tasks", {}) else None for t, m in slots]
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(slots))]
        bars = ax.bar(xs, [v or 0.0 for v in values], width, label=label)
        for bar, value, (task, _) in zip(bars, values, slots):
            if value is not None:
                ax.annotate(
                    f"{value:.1f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
            chance = run.get("tasks", {}).get(task, {}).get("chance")
            if chance is not None:
                x = bar.get_x()
                ax.hlines(chance, x, x + bar.get_width(), colors="black", linestyles="--", linewidth=1.2,
                          label=None if chance_shown else "chance")  # fmt: skip
                chance_shown = True
    ax.set_xticks(range(len(slots)), [f"{task}\n{metric}" for task, metric in slots], fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (0-100)")
    settings = results["settings"]
    heading = f"{title(results)} on {'/'.join(Path(settings['task_dir']).parts[-2:])} ({settings['layout']} layout)"
    if any(summary["kind"] == "objective" for summary in results["tasks"].values()):
        heading += f"; {settings['eval_mode']}, {settings['n_shot']}-shot, seed {settings['seed']}"
    if settings.get("max_samples"):
        per = "subject" if any("categories" in s for s in results["tasks"].values()) else "task"
        heading += f", {settings['max_samples']} random questions per {per}"
    ax.set_title("\n".join(textwrap.wrap(heading, 95)), fontsize=9)  # long titles would be cut at the edges
    ax.legend(fontsize=8)
    notes = [f"data issues: {line}" for line in data_issue_lines(results)]
    differ = question_sets(results, others)
    if differ:
        notes.append(f"compared on other questions: {', '.join(differ)}")
    bottom = 0.0
    if notes:  # wrapped to the figure's width, and the axes (with their tick labels) laid out above it
        wrapped = "\n".join(textwrap.fill(note, int(fig.get_figwidth() * 72 / 3.1)) for note in notes)
        text = fig.text(0.01, 0.01, wrapped, fontsize=6, va="bottom")
        bottom = 0.02 + text.get_window_extent(fig.canvas.get_renderer()).height / fig.bbox.height
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
