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


def _with_quirks(folder: Path) -> None:
    """Two tasks written as spreadsheets and pandas write them: files with a byte-order mark, lowercase letters,
    float answers (``2.0``), a row without the last option's key, categories; a Chinese task whose answers are
    option texts that also read as indices or letters (``answer_format: text``), asked twice (a data issue)."""
    quirks = [
        {"q": "Which rock is volcanic?", "A": "basalt", "B": "granite", "C": "marble", "D": "slate", "key": "a"},
        {"q": "Which rock is metamorphic?", "A": "basalt", "B": "granite", "C": "marble", "D": "slate", "E": "shale",
         "key": 2.0},
        {"q": "Which is no rock?", "A": "basalt", "B": "granite", "C": "marble", "D": "water", "key": "3.0"},
        {"q": "Which is liquid?", "A": "basalt", "B": "granite", "C": "marble", "D": "water", "key": "D"},
    ]  # fmt: skip
    for row, (topic, area) in zip(quirks, [("rocks", "Solid Earth")] * 3 + [("water", "Hydrosphere")]):
        row.update(topic=topic, area=area)
    text = "".join(json.dumps(row) + "\n" for row in quirks)
    (folder / "quirks.jsonl").write_text("\ufeff" + text, encoding="utf-8")
    (folder / "numbers.csv").write_text(
        "\ufeffquestion,A,B,C,D,answer\n1 + 2 = ?,1,2,3,4,3\n1 + 2 = ?,1,2,3,4,3\n哪个字母在前？,B,A,,,A\n",
        encoding="utf-8",
    )
    info = json.loads((folder / "eval_info.json").read_text())
    info["quirks"] = {
        "file_name": "quirks.jsonl",
        "columns": {"question": "q", "options": ["A", "B", "C", "D", "E"], "answer": "key", "subject": "topic",
                    "category": "area"},
    }  # fmt: skip
    info["numbers"] = {
        "file_name": "numbers.csv",
        "columns": {"question": "question", "options": ["A", "B", "C", "D"], "answer": "answer"},
        "answer_format": "text",
        "lang": "zh",
    }
    (folder / "eval_info.json").write_text(json.dumps(info))


def test_own_benchmarks_in_every_format_beside_geobench(tmp_path, tiny_model, cli_env) -> None:
    folder = _with_parquet(tmp_path / "mine")
    _with_quirks(folder)
    other = {"model": {"name": "other"}, "settings": {}, "tasks": {"rock_quiz": {"kind": "objective",
             "metric": "accuracy", "accuracy": 50.0, "total": 3}}}  # fmt: skip
    (tmp_path / "other.json").write_text(json.dumps(other))
    config = {
        "model_name_or_path": str(tiny_model), "trust_remote_code": False, "template": "mistral",
        "task": "geobench_npee,rock_quiz,core_quiz,ten_quiz,quirks,numbers", "task_dir": str(folder),
        "geobench_task_dir": str(FIXTURES / "k2"), "n_shot": 1, "save_dir": str(tmp_path / "out"),
        "compare_with": [str(tmp_path / "other.json")],
    }  # fmt: skip
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli("eval", tmp_path / "eval.yaml", cwd=tmp_path, env=cli_env)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    predictions = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    tasks = results["tasks"]
    assert list(tasks) == ["geobench_npee", "rock_quiz", "core_quiz", "ten_quiz", "quirks", "numbers"]
    assert [tasks[name]["total"] for name in tasks] == [8, 10, 8, 4, 4, 3]
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

    # spreadsheet quirks read as meant; `answer_format: text` applied alone ("3" is the option "3", not index 3)
    gold = {name: [p["gold"] for p in predictions if p["task"] == name] for name in ("quirks", "numbers")}
    assert gold == {"quirks": ["A", "C", "D", "D"], "numbers": ["C", "C", "B"]}
    assert [len(p["probs"]) for p in predictions if p["task"] == "quirks"] == [4, 5, 4, 4]
    assert tasks["quirks"]["categories"].keys() == {"Solid Earth", "Hydrosphere"}
    assert tasks["quirks"]["subjects"]["rocks"]["category"] == "Solid Earth"
    # the languages the tasks ran in (no `lang` given): each task's own
    assert (tasks["numbers"]["lang"], tasks["quirks"]["lang"], results["settings"]["lang"]) == ("zh", "en", "en,zh")
    # your own data issues are not called published defects; compare_with's warning is said once
    table = proc.stdout.splitlines()
    own = table.index("Data issues in your own files, the questions kept and counted as written:")
    assert table[own + 1].startswith("  numbers: repeated_question 1 (id 1)")
    warning = "`compare_with` runs scored other questions (other data or another subset) for: rock_quiz (other)"
    assert (proc.stdout + proc.stderr).count(warning) == 1


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
         "quiz.jsonl, line 1: has no column `stem` (columns: question, options, answer)."),
        (None, [ROW, {**ROW, "answer": 2}], "quiz.jsonl, line 2: column `answer`: index 2 is out of range 0 to 1."),
        (None, [{**ROW, "answer": "obsidian"}], "quiz.jsonl, line 1: column `answer`: 'obsidian' is not a letter A-B"),
        (None, [ROW, ROW, {**ROW, "options": ["basalt"]}], "quiz.jsonl, line 3: needs 2 to 10 options (column options)"),
        (None, [{**ROW, "question": " "}], "quiz.jsonl, line 1: column `question`: the question is empty."),
        ({"file": "quiz.jsonl"}, None, "task `quiz`: unknown key `file`; allowed: answer_format, columns, description, dev_file_name"),
        ({"file_name": "missing.csv"}, None, "missing.csv does not exist (named in eval_info.json)."),
        ({"file_name": "eval_info.json"}, None, "eval_info.json: a .json file must hold a list of rows."),
        ({"file_name": "quiz.txt"}, None, "quiz.txt: expected a .json, .jsonl, .csv or .parquet file."),
        # an answer that reads two ways to two options is never guessed; `answer_format` says how to read it
        (None, [{**ROW, "options": ["1", "2", "3", "4"], "answer": "3"}], "quiz.jsonl, line 1: column `answer`: the "
         "answer '3' is ambiguous: as an index it is option D ('4') or as an option text it is option C ('3')."),
        (None, [{**ROW, "options": ["B", "A"], "answer": "A"}],
         "as a letter it is option A ('B') or as an option text it is option B ('A'). Say how the answers are written: "
         '`"answer_format": "letter"`, `"index"` or `"text"`'),
        ({"answer_format": "letter"}, [{**ROW, "answer": "basalt"}],
         "line 1: column `answer`: 'basalt' is not a letter A-B (`answer_format: letter`)."),
        ({"answer_format": "number"}, None, "`answer_format` must be one of letter, index, text, got 'number'."),
        # categories group subjects: without subjects, or two for one subject, is said
        ({"columns": {"question": "question", "options": "options", "answer": "answer", "category": "area"}}, None,
         "task `quiz`: `columns.category` groups subjects into categories, so it needs `columns.subject` too"),
        ({"columns": {"question": "question", "options": "options", "answer": "answer", "subject": "topic",
                      "category": "area"}},
         [{**ROW, "topic": "rocks", "area": "STEM"}, {**ROW, "topic": "rocks", "area": "Humanities"}],
         "quiz.jsonl, line 2: column `area`: subject `rocks` is in category 'Humanities' here but in 'STEM' on line 1"),
        ({"columns": {"question": "question", "options": ["A", "B", "C"], "answer": "answer"}},
         [{"question": "Which rock is volcanic?", "A": "basalt", "B": "granite", "answer": "A"}],
         "quiz.jsonl: no row has the column `C` that `columns.options` names."),
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


QUIZ = {"columns": {"question": "question", "options": ["A", "B"], "answer": "answer", "subject": "topic"}}


@pytest.mark.parametrize(
    ("files", "config", "message"),
    [
        ({"eval_info.json": '{"quiz": {"file_name": "quiz.csv"}, "quiz": {"file_name": "quiz.csv"}}'}, {},
         "eval_info.json: the key `quiz` is given twice in one object; each must be unique."),
        ({"quiz.csv": "question,A,B,answer,topic\n岩石,a,b,A,rocks\n".encode("gbk")}, {},
         "quiz.csv: the encoding must be UTF-8 (with or without a BOM), but byte 26 is not UTF-8"),
        ({"quiz.csv": "question,A,B,answer,topic\nWhich?,a,b,A,rocks\n\n\"Which\nagain?\",a,b,C,rocks\n"}, {},
         "quiz.csv, line 4: column `answer`: 'C' is not a letter A-B, an index or an option."),
        ({"quiz.csv": "question,A,B,answer,topic\nWhich?,a,b,A,rocks\nOr?,a,b,B,soils\n",
          "dev.csv": "question,A,B,answer,topic\nD1?,a,b,A,rocks\nD2?,a,b,A,soils\nD3?,a,b,B,soils\n"},
         {"n_shot": 2},
         "`n_shot: 2` asks for more exemplars than the rows of subject `rocks` in the dev file of `quiz` hold (1): a "
         "question's exemplars are the first dev questions of its subject. Allowed: 0 to 1, or add dev questions"),
    ],
)  # fmt: skip
def test_files_are_named_as_an_editor_shows_them(tmp_path, files: dict, config: dict, message: str) -> None:
    from geo_factory.eval.evaluator import Evaluator

    folder = tmp_path / "mine"
    folder.mkdir()
    entry = {**QUIZ, "file_name": "quiz.csv", **({"dev_file_name": "dev.csv"} if "dev.csv" in files else {})}
    files = {"eval_info.json": json.dumps({"quiz": entry}), **files}
    for name, text in files.items():
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    base = {"model_name_or_path": str(tmp_path / "no-model"), "task": "quiz", "task_dir": str(folder)}
    with pytest.raises(ValueError) as err:
        Evaluator({**base, **config, "save_dir": str(tmp_path / "out")})
    assert message in str(err.value), str(err.value)
    assert not (tmp_path / "out").exists()


def test_lm_eval_prompts_are_in_the_predictions(tmp_path, tiny_model, cli_env) -> None:
    """`prompt_style: lm_eval` on a Chinese task of your own, no `lang`: each record carries the exact text its
    options were scored after (CMMLU's wording, the subject's first dev question), and results.json says the run was
    Chinese."""
    folder = tmp_path / "mine"
    folder.mkdir()
    rows = [("玄武岩是哪类岩石？", "火成岩", "沉积岩", "A"), ("石英的莫氏硬度是？", "5", "7", "B")]
    lines = "".join(f"{q},{a},{b},{key},岩石\n" for q, a, b, key in rows)
    (folder / "quiz.csv").write_text("question,A,B,answer,topic\n" + lines, encoding="utf-8")
    (folder / "dev.csv").write_text("question,A,B,answer,topic\n花岗岩是？,火成岩,变质岩,A,岩石\n", encoding="utf-8")
    entry = {**QUIZ, "file_name": "quiz.csv", "dev_file_name": "dev.csv", "lang": "zh", "answer_format": "letter"}
    (folder / "eval_info.json").write_text(json.dumps({"quiz": entry}))
    config = {"model_name_or_path": str(tiny_model), "task": "quiz", "task_dir": str(folder), "n_shot": 1,
              "prompt_style": "lm_eval", "save_dir": str(tmp_path / "out")}  # fmt: skip
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    run_cli("eval", tmp_path / "eval.yaml", cwd=tmp_path, env=cli_env)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    predictions = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert (results["settings"]["lang"], results["settings"]["prompt_style"]) == ("zh", "lm_eval")
    exemplar = "花岗岩是？\nA. 火成岩\nB. 变质岩\n答案： A\n\n"
    assert [p["prompt"] for p in predictions] == [
        f"以下是关于岩石的单项选择题，请直接给出正确答案的选项。\n\n{exemplar}{q}\nA. {a}\nB. {b}\n答案："
        for q, a, b, _ in rows
    ]


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
