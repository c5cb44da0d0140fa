"""MMLU (or CMMLU) 5-shot: ``llamafactory-cli eval`` (task ``mmlu_test``, ``cmmlu_test``) against
lm-evaluation-harness's Hugging Face backend on the harness's own ``mmlu`` (``cmmlu``) task, same model, same
questions, run alternately; medians over the repeats. ``--prompt-style lm_eval`` scores geo-factory with the
harness's own prompts (goal: the same letter on at least 99% of the questions whose top-two margin exceeds 1e-4,
accuracy within 0.5 point, at least 5x the harness's questions per second); ``default`` with LLaMA-Factory's.

Both read the same fixed subset: the first ``--per-subject`` test questions of each of MMLU's 57 subjects (or of
the first ``--subjects``), with
each subject's dev split as exemplars, built in a temporary folder from ../shared/general_eval/mmlu/mmlu.zip
(LLaMA-Factory's layout for geo-factory; jsonl files for the harness, whose task yamls include the harness's own
``mmlu_<subject>`` configs and override only where the data comes from, since ``cais/mmlu`` is on the hub).
Timed: each command's wall time (start-up and model loading included), and the scoring alone (the elapsed time
of each side's progress bar: geo-factory's ``mmlu_test``, the harness's ``Running loglikelihood requests``). Goal: at least 2x the questions per second,
accuracies within 1 point. The harness environment is ``scripts/lm_eval_env.sh``'s.

    python benchmarks/bench_mmlu.py [--model ~/.cache/geo-factory/smollm2-135m-instruct] [--per-subject 5]
        [--subjects 57] [--repeats 3] [--template fewshot] [--batch-size 8] [--threads 2] [--harness .venv-lm-eval]
        [--benchmark mmlu|cmmlu] [--prompt-style lm_eval|default] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import yaml


REPO = Path(__file__).resolve().parents[1]
GENERAL = REPO.parent / "shared" / "general_eval"
LABELS = "ABCD"
# per benchmark: archive members (LLaMA-Factory's layout), the first column of a row, whether rows have a header,
# the harness's task folder and the names of its doc fields
BENCHMARKS = {
    "mmlu": ("data/{split}/{subject}_{split}.csv", 0, False, "mmlu/default", "mmlu"),
    "cmmlu": ("{split}/{subject}.csv", 1, True, "cmmlu", "cmmlu"),
}


def _rows(archive: zipfile.ZipFile, member: str) -> list[list[str]]:
    return list(csv.reader(io.TextIOWrapper(archive.open(member), encoding="utf-8", newline="")))


def build_data(work: Path, per_subject: int) -> tuple[Path, Path, int]:
    """The subset in LLaMA-Factory's layout (for geo-factory) and as harness tasks; returns both and its size."""
    bench = ARGS.benchmark
    member_name, first, header, harness_folder, prefix = BENCHMARKS[bench]
    source_dir = GENERAL / bench
    mapping = json.loads((source_dir / "mapping.json").read_text())
    layout, tasks = work / "task_dir" / bench, work / "harness_tasks"
    layout.mkdir(parents=True)
    tasks.mkdir()
    (layout / "mapping.json").write_text(json.dumps({s: mapping[s] for s in list(mapping)[: ARGS.subjects]}))
    harness_root = Path(_harness_python(ARGS.harness, "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))"))
    total = 0
    with (
        zipfile.ZipFile(source_dir / f"{bench}.zip") as source,
        zipfile.ZipFile(layout / f"{bench}.zip", "w") as target,
    ):
        for subject in list(mapping)[: ARGS.subjects]:
            splits = {}
            for split, limit in (("dev", None), ("test", per_subject)):
                member = member_name.format(split=split, subject=subject)
                rows = _rows(source, member)
                head, rows = (rows[:1], rows[1:]) if header else ([], rows)
                rows = rows[:limit]
                buffer = io.StringIO()
                csv.writer(buffer).writerows(head + rows)
                target.writestr(member, buffer.getvalue())
                splits[split] = tasks / f"{subject}_{split}.jsonl"
                with open(splits[split], "w", encoding="utf-8") as f:
                    for row in rows:
                        question, *options, answer = row[first : first + 6]
                        if bench == "mmlu":
                            doc = {"question": question, "subject": subject, "choices": options,
                                   "answer": LABELS.index(answer)}  # fmt: skip
                        else:
                            doc = {"Question": question, **dict(zip(LABELS, options)), "Answer": answer}
                        f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            total += per_subject
            config = {
                "include": str(harness_root / "tasks" / harness_folder / f"{prefix}_{subject}.yaml"),
                "task": f"bench_{bench}_{subject}",
                "tag": f"bench_{bench}",
                "dataset_path": "json",
                "dataset_name": None,
                "dataset_kwargs": {"data_files": {split: str(path) for split, path in splits.items()}},
            }
            (tasks / f"bench_{bench}_{subject}.yaml").write_text(yaml.safe_dump(config))
    return work / "task_dir", tasks, total


def _harness_python(harness: Path, code: str) -> str:
    return subprocess.run(
        [str(harness / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def _bar_seconds(log: Path, label: str) -> float:
    """How long the run's progress bar ``label`` took to reach 100% (tqdm's elapsed field): the scoring alone."""
    bars = re.findall(rf"{re.escape(label)}: 100%[^\[]*\[(?:(\d+):)?(\d+):(\d+)<", log.read_text(errors="replace"))
    hours, minutes, seconds = (int(part or 0) for part in bars[-1])
    return 3600 * hours + 60 * minutes + seconds


def _run(cmd: list[str], env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}); see {log}")
    return elapsed


def run_geo_factory(work: Path, task_dir: Path, env: dict[str, str], repeat: int) -> tuple[float, dict]:
    save_dir, task = work / f"geo_factory_{repeat}", f"{ARGS.benchmark}_test"
    config = {
        "model_name_or_path": str(ARGS.model), "template": ARGS.template, "task": task,
        "task_dir": str(task_dir), "n_shot": 5, "batch_size": ARGS.batch_size, "save_dir": str(save_dir),
        "prompt_style": ARGS.prompt_style,
    }  # fmt: skip
    if ARGS.prompt_style == "default":
        config["lang"] = "en" if ARGS.benchmark == "mmlu" else "zh"
    (work / "eval.yaml").write_text(yaml.safe_dump(config))
    cli = str(Path(sys.executable).parent / "llamafactory-cli")
    log = work / f"geo_factory_{repeat}.log"
    seconds = (_run([cli, "eval", str(work / "eval.yaml")], env, log), _bar_seconds(log, task))
    records = [json.loads(line) for line in (save_dir / "predictions.jsonl").read_text().splitlines()]
    by_subject: dict[str, list[dict]] = {}
    for record in sorted(records, key=lambda record: record["id"]):  # ids run over all subjects, in published order
        by_subject.setdefault(record["subject"], []).append(record)
    return seconds, {
        (s, i): (r["prediction"], _margin(r["probs"])) for s, rs in by_subject.items() for i, r in enumerate(rs)
    }


def _margin(probs: dict[str, float]) -> float:
    top = sorted(probs.values(), reverse=True)
    return top[0] - top[1]


def run_harness(work: Path, tasks: Path, env: dict[str, str], repeat: int) -> tuple[float, dict]:
    out = work / f"harness_{repeat}"
    cmd = [
        str(ARGS.harness / "bin" / "python"), "-m", "lm_eval", "--model", "hf", "--device", "cpu",
        "--model_args", f"pretrained={ARGS.model},dtype=float32", "--include_path", str(tasks),
        "--tasks", f"bench_{ARGS.benchmark}", "--num_fewshot", "5", "--batch_size", str(ARGS.batch_size),
        "--log_samples", "--output_path", str(out),
    ]  # fmt: skip
    log = work / f"harness_{repeat}.log"
    seconds = (_run(cmd, env, log), _bar_seconds(log, "Running loglikelihood requests"))
    picks = {}
    for path in out.glob(f"*/samples_bench_{ARGS.benchmark}_*.jsonl"):
        subject = path.name.removeprefix(f"samples_bench_{ARGS.benchmark}_").rsplit("_", 1)[0]
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            lls = [float(resp[0]) for resp in sample["filtered_resps"]]
            picks[(subject, sample["doc_id"])] = LABELS[lls.index(max(lls))]
    return seconds, picks


def accuracy(picks: dict, gold: dict) -> float:
    """Percent of ``gold`` that ``picks`` (letters) got right."""
    return 100 * sum(picks[key] == gold[key] for key in gold) / len(gold)


def main() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(ARGS.threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_mmlu_") as tmp:
        work = Path(tmp)
        env["HF_HOME"] = str(work / "hf_home")
        task_dir, tasks, total = build_data(work, ARGS.per_subject)
        gold = {}
        for path in tasks.glob("*_test.jsonl"):
            for i, line in enumerate(path.read_text().splitlines()):
                doc = json.loads(line)
                gold[(path.name.removesuffix("_test.jsonl"), i)] = (
                    doc["Answer"] if "Answer" in doc else LABELS[doc["answer"]]
                )
        times: dict[str, list[tuple[float, float]]] = {"geo-factory": [], "harness": []}
        for repeat in range(ARGS.repeats):
            seconds, ours = run_geo_factory(work, task_dir, env, repeat)
            times["geo-factory"].append(seconds)
            seconds, theirs = run_harness(work, tasks, env, repeat)
            times["harness"].append(seconds)
            print(f"repeat {repeat} (command, scoring seconds): {times}", flush=True)
        picks = {key: pick for key, (pick, _) in ours.items()}
        clear = [key for key, (_, margin) in ours.items() if margin > 1e-4]
        median = {name: statistics.median(wall for wall, _ in values) for name, values in times.items()}
        scoring = {name: statistics.median(part for _, part in values) for name, values in times.items()}
        result = {
            "benchmark": ARGS.benchmark,
            "prompt_style": ARGS.prompt_style,
            "model": str(ARGS.model),
            "template": ARGS.template,
            "questions": total,
            "per_subject": ARGS.per_subject,
            "repeats": ARGS.repeats,
            "threads": ARGS.threads,
            "batch_size": ARGS.batch_size,
            "seconds": times,
            "questions_per_second": {name: round(total / value, 3) for name, value in median.items()},
            "speedup": round(median["harness"] / median["geo-factory"], 2),
            "scoring_questions_per_second": {name: round(total / value, 3) for name, value in scoring.items()},
            "scoring_speedup": round(scoring["harness"] / scoring["geo-factory"], 2),
            "accuracy": {"geo-factory": round(accuracy(picks, gold), 2), "harness": round(accuracy(theirs, gold), 2)},
            "same_choice": sum(picks[key] == theirs[key] for key in gold),
            "margin_above_1e-4": len(clear),
            "same_choice_margin_above_1e-4": sum(picks[key] == theirs[key] for key in clear),
        }
        print(json.dumps(result, indent=2))
        if ARGS.json:
            Path(ARGS.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path.home() / ".cache" / "geo-factory" / "smollm2-135m-instruct")
    parser.add_argument("--template", default="fewshot")
    parser.add_argument("--benchmark", choices=sorted(BENCHMARKS), default="mmlu")
    parser.add_argument("--prompt-style", choices=["default", "lm_eval"], default="lm_eval")
    parser.add_argument("--subjects", type=int, default=57, help="The first N subjects (57 in MMLU, 67 in CMMLU).")
    parser.add_argument("--per-subject", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--harness", type=Path, default=REPO / ".venv-lm-eval")
    parser.add_argument("--json", default=None)
    ARGS = parser.parse_args()
    main()
