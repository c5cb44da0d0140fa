"""GeoBench through ``llamafactory-cli eval`` (and ``train``) on the tiny model, as a user runs it.

The published GeoBench is read in place from ../shared/geobench (those tests skip when it is absent);
tests/fixtures/geobench holds small questions of both layouts written for these tests. Every output file
of a run is parsed and checked against the others. The judge is a real ``llamafactory-cli api`` server on
127.0.0.1 serving the tiny model after a short SFT on judge-format replies, the same ``train`` run that
exercises the in-training GeoBench hook.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import CLI, SHARED_GEOBENCH, read_trainer_log, run_cli


FIXTURES = Path(__file__).parent / "fixtures" / "geobench"
OBJECTIVE = ("geobench_npee", "geobench_npee_tf", "geobench_apstudy")
NPEE_SECTIONS = {
    "geobench_npee": "choice",
    "geobench_npee_tf": "tf",
    "geobench_npee_noun": "noun",
    "geobench_npee_completion": "completion",
    "geobench_npee_qa": "qa",
    "geobench_npee_discussion": "discussion",
}
OPEN_QUESTIONS = [
    "How do hot spots form volcanic island chains?",
    "Why is the ocean salty?",
    "What drives the monsoon?",
]
JUDGE_REPLY = "accuracy: 7\ncompleteness: 6\nclarity: 8"
JUDGE_KEY = "judge-key-5f1c9a"
needs_shared = pytest.mark.skipif(
    not SHARED_GEOBENCH.is_dir(), reason=f"the published GeoBench ({SHARED_GEOBENCH}) is absent"
)


# ---------------------------------------------------------------------------------------------
# Helpers


def _eval(work: Path, env: dict[str, str], name: str, model: Path, check: bool = True, **config):
    """``llamafactory-cli eval`` on a yaml written for the run; its save_dir is ``work/name``."""
    config = {"model_name_or_path": str(model), "trust_remote_code": False, "save_dir": str(work / name), **config}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_cli("eval", path, cwd=work, env=env, check=check)


def _outputs(save_dir: Path) -> tuple[dict, list[dict]]:
    """Every file of a finished save_dir, parsed and checked against the others."""
    from PIL import Image

    assert sorted(p.name for p in save_dir.iterdir()) == [
        "geobench.png",
        "predictions.jsonl",
        "results.json",
        "results.log",
        "run_config.json",
    ]
    results = json.loads((save_dir / "results.json").read_text())
    run_config = json.loads((save_dir / "run_config.json").read_text())
    assert run_config["model_name_or_path"] == results["model"]["model_name_or_path"]
    objective = any(summary["kind"] == "objective" for summary in results["tasks"].values())
    assert any("GeoBench has no dev split" in note for note in results["notes"]) == objective

    lines = (save_dir / "predictions.jsonl").read_text().splitlines()
    predictions = [json.loads(line) for line in lines]
    assert len({(p["task"], p["id"]) for p in predictions}) == len(predictions), "a question was scored twice"

    table = (save_dir / "results.log").read_text()
    assert table.startswith(f"GeoBench: {results['model']['name']}")
    assert f"data: {results['settings']['task_dir']} ({results['settings']['layout']} layout)" in table
    assert ("GeoBench has no dev split" in table) == objective
    for name, summary in results["tasks"].items():
        mine = [p for p in predictions if p["task"] == name]
        if summary["kind"] == "objective":
            assert summary["scored"] == len(mine)
            assert summary["correct"] == sum(p["correct"] for p in mine)
            assert summary["accuracy"] == pytest.approx(100 * summary["correct"] / summary["scored"], abs=1e-3)
            row = _row(table, name, "accuracy").split()
            assert row[2:4] == [f"{summary['accuracy']:.2f}", f"{summary['chance']:.2f}"]  # the chance level beside it
            for issue, ids in summary["data_issues"].items():
                assert f"{issue} {len(ids)} (id" in _line(table, f"  {name}: ")
            assert summary["fewer_shots"] == sum(p["shots"] < summary["n_shot"] for p in mine)
            assert ("sample_ids" in summary) == (summary["scored"] < summary["total"])
            if "sample_ids" in summary:
                assert summary["sample_ids"] == sorted(p["id"] for p in mine)
            for p in mine:
                assert p["correct"] == (p["prediction"] == p["gold"])
                if "probs" in p:
                    assert sum(p["probs"].values()) == pytest.approx(1.0, abs=1e-6)
                    assert p["prediction"] == max(p["probs"], key=p["probs"].get)
        elif summary["kind"] == "subjective":
            assert summary["scored"] == len(mine)
            for metric in ("rouge-l", "bleu-4"):
                if metric in summary:
                    assert summary[metric] == pytest.approx(
                        sum(p["scores"][metric] for p in mine) / len(mine), abs=1e-3
                    )
                    assert f"{summary[metric]:.2f}" in _row(table, name, metric)
        else:
            parts = [results["tasks"][part]["accuracy"] for part in summary["of"]]
            assert summary["accuracy"] == pytest.approx(sum(parts) / len(parts), abs=1e-3)

    with Image.open(save_dir / "geobench.png") as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
    return results, predictions


def _line(text: str, start: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(start)]
    assert len(lines) == 1, (start, text)
    return lines[0]


def _row(table: str, task: str, metric: str) -> str:
    rows = [line for line in table.splitlines() if line.split()[:1] == [task] and f" {metric} " in f"{line} "]
    assert len(rows) == 1, (task, metric, table)
    return rows[0]


def _with_xlsx(folder: Path, questions: list[str]) -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Questions"])
    for question in questions:
        sheet.append([question])
    workbook.save(folder / "subjective_task.xlsx")
    return folder


def _xlsx_rows(path: Path) -> int:
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True)
    rows = [row for row in workbook.worksheets[0].iter_rows(values_only=True) if any(cell is not None for cell in row)]
    workbook.close()
    return len(rows) - 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# The published data, both layouts


@needs_shared
def test_published_k2_layout_every_task_counted(tmp_path, tiny_model, cli_env) -> None:
    folder = SHARED_GEOBENCH / "k2"
    _eval(
        tmp_path, cli_env, "k2", tiny_model,
        task="geobench,geobench_subjective", task_dir=str(folder), max_samples=6, max_new_tokens=4,
    )  # fmt: skip
    results, predictions = _outputs(tmp_path / "k2")
    npee = json.loads((folder / "geobench_npee.json").read_text())
    totals = {task: len(npee[section]["question"]) for task, section in NPEE_SECTIONS.items()}
    totals["geobench_apstudy"] = len(json.loads((folder / "geobench_apstudy.json").read_text()))
    assert totals == {
        "geobench_npee": 182,
        "geobench_npee_tf": 134,
        "geobench_npee_noun": 454,
        "geobench_npee_completion": 150,
        "geobench_npee_qa": 153,
        "geobench_npee_discussion": 335,
        "geobench_apstudy": 1395,
    }
    tasks = results["tasks"]
    assert {name: tasks[name]["total"] for name in totals} == totals
    assert all(tasks[name]["scored"] == 6 for name in totals)
    # `max_samples` draws a seeded random subset (the published files are ordered), recorded in results.json
    assert all(len(set(tasks[name]["sample_ids"])) == 6 for name in totals)
    assert all(tasks[name]["sample_ids"] != list(range(6)) for name in totals)
    assert any("`max_samples: 6`: a random subset of each task" in note for note in results["notes"])
    assert len(predictions) == 6 * len(totals)
    npee_issues = tasks["geobench_npee"]["data_issues"]
    assert {k: v for k, v in npee_issues.items() if "repeat" not in k and "conflict" not in k} == {
        "duplicate_option_labels": [127],
        "gold_not_in_options": [155, 175],
    }
    # published repeats: 182 NPEE items hold 121 distinct questions (stem and options, case and spaces aside), 9 of
    # them keyed two ways (18 items); true/false 134 items, 112 distinct
    assert (len(npee_issues["repeated_question"]), len(npee_issues["conflicting_keys"])) == (61, 18)
    assert len(tasks["geobench_npee_tf"]["data_issues"]["repeated_question"]) == 22
    assert tasks["geobench_apstudy"]["data_issues"] == {
        "empty_option_text": [195, 384, 788],
        "empty_question": [603, 703, 1325],
        "repeated_question": [1051],
        "conflicting_keys": [1050, 1051],
    }
    assert tasks["geobench_average"]["of"] == ["geobench_npee", "geobench_apstudy"]
    assert set(next(p for p in predictions if p["task"] == "geobench_npee_tf")["probs"]) == {"True", "False"}
    qa = [p for p in predictions if p["task"] == "geobench_npee_qa"]
    assert all(isinstance(p["prediction"], str) and p["gold"] and p["question"] for p in qa)


@needs_shared
def test_published_jiuzhou_layout_every_row_counted(tmp_path, tiny_model, cli_env) -> None:
    folder = SHARED_GEOBENCH / "jiuzhou"
    _eval(tmp_path, cli_env, "jiuzhou", tiny_model, task="geobench", task_dir=str(folder), max_samples=6)
    results, predictions = _outputs(tmp_path / "jiuzhou")
    for task, file in (
        ("geobench_npee", "objective_task_npee.csv"),
        ("geobench_apstudy", "objective_task_apstudy.csv"),
    ):
        with open(folder / file, encoding="utf-8", newline="") as f:
            assert results["tasks"][task]["total"] == sum(1 for _ in csv.reader(f))
    assert [results["tasks"][t]["total"] for t in ("geobench_npee", "geobench_apstudy")] == [177, 1390]
    assert "geobench_npee_tf" not in results["tasks"]  # not part of JiuZhou's layout, and said so
    assert results["absent"]["geobench_npee_tf"].startswith("not part of the jiuzhou layout")
    npee_issues = results["tasks"]["geobench_npee"]["data_issues"]
    assert npee_issues["gold_not_in_options"] == [150, 170]
    # 177 rows, 120 distinct questions, 8 of them keyed two ways
    assert (len(npee_issues["repeated_question"]), len(npee_issues["conflicting_keys"])) == (57, 16)
    with open(folder / "objective_task_npee.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    for p in (p for p in predictions if p["task"] == "geobench_npee"):  # `Null` options dropped
        assert len(p["probs"]) == sum(cell.strip() != "Null" for cell in rows[p["id"]][1:-1])


def test_repeated_questions_are_reported_and_counted_once(tmp_path, tiny_model, cli_env) -> None:
    """A question asked again (case and spaces aside) counts once in `deduplicated`; one keyed two ways not at all."""

    def item(stem: str, answer: str) -> dict:
        choices = [{"label": label, "text": text} for label, text in zip("ABC", ("basalt", "granite", "shale"))]
        return {"question": {"stem": stem, "choices": choices}, "answerKey": answer}

    folder = tmp_path / "repeats"
    folder.mkdir()
    items = [
        item("Which rock is volcanic?", "A"),
        item("which rock  is VOLCANIC?", "A"),  # the same question again
        item("Which rock is plutonic?", "B"),
        item("Which rock is plutonic?", "C"),  # the same question, keyed another way
        item("Which rock is sedimentary?", "C"),
    ]
    (folder / "geobench_apstudy.json").write_text(json.dumps(items))
    _eval(tmp_path, cli_env, "out", tiny_model, task="geobench_apstudy", task_dir=str(folder), n_shot=0)
    results, predictions = _outputs(tmp_path / "out")
    summary = results["tasks"]["geobench_apstudy"]
    assert summary["data_issues"] == {"repeated_question": [1, 3], "conflicting_keys": [2, 3]}
    correct = {p["id"]: p["correct"] for p in predictions}
    assert summary["deduplicated"] == {
        "scored": 2,
        "correct": correct[0] + correct[4],
        "accuracy": round(100 * (correct[0] + correct[4]) / 2, 4),
        "conflicting_keys": 1,
    }
    assert summary["scored"] == 5  # the published protocol's count is unchanged
    table = (tmp_path / "out" / "results.log").read_text()
    assert "each question once" in table and "repeated_question 2 (ids 1, 3); conflicting_keys 2 (ids 2, 3)" in table


# ---------------------------------------------------------------------------------------------
# Fixtures of both layouts; generation mode


def test_fixtures_in_generate_mode_count_extraction_failures(tmp_path, tiny_model, cli_env) -> None:
    folder = shutil.copytree(FIXTURES / "jiuzhou", tmp_path / "jiuzhou_data")
    proc = _eval(
        tmp_path, cli_env, "gen", tiny_model,
        task="geobench", task_dir=str(folder), eval_mode="generate", template="mistral", n_shot=2, max_new_tokens=6,
        lang="zh",
    )  # fmt: skip
    results, predictions = _outputs(tmp_path / "gen")
    assert {name: results["tasks"][name]["total"] for name in ("geobench_npee", "geobench_apstudy")} == {
        "geobench_npee": 7,
        "geobench_apstudy": 10,
    }
    table = (tmp_path / "gen" / "results.log").read_text()
    for name in ("geobench_npee", "geobench_apstudy"):
        failures = sum(p["prediction"] is None for p in predictions if p["task"] == name)
        assert results["tasks"][name]["extraction_failures"] == failures
        assert _row(table, name, "extraction failures").split()[-3] == str(failures)
    # the suite's true/false task has no file in this layout: said at the start, in the table and in results.json
    absent = "geobench_npee_tf: not part of the jiuzhou layout (it is in the k2 layout (geobench_npee.json))"
    assert absent in proc.stdout and f"{absent}: not scored." in table
    assert _row(table, "geobench_npee_tf", "absent").split()[1:] == ["absent", "-", "-", "-"]
    assert "geobench_npee_tf" in results["absent"] and "geobench_npee_tf" not in results["tasks"]
    assert all(isinstance(p["response"], str) for p in predictions)


@pytest.mark.parametrize(
    ("reply", "tf", "expected"),
    [
        ("B", False, "B"),
        ("(C) because calcite fizzes", False, "C"),
        ("The answer is D.", False, "D"),
        ("答案：A", False, "A"),
        ("A rock that floats", False, None),  # a word, not a commitment
        ("It could be A or B", False, None),
        ("False. Not all minerals have cleavage.", True, "False"),
        ("正确", True, "True"),
        ("Answer: true", True, "True"),
        ("Maybe", True, None),
    ],
)
def test_answer_extraction(reply: str, tf: bool, expected: str | None) -> None:
    from geo_factory.eval.data import ChoiceQuestion
    from geo_factory.eval.scoring import extract_answer

    options = (("True", ""), ("False", "")) if tf else tuple((label, "x") for label in "ABCD")
    question = ChoiceQuestion("t", 0, "stem", options, "True" if tf else "A")
    assert extract_answer(reply, question, "en") == expected


def test_exemplars_are_seeded_exclude_the_question_and_share_a_prefix() -> None:
    from geo_factory.eval.data import ChoiceQuestion
    from geo_factory.eval.families.geobench import load_all
    from geo_factory.eval.prompts import ExemplarSampler

    questions = load_all(str(FIXTURES / "k2"))["geobench_apstudy"]
    duplicate = ChoiceQuestion("geobench_apstudy", len(questions), questions[3].stem, questions[3].options, "A")
    questions = [*questions, duplicate]
    draws = {q.id: ExemplarSampler(questions, 3, 42).exemplars(q) for q in questions}
    assert draws == {q.id: ExemplarSampler(questions, 3, 42).exemplars(q) for q in questions}
    assert draws != {q.id: ExemplarSampler(questions, 3, 7).exemplars(q) for q in questions}
    for q in questions:
        assert len(draws[q.id]) == 3 and all(questions[i].stem != q.stem for i in draws[q.id])
    assert max(list(draws.values()).count(d) for d in draws.values()) >= len(questions) - 4


# ---------------------------------------------------------------------------------------------
# Kill and resume; batching never changes an answer; a finished run is kept


def _synthetic_k2(folder: Path, n: int) -> Path:
    """The fixture's APStudy questions, options rotated and stems numbered: ``n`` distinct questions."""
    base = json.loads((FIXTURES / "k2" / "geobench_apstudy.json").read_text())
    rng, items = random.Random(0), []
    for i in range(n):
        item = json.loads(json.dumps(base[i % len(base)]))
        texts = [c["text"] for c in item["question"]["choices"]]
        gold = texts["ABCDE".index(item["answerKey"])]
        rng.shuffle(texts)
        item["question"]["stem"] += f" ({i})"
        item["question"]["choices"] = [{"text": t, "label": label} for t, label in zip(texts, "ABCDE")]
        item["answerKey"] = "ABCDE"[texts.index(gold)]
        items.append(item)
    folder.mkdir()
    (folder / "geobench_apstudy.json").write_text(json.dumps(items))
    return folder


RESUMED = 200  # questions of the killed run: a kill after 30, and batches of 16 to compare with


@pytest.fixture(scope="module")
def resumed_and_batched(tmp_path_factory, tiny_model, cli_env) -> tuple[Path, Path, Path]:
    """Run A (one question per pass) SIGKILLed mid-run and rerun; run B (batches of 16) in one go."""
    work = tmp_path_factory.mktemp("geobench_resume")
    data = _synthetic_k2(work / "data", RESUMED)
    config = {"task": "geobench_apstudy", "task_dir": str(data), "n_shot": 3}
    path = work / "a.yaml"
    path.write_text(
        yaml.safe_dump({"model_name_or_path": str(tiny_model), "save_dir": str(work / "a"), "batch_size": 1, **config})
    )
    predictions = work / "a" / "predictions.jsonl"
    with open(work / "a_killed.log", "w") as log:
        proc = subprocess.Popen([CLI, "eval", str(path)], cwd=work, env=cli_env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not (predictions.exists() and predictions.read_text().count("\n") >= 30):
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"the run ended before it could be killed:\n{(work / 'a_killed.log').read_text()[-3000:]}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    killed = predictions.read_text().count("\n")
    assert 30 <= killed < RESUMED and not (work / "a" / "results.json").exists()
    (work / "killed_at").write_text(str(killed))
    with open(predictions, "a") as f:
        f.write('{"task": "geobench_apstudy", "id": 3')  # a line torn by the kill
    resumed = run_cli("eval", path, cwd=work, env=cli_env)
    (work / "resumed.log").write_text(resumed.stdout + resumed.stderr)

    _eval(work, cli_env, "b", tiny_model, batch_size=16, compare_with=[str(work / "a" / "results.json")], **config)
    return work, work / "a", work / "b"


def test_a_killed_run_resumes_where_it_stopped(resumed_and_batched) -> None:
    work, a, _ = resumed_and_batched
    resumed_from = int((work / "killed_at").read_text())
    results, predictions = _outputs(a)
    assert results["tasks"]["geobench_apstudy"]["scored"] == results["tasks"]["geobench_apstudy"]["total"] == RESUMED
    assert sorted(p["id"] for p in predictions) == list(range(RESUMED))
    log = (work / "resumed.log").read_text()
    assert log.count(f"| {resumed_from}/{RESUMED} ") >= 1  # the progress bar picked up there
    assert f"Resuming the unfinished run in {a}: {resumed_from} predictions found." in log


def test_batching_never_changes_an_answer(resumed_and_batched) -> None:
    _, a, b = resumed_and_batched
    one = {p["id"]: p for p in _outputs(a)[1]}
    results, predictions = _outputs(b)
    assert results["compared_on_other_questions"] == []  # compare_with: run A, on the same questions
    batched = {p["id"]: p for p in predictions}
    assert one.keys() == batched.keys()
    for i, p in one.items():
        assert batched[i]["prediction"] == p["prediction"], (i, p["probs"], batched[i]["probs"])
        assert batched[i]["probs"] == pytest.approx(p["probs"], abs=1e-5)


def test_overwrite_save_dir_starts_a_finished_run_over(resumed_and_batched, tmp_path, cli_env) -> None:
    """A finished run without ``overwrite_save_dir`` is refused and kept: test_geobench_inputs.py's
    ``test_tiny_eval_yaml_keeps_a_finished_run``; with it, the run starts over."""
    work, a, b = resumed_and_batched
    config = yaml.safe_load((work / "a.yaml").read_text())
    config["save_dir"] = str(shutil.copytree(a, tmp_path / "a"))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli(
        "eval", tmp_path / "a.yaml", "overwrite_save_dir=true", "max_samples=5", f"compare_with=[{b / 'results.json'}]",
        cwd=tmp_path, env=cli_env,
    )  # fmt: skip
    results, predictions = _outputs(tmp_path / "a")
    assert results["tasks"]["geobench_apstudy"]["scored"] == len(predictions) == 5
    # compared with run B, which scored all RESUMED questions: said in a warning, results.json and results.log
    assert results["compared_on_other_questions"] == ["geobench_apstudy (tiny-mistral)"]
    warning = "`compare_with` runs scored other questions (other data or another subset) for: geobench_apstudy"
    assert warning in proc.stdout and warning in (tmp_path / "a" / "results.log").read_text()


def test_resuming_with_other_settings_is_refused(tmp_path) -> None:
    from geo_factory.eval.report import SaveDir

    save = SaveDir(tmp_path / "run")
    assert save.open({"n_shot": 5, "seed": 42}, overwrite=False) == {}
    save.append([{"task": "t", "id": 0, "correct": True}])
    with pytest.raises(ValueError, match="n_shot differ"):
        save.open({"n_shot": 3, "seed": 42}, overwrite=False)
    assert list(save.open({"n_shot": 5, "seed": 42}, overwrite=False)) == [("t", 0)]


# ---------------------------------------------------------------------------------------------
# Configuration errors: named, and before any model or file


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"tsk": "geobench"}, "unknown key `tsk`. Did you mean: task"),
        ({"task": "geobench_npe"}, "Unknown evaluation task `geobench_npe` in `task`. Did you mean: geobench_npee"),
        ({"save_dir": None}, "`save_dir` is required"),
        ({"eval_mode": "likelyhood"}, "allowed: likelihood, generate"),
        ({"lang": "fr"}, "`lang: fr` is not supported; allowed: en, zh"),
        ({"seed": 1.5}, "`seed` must be an integer, got 1.5"),
        ({"n_shot": True}, "`n_shot` must be an integer >= 0, got True"),
        ({"judge_max_retries": -1}, "`judge_max_retries` must be an integer >= 0, got -1"),
        ({"judge_max_tokens": 0}, "`judge_max_tokens` must be an integer >= 1, got 0"),
        ({"max_new_tokens": 0}, "`max_new_tokens` must be an integer >= 1, got 0"),
        ({"compare_with": 3}, "`compare_with` must be a list of results.json paths, got 3"),
        ({"judge_api_base": "http://127.0.0.1:1/v1"}, "`judge_api_base` and `judge_model` go together"),
        ({"judge_api_key_env": "sk-live-0123"}, "must name an environment variable"),
        ({"task_dir": "no/such/dir"}, "`task_dir: no/such/dir` is not a folder"),
        (
            {"task": "geobench_npee_tf", "task_dir": str(FIXTURES / "jiuzhou")},
            "`geobench_npee_tf` is not part of the jiuzhou layout",
        ),
        ({"task": "geobench_subjective", "task_dir": "JIUZHOU_WITH_XLSX"}, "`geobench_open` has no reference answers"),
        (
            {"task": "geobench", "task_dir": str(FIXTURES / "malformed")},
            "malformed/objective_task_npee.csv, row 3: the answer `F`",
        ),
    ],
)
def test_bad_configuration_fails_before_any_work(tmp_path, config: dict, message: str) -> None:
    from geo_factory.eval.evaluator import Evaluator

    if config.get("task_dir") == "JIUZHOU_WITH_XLSX":
        config["task_dir"] = str(_with_xlsx(shutil.copytree(FIXTURES / "jiuzhou", tmp_path / "data"), OPEN_QUESTIONS))
    base = {
        "model_name_or_path": str(tmp_path / "no-model"),
        "task_dir": str(FIXTURES / "k2"),
        "save_dir": str(tmp_path / "out"),
    }
    with pytest.raises(ValueError) as err:
        Evaluator({**base, **config})
    assert message in str(err.value)
    assert "sk-live-0123" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_default_task_dir_is_the_hub_dataset(tmp_path, tiny_model, cli_env) -> None:
    """Offline with an empty cache (the test environment), the hub download is what fails, and says so."""
    proc = _eval(tmp_path, cli_env, "hub", tiny_model, check=False, task="geobench")
    assert proc.returncode != 0
    assert "The hub dataset `daven3/geobench` (the default `task_dir`) is not available" in proc.stderr
    assert not (tmp_path / "hub").exists()


def test_malformed_row_stops_the_command_with_file_and_row(tmp_path, tiny_model, cli_env) -> None:
    proc = _eval(
        tmp_path, cli_env, "bad", tiny_model, check=False, task="geobench", task_dir=str(FIXTURES / "malformed")
    )
    assert proc.returncode != 0
    assert "objective_task_npee.csv, row 3: the answer `F` is past the last option column" in proc.stderr
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------------------------
# In training: the hook; then the trained model as the judge behind `llamafactory-cli api`


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, cli_env) -> Path:
    """SFT of the tiny model on judge-format replies, with GeoBench every 10 steps."""
    from geo_factory.eval.subjective import judge_messages
    from geo_factory.hparams.geobench_args import DEFAULT_CRITERIA

    work = tmp_path_factory.mktemp("geobench_train")
    (work / "data").mkdir()
    rng, words = (
        random.Random(0),
        ["rock", "mantle", "the", "of", "a", "river", "layer", "sediment", "crust", "basalt", "granite"],
    )
    rows = []
    for i in range(48):
        question = rng.choice(OPEN_QUESTIONS)
        answer = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        system, user = judge_messages(question, answer if i % 2 else None, answer, list(DEFAULT_CRITERIA))
        rows.append({"system": system["content"], "instruction": user["content"], "output": JUDGE_REPLY})
    (work / "data" / "judge.json").write_text(json.dumps(rows))
    columns = {"prompt": "instruction", "response": "output", "system": "system"}
    (work / "data" / "dataset_info.json").write_text(
        json.dumps({"judge_sft": {"file_name": "judge.json", "columns": columns}})
    )
    config = {
        "model_name_or_path": str(tiny_model), "trust_remote_code": False, "stage": "sft", "do_train": True,
        "finetuning_type": "full", "dataset": "judge_sft", "dataset_dir": "data", "template": "mistral",
        "cutoff_len": 1024, "overwrite_cache": True, "preprocessing_num_workers": None, "dataloader_num_workers": 0,
        "output_dir": "out", "logging_steps": 5, "save_strategy": "no", "overwrite_output_dir": True,
        "report_to": "tensorboard" if importlib.util.find_spec("tensorboard") else "none",
        "per_device_train_batch_size": 8, "learning_rate": 5.0e-3, "max_steps": 40,
        "lr_scheduler_type": "constant", "seed": 42,
        "geobench_eval_steps": 10, "geobench_task_dir": str(FIXTURES / "k2"), "geobench_max_samples": 4,
        "geobench_n_shot": 2,
    }  # fmt: skip
    (work / "train.yaml").write_text(yaml.safe_dump(config))
    run_cli("train", work / "train.yaml", cwd=work, env=cli_env)
    return work / "out"


def test_training_logs_geobench_metrics(trained: Path) -> None:
    keys = [f"{t}_acc" for t in OBJECTIVE] + ["geobench_average_acc"]
    rows = read_trainer_log(trained)
    geobench = [row for row in rows if any(k in row for k in keys)]
    assert [row["current_steps"] for row in geobench] == [10, 20, 30, 40]
    for row in geobench:
        assert all(0 <= row[k] <= 100 for k in keys)
        assert row["geobench_average_acc"] == pytest.approx(
            (row["geobench_npee_acc"] + row["geobench_apstudy_acc"]) / 2
        )
    assert [row["current_steps"] for row in rows if "loss" in row] == list(range(5, 45, 5))  # no loss log lost
    # Trainer.log's record, the same dict the report_to integrations receive
    history = json.loads((trained / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "geobench_npee_acc" in h] == [10, 20, 30, 40]


def test_training_reports_geobench_metrics_to_tensorboard(trained: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard (a `report_to` backend) is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = (trained / "runs").iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    for task in OBJECTIVE:
        assert [e.step for e in events.Scalars(f"train/{task}_acc")] == [10, 20, 30, 40]


@pytest.fixture(scope="module")
def judge_server(trained: Path, tmp_path_factory, cli_env):
    work = tmp_path_factory.mktemp("geobench_api")
    (work / "api.yaml").write_text(
        yaml.safe_dump({"model_name_or_path": str(trained), "template": "mistral", "trust_remote_code": False})
    )
    port = _free_port()
    env = {**cli_env, "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_KEY": JUDGE_KEY}
    with open(work / "api.log", "w") as log:
        proc = subprocess.Popen(
            [CLI, "api", str(work / "api.yaml")], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {JUDGE_KEY}"}
        )
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(request, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"llamafactory-cli api did not come up:\n{(work / 'api.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_judge_behind_llamafactory_api(judge_server: str, tmp_path, tiny_model, cli_env) -> None:
    env = {**cli_env, "GEOBENCH_JUDGE_KEY": JUDGE_KEY}
    judge = {"judge_api_base": judge_server, "judge_model": "tiny-judge", "judge_api_key_env": "GEOBENCH_JUDGE_KEY"}
    shared = SHARED_GEOBENCH / "jiuzhou"
    folder = (
        shared
        if shared.is_dir()
        else _with_xlsx(shutil.copytree(FIXTURES / "jiuzhou", tmp_path / "data"), OPEN_QUESTIONS)
    )
    open_run = _eval(
        tmp_path, env, "open", tiny_model,
        task="geobench_subjective", task_dir=str(folder), template="mistral", max_new_tokens=8, max_samples=3, **judge,
    )  # fmt: skip
    results, predictions = _outputs(tmp_path / "open")
    summary = results["tasks"]["geobench_open"]
    assert summary["total"] == _xlsx_rows(folder / "subjective_task.xlsx")
    # the judge is the tiny model after 40 steps of judge replies; what it says follows its weights (and so the
    # machine), so every verdict is checked for what the evaluator guarantees: parsed within 1-10, or counted as a
    # failure and kept with its last reply, never scored; the summary is the mean of the parsed verdicts
    assert summary["scored"] == 3 and summary["judged"] + summary["judge_failures"] == 3
    verdicts = [p["judge"] for p in predictions if p["judge"] is not None]
    assert len(verdicts) == summary["judged"]
    for p in predictions:
        if p["judge"] is None:
            assert p["judge_last_reply"] and p["judge_attempts"] == 3  # asked again, judge_max_retries (2) times
        else:
            assert set(p["judge"]) == {"accuracy", "completeness", "clarity"} and 1 <= p["judge_attempts"] <= 3
            assert all(isinstance(v, int) and 1 <= v <= 10 for v in p["judge"].values()), p["judge"]
    if verdicts:
        assert summary["judge"] == {
            c: pytest.approx(statistics.fmean(v[c] for v in verdicts), abs=1e-4) for c in verdicts[0]
        }

    # a reply cut short is malformed: asked again once, then counted
    bad_run = _eval(
        tmp_path, env, "cut", tiny_model,
        task="geobench_npee_noun", task_dir=str(FIXTURES / "k2"), template="mistral", max_new_tokens=8,
        judge_max_tokens=3, judge_max_retries=1, **judge,
    )  # fmt: skip
    results, predictions = _outputs(tmp_path / "cut")
    summary = results["tasks"]["geobench_npee_noun"]
    assert (summary["scored"], summary["judged"], summary["judge_failures"]) == (3, 0, 3)
    assert all(p["judge"] is None and p["judge_attempts"] == 2 for p in predictions)
    assert summary["rouge-l"] >= 0 and summary["bleu-4"] >= 0

    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and JUDGE_KEY in p.read_text(errors="ignore")]
    assert not leaked, leaked
    for proc in (open_run, bad_run):
        assert JUDGE_KEY not in proc.stdout + proc.stderr
