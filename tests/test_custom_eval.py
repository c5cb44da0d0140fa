"""Benchmarks of the user's own (``task_dir/eval_info.json``), through the real ``llamafactory-cli eval``: every file
format and option layout, beside GeoBench, on the tiny model and on SmolLM2; bad registries and rows named before any
model loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLES, run_cli, smol_workdir


FIXTURES = Path(__file__).parent / "fixtures" / "geobench"
EXAMPLE = EXAMPLES / "eval" / "my_benchmark"
TEN = "ABCDEFGHIJ"


def _with_parquet(folder: Path) -> Path:
    """The example benchmark, plus a parquet task of 2 to 10 options per row and answers as 0-based indices."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = shutil.copytree(EXAMPLE, folder)
    rows = [
        {"q": f"Which of these is rock number {n}?", "choices": [f"rock {i}" for i in range(n)], "key": n - 1}
        for n in (2, 3, 10, 6)
    ]
    pq.write_table(pa.Table.from_pylist(rows), folder / "ten_quiz.parquet")
    info = json.loads((folder / "eval_info.json").read_text())
    info["ten_quiz"] = {
        "file_name": "ten_quiz.parquet",
        "columns": {"question": "q", "options": "choices", "answer": "key"},
    }
    (folder / "eval_info.json").write_text(json.dumps(info))
    return folder


def test_own_benchmarks_in_every_format_beside_geobench(tmp_path, tiny_model, cli_env) -> None:
    folder = _with_parquet(tmp_path / "mine")
    config = {
        "model_name_or_path": str(tiny_model), "trust_remote_code": False, "template": "mistral",
        "task": "geobench_npee,rock_quiz,core_quiz,ten_quiz", "task_dir": str(folder),
        "geobench_task_dir": str(FIXTURES / "k2"), "n_shot": 1, "save_dir": str(tmp_path / "out"),
    }  # fmt: skip
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli("eval", tmp_path / "eval.yaml", cwd=tmp_path, env=cli_env)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    predictions = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    tasks = results["tasks"]
    assert list(tasks) == ["geobench_npee", "rock_quiz", "core_quiz", "ten_quiz"]
    assert [tasks[name]["total"] for name in tasks] == [8, 10, 8, 4]
    assert results["settings"]["task_dir"] == str(folder) and results["settings"]["layout"] == "eval_info"
    assert results["settings"]["geobench_task_dir"] == str(FIXTURES / "k2")

    # the published answers, whichever way they were written (letter, index, option text), as letters
    core = {p["id"]: p for p in predictions if p["task"] == "core_quiz"}
    assert [core[i]["gold"] for i in range(8)] == ["A", "C", "A", "B", "B", "C", "B", "B"]
    assert [len(core[i]["probs"]) for i in range(8)] == [4, 4, 4, 4, 5, 4, 4, 5]  # empty E cells are no option
    ten = {p["id"]: p for p in predictions if p["task"] == "ten_quiz"}
    assert [(ten[i]["gold"], len(ten[i]["probs"])) for i in range(4)] == [("B", 2), ("C", 3), ("J", 10), ("F", 6)]
    # chance from each question's own option count
    assert tasks["ten_quiz"]["chance"] == pytest.approx(100 * (1 / 2 + 1 / 3 + 1 / 10 + 1 / 6) / 4, abs=1e-4)
    # exemplars: the dev file's first questions of the same subject; without a dev file, the task's other questions
    rock = [p for p in predictions if p["task"] == "rock_quiz"]
    assert all(p["shots"] == 1 for p in predictions)
    subjects = tasks["rock_quiz"]["subjects"]
    assert {name: part["total"] for name, part in subjects.items()} == {
        "mineralogy": 3,
        "petrology": 4,
        "tectonics": 3,
    }
    assert sum(part["correct"] for part in subjects.values()) == sum(p["correct"] for p in rock)
    assert tasks["rock_quiz"]["accuracy"] == pytest.approx(100 * sum(p["correct"] for p in rock) / 10, abs=1e-4)
    assert "Tasks of eval_info.json" in " ".join(results["notes"])
    assert "Evaluation: tiny-mistral" in proc.stdout  # the table says what ran, not "GeoBench"


@pytest.mark.real_model
def test_own_benchmark_example_on_smollm2(smol_model, tmp_path, cli_env) -> None:
    """The shipped example yaml and benchmark, unchanged, on the real model."""
    work = smol_workdir(tmp_path, smol_model)
    shutil.copytree(EXAMPLES, work / "examples")
    run_cli("eval", "examples/eval/my_benchmark.yaml", cwd=work, env=cli_env)
    results = json.loads((work / "saves" / "smol" / "my_benchmark" / "results.json").read_text())
    assert {name: (s["scored"], s["total"]) for name, s in results["tasks"].items()} == {
        "rock_quiz": (10, 10),
        "core_quiz": (8, 8),
    }
    for summary in results["tasks"].values():
        assert 0 <= summary["accuracy"] <= 100 and summary["n_shot"] == 2 and summary["fewer_shots"] == 0


def _broken(tmp_path: Path, entry: dict | None = None, rows: list[dict] | None = None) -> Path:
    folder = tmp_path / "broken"
    folder.mkdir()
    rows = rows or [{"question": "Which rock is volcanic?", "options": ["basalt", "granite"], "answer": "A"}]
    (folder / "quiz.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "quiz.txt").write_text("a file of no format eval reads\n")
    columns = {"question": "question", "options": "options", "answer": "answer"}
    (folder / "eval_info.json").write_text(
        json.dumps({"quiz": {"file_name": "quiz.jsonl", "columns": columns, **(entry or {})}})
    )
    return folder


ROW = {"question": "Which rock is volcanic?", "options": ["basalt", "granite"], "answer": "A"}


@pytest.mark.parametrize(
    ("entry", "rows", "message"),
    [
        ({"columns": {"question": "stem", "options": "options", "answer": "answer"}}, None,
         "quiz.jsonl, row 0: has no column `stem` (columns: question, options, answer)."),
        (None, [ROW, {**ROW, "answer": 2}], "quiz.jsonl, row 1: column `answer`: index 2 is out of range 0 to 1."),
        (None, [{**ROW, "answer": "obsidian"}], "quiz.jsonl, row 0: column `answer`: 'obsidian' is not a letter A-B"),
        (None, [ROW, ROW, {**ROW, "options": ["basalt"]}], "quiz.jsonl, row 2: needs 2 to 10 options (column options)"),
        (None, [{**ROW, "question": " "}], "quiz.jsonl, row 0: column `question`: the question is empty."),
        ({"file": "quiz.jsonl"}, None, "task `quiz`: unknown key `file`; allowed: columns, description, dev_file_name"),
        ({"file_name": "missing.csv"}, None, "missing.csv does not exist (named in eval_info.json)."),
        ({"file_name": "eval_info.json"}, None, "eval_info.json: a .json file must hold a list of rows."),
        ({"file_name": "quiz.txt"}, None, "quiz.txt: expected a .json, .jsonl, .csv or .parquet file."),
    ],
)  # fmt: skip
def test_bad_registry_or_rows_fail_before_any_work(tmp_path, entry, rows, message) -> None:
    from geo_factory.eval.evaluator import Evaluator

    folder = _broken(tmp_path, entry, rows)
    config = {"model_name_or_path": str(tmp_path / "no-model"), "task": "quiz", "task_dir": str(folder)}
    with pytest.raises(ValueError) as err:
        Evaluator({**config, "save_dir": str(tmp_path / "out")})
    assert message in str(err.value), str(err.value)
    assert not (tmp_path / "out").exists()


def test_export_lm_eval_writes_own_tasks(tmp_path, tiny_model, capsys) -> None:
    from geo_factory.cli import main

    main(["export-lm-eval", str(tmp_path / "tasks"), "--model", str(tiny_model), "--template", "mistral",
          "--task_dir", str(EXAMPLE), "--task", "rock_quiz,core_quiz", "--n_shot", "1"])  # fmt: skip
    manifest = json.loads((tmp_path / "tasks" / "geobench_export.json").read_text())
    assert {name: counts["questions"] for name, counts in manifest["tasks"].items()} == {
        "rock_quiz": 10,
        "core_quiz": 8,
    }
    rows = [json.loads(line) for line in (tmp_path / "tasks" / "core_quiz.jsonl").read_text().splitlines()]
    assert [len(row["choices"]) for row in rows] == [4, 4, 4, 4, 5, 4, 4, 5]
    assert "core_quiz: 8 questions" in capsys.readouterr().out


def test_llamaboard_lists_the_tasks_of_the_chosen_folder() -> None:
    import llamafactory.webui.interface  # noqa: F401  (LlamaBoard first: geo-factory's panel patches into it)

    from geo_factory import webui

    mine = [value for _, value in webui.tasks_in(str(EXAMPLE)).choices]
    assert mine[-2:] == ["rock_quiz", "core_quiz"]
    assert "rock_quiz" not in [value for _, value in webui.tasks_in("").choices]
