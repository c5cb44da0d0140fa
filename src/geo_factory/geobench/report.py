"""The files of a GeoBench ``save_dir``, and resuming a run from them.

``run_config.json`` (written first: what the predictions depend on), ``predictions.jsonl`` (appended and
synced after every batch), then at the end ``results.json``, ``results.log`` and ``geobench.png``. A run
killed at any point resumes from ``predictions.jsonl`` (a torn last line is dropped) when rerun with the
same settings; ``results.json`` marks a finished run, which only ``overwrite_save_dir`` replaces.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..extras import write_json_atomic


if TYPE_CHECKING:
    from .data import ChoiceQuestion, OpenQuestion
    from .tasks import Task


RUN_CONFIG, PREDICTIONS, RESULTS, RESULTS_LOG, CHART = (
    "run_config.json",
    "predictions.jsonl",
    "results.json",
    "results.log",
    "geobench.png",
)
OUTPUTS = (RUN_CONFIG, PREDICTIONS, RESULTS, RESULTS_LOG, CHART)
NO_DEV_SPLIT = (
    "GeoBench has no dev split: the few-shot exemplars of a question are drawn (by `seed`) from the same task, "
    "excluding the question itself and exact duplicates of it."
)


class SaveDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def check(self, overwrite: bool) -> None:
        """Refuse a finished run before anything is loaded or written."""
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"`save_dir: {self.path}` exists and is not a folder.")
        if (self.path / RESULTS).exists() and not overwrite:
            raise ValueError(
                f"`save_dir: {self.path}` holds a finished GeoBench run ({RESULTS}); set `overwrite_save_dir: true` "
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
            with open(run_config, encoding="utf-8") as f:
                previous = json.load(f)
            changed = sorted(k for k in {*previous, *fingerprint} if previous.get(k) != fingerprint.get(k))
            if changed:
                raise ValueError(
                    f"`save_dir: {self.path}` holds an unfinished run with other settings ({', '.join(changed)} "
                    f"differ, see {run_config}); rerun with those settings to resume it, or set "
                    "`overwrite_save_dir: true` to start over."
                )
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json_atomic(run_config, fingerprint)
        return self._read_predictions()

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
                    f"{path}, line {number}: not a GeoBench prediction; remove the file to start over."
                ) from None
        return records

    def append(self, records: list[dict[str, Any]]) -> None:
        with open(self.path / PREDICTIONS, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
            f.flush()
            os.fsync(f.fileno())

    def finish(self, results: dict[str, Any], others: list[dict[str, Any]]) -> None:
        """The chart and the table, then results.json, which marks the run finished."""
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
        raise ValueError(f"`compare_with` names {path}, which is not a GeoBench results.json (no `tasks`).")
    return results


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 4) if whole else None


def _issues(questions: list[ChoiceQuestion]) -> dict[str, list[int]]:
    issues: dict[str, list[int]] = {}
    for question in questions:
        for issue in question.issues:
            issues.setdefault(issue, []).append(question.id)
    return issues


def summarize_objective(
    task: Task, questions: list[ChoiceQuestion], records: list[dict[str, Any]], source: str
) -> dict[str, Any]:
    correct = sum(record["correct"] for record in records)
    scored_ids = {record["id"] for record in records}
    scored = [q for q in questions if q.id in scored_ids]
    summary = {
        "kind": "objective",
        "description": task.description,
        "metric": "accuracy",
        "accuracy": _percent(correct, len(records)),
        "correct": correct,
        "scored": len(records),
        "total": len(questions),
        "chance": round(100 * statistics.fmean(1 / len(q.labels) for q in scored), 4) if scored else None,
        "data_issues": _issues(questions),
        "source": source,
    }
    if any("response" in record for record in records):
        summary["extraction_failures"] = sum(record["prediction"] is None for record in records)
    return summary


def summarize_open(
    task: Task, questions: list[OpenQuestion], records: list[dict[str, Any]], source: str
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "kind": "subjective",
        "description": task.description,
        "metric": "judge" if task.judge_only else "rouge-l",
        "scored": len(records),
        "total": len(questions),
        "source": source,
    }
    if not task.judge_only:
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


def headline(summary: dict[str, Any]) -> tuple[str, float | None]:
    """The one number per task the chart shows, on a 0-100 scale."""
    if summary["metric"] == "judge":
        mean = summary.get("judge_mean")
        return "judge x10", None if mean is None else 10 * mean
    return summary["metric"], summary.get(summary["metric"])


def format_table(results: dict[str, Any]) -> str:
    rows = [("task", "metric", "value", "scored/total")]
    for name, summary in results["tasks"].items():
        count = f"{summary['scored']}/{summary['total']}" if "total" in summary else "-"
        metrics = [(summary["metric"], summary.get(summary["metric"]))]
        if summary["kind"] == "subjective":
            metrics = [(m, summary[m]) for m in ("rouge-l", "bleu-4") if m in summary]
            metrics += [(f"judge {c}", v) for c, v in summary.get("judge", {}).items()]
            if "judge_failures" in summary:
                metrics.append(("judge failures", summary["judge_failures"]))
        if "extraction_failures" in summary:
            metrics.append(("extraction failures", summary["extraction_failures"]))
        for metric, value in metrics:
            shown = "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
            rows.append((name, metric, shown, count))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    settings = results["settings"]
    header = f"GeoBench: {results['model']['name']}"
    if any(summary["kind"] == "objective" for summary in results["tasks"].values()):
        header += f" (objective: {settings['eval_mode']}, {settings['n_shot']}-shot, seed {settings['seed']})"
    return "\n".join([header, "", *lines, "", results["notes"][0], ""])


def plot(results: dict[str, Any], others: list[dict[str, Any]], path: Path) -> None:
    """One bar per task; with ``compare_with``, one group of bars per task, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [results, *others]
    tasks = list(dict.fromkeys(name for run in runs for name in run.get("tasks", {})))
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(tasks) + 2), 4.5))
    for i, run in enumerate(runs):
        values = [headline(run["tasks"][t])[1] if t in run.get("tasks", {}) else None for t in tasks]
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(tasks))]
        bars = ax.bar(xs, [v or 0.0 for v in values], width, label=run.get("model", {}).get("name", f"run {i + 1}"))
        for bar, value in zip(bars, values):
            if value is not None:
                ax.annotate(
                    f"{value:.1f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    labels = [f"{t}\n({headline(results['tasks'][t])[0] if t in results['tasks'] else '-'})" for t in tasks]
    ax.set_xticks(range(len(tasks)), labels, fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (0-100)")
    ax.set_title("GeoBench")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
