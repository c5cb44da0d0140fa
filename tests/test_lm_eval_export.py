"""``geo-factory export-lm-eval``: lm-evaluation-harness's own command line, on the exported GeoBench tasks, chooses
what ``llamafactory-cli eval`` chooses, on the same model and questions."""

from __future__ import annotations

import glob
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_cli, run_geo_factory


FIXTURES = Path(__file__).parent / "fixtures" / "geobench" / "k2"


@pytest.fixture(scope="session")
def harness() -> list[str]:
    """lm-evaluation-harness's own command line, ``python -m lm_eval``, from this environment (the `dev` extra holds
    lm-eval, as `geo-factory[lm-eval]` does for users)."""
    if importlib.util.find_spec("lm_eval") is None:
        pytest.skip("lm-eval is not installed (pip install 'geo-factory[lm-eval]')")
    return [sys.executable, "-m", "lm_eval"]


def test_harness_on_exported_tasks_chooses_what_eval_chooses(tmp_path, tiny_model, harness, cli_env) -> None:
    settings = {"model_name_or_path": str(tiny_model), "template": "mistral", "task_dir": str(FIXTURES)}
    run_geo_factory(
        "export-lm-eval", tmp_path / "tasks", "--model", tiny_model, "--template", "mistral", "--task_dir", FIXTURES,
        cwd=tmp_path, env=cli_env, timeout=600,
    )  # fmt: skip
    manifest = json.loads((tmp_path / "tasks" / "geobench_export.json").read_text())
    assert {name: counts["same_tokens_as_eval"] for name, counts in manifest["tasks"].items()} == {
        "geobench_npee": 8,
        "geobench_npee_tf": 6,
        "geobench_apstudy": 10,
    }
    assert "import geo_factory" not in (tmp_path / "tasks" / "utils.py").read_text()

    harness_env = {**cli_env, "PYTHONPATH": ""}
    proc = subprocess.run(
        [*harness, "--model", "hf", "--model_args", f"pretrained={tiny_model},dtype=float32", "--device", "cpu",
         "--include_path", str(tmp_path / "tasks"), "--tasks", "geobench", "--batch_size", "8",
         "--log_samples", "--output_path", str(tmp_path / "harness")],
        capture_output=True, text=True, env=harness_env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    (tmp_path / "eval.yaml").write_text(yaml.safe_dump({**settings, "save_dir": str(tmp_path / "eval")}))
    run_cli("eval", tmp_path / "eval.yaml", cwd=tmp_path, env=cli_env)
    chosen = {}
    for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines():
        record = json.loads(line)
        top = sorted(record["probs"].values(), reverse=True)
        chosen[(record["task"], record["id"])] = (record["prediction"], top[0] - top[1])

    compared = 0
    for path in glob.glob(str(tmp_path / "harness" / "*" / "samples_*.jsonl")):
        task = Path(path).name.removeprefix("samples_").rsplit("_", 1)[0]
        for line in Path(path).read_text().splitlines():
            sample = json.loads(line)
            loglikelihoods = [float(resp[0]) for resp in sample["filtered_resps"]]
            pick = sample["doc"]["labels"][loglikelihoods.index(max(loglikelihoods))]
            prediction, margin = chosen.pop((task, sample["doc"]["id"]))
            if margin > 1e-4:
                assert pick == prediction, (task, sample["doc"]["id"], loglikelihoods)
                compared += 1
    assert not chosen, f"questions the harness did not score: {sorted(chosen)}"
    assert compared >= 20  # of 24: near-ties are the only ones left out

    # one name, one meaning: the harness's `geobench_average` is eval's, the mean of NPEE and APStudy
    (results_file,) = glob.glob(str(tmp_path / "harness" / "*" / "results_*.json"))
    scores = json.loads(Path(results_file).read_text())["results"]
    parts = [scores[name]["acc,none"] for name in ("geobench_npee", "geobench_apstudy")]
    assert scores["geobench_average"]["acc,none"] == pytest.approx(sum(parts) / 2)

    # exporting again into the folder leaves no task of the earlier export behind
    run_geo_factory(
        "export-lm-eval", tmp_path / "tasks", "--model", tiny_model, "--template", "mistral", "--task_dir", FIXTURES,
        "--task", "geobench_npee", cwd=tmp_path, env=cli_env, timeout=600,
    )  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == [
        "geobench.yaml", "geobench_export.json", "geobench_npee.jsonl", "geobench_npee.yaml", "utils.py",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task_dir", "no/such/dir"], "`task_dir: no/such/dir` is not a folder"),
        # refused before the model's tokenizer is read (there is no model here)
        (["--task", "mmlu_test"], "export-lm-eval writes objective GeoBench tasks and your own; not mmlu_test."),
        (
            ["--task", "geobench_subjective"],
            "export-lm-eval writes objective GeoBench tasks and your own; not geobench_npee_noun",
        ),
    ],
)
def test_export_errors_are_one_line(tmp_path, capsys, args: list[str], message: str) -> None:
    from geo_factory.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["export-lm-eval", str(tmp_path / "out"), "--model", str(tmp_path / "no-model"), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_export_names_the_task_that_bounds_n_shot(tmp_path, tiny_model, capsys) -> None:
    from geo_factory.cli import main

    with pytest.raises(SystemExit):
        main(["export-lm-eval", str(tmp_path / "out"), "--model", str(tiny_model), "--task_dir", str(FIXTURES),
              "--n_shot", "5000"])  # fmt: skip
    err = capsys.readouterr().err
    message = (
        "`n_shot: 5000` asks for more exemplars than `geobench_npee_tf` offers: its 6 questions give each at most 5 "
        "others. Allowed here: 0 to 5."
    )
    assert message in err, err
    assert not (tmp_path / "out").exists()


QUIZ_ROWS = [
    ("地壳中含量最多的元素是？", ["氧", "硅", "铝", "铁"], "A"),
    ("玄武岩属于哪类岩石？", ["沉积岩", "喷出岩", "变质岩", "侵入岩"], "B"),
    ("莫氏硬度为10的矿物是？", ["石英", "刚玉", "金刚石", "黄玉"], "C"),
    ("方解石遇稀盐酸会？", ["起泡", "变色", "熔化", "无反应"], "A"),
]


def _chinese_quiz(folder: Path) -> Path:
    """A task of the user's own whose eval_info.json says it is Chinese (`"lang": "zh"`)."""
    folder.mkdir()
    columns = {"question": "q", "options": "o", "answer": "a"}
    info = {"quiz_a": {"file_name": "quiz_a.jsonl", "columns": columns, "lang": "zh"}}
    (folder / "eval_info.json").write_text(json.dumps(info))
    rows = "".join(json.dumps({"q": q, "o": o, "a": a}, ensure_ascii=False) + "\n" for q, o, a in QUIZ_ROWS)
    (folder / "quiz_a.jsonl").write_text(rows, encoding="utf-8")
    return folder


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_without_a_template_reproduces_eval_in_each_tasks_language(tmp_path, tiny_model, cli_env) -> None:
    """A base model without a template, GeoBench beside a Chinese task of the user's own (each family's folder named
    as in eval), `--prompt_style lm_eval` and a template whose prompt ends in a newline: the harness, run as the export
    says, reads every request as exactly the tokens `llamafactory-cli eval` scores (the prompt, then the option's first
    distinguishing token), as the export counts; a template the model's own tokenizer cannot read is warned about."""
    from lm_eval.models.huggingface import HFLM

    from geo_factory.eval.evaluator import Evaluator

    quiz = _chinese_quiz(tmp_path / "quiz")
    mixed = ["--task", "geobench_npee,quiz_a", "--task_dir", quiz, "--n_shot", "1"]
    offline = run_geo_factory("export-lm-eval", "out", "--model", tiny_model, *mixed, cwd=tmp_path, env=cli_env,
                              check=False)  # fmt: skip
    assert offline.returncode == 2 and "Set `geobench_task_dir` to a local GeoBench folder." in offline.stderr
    assert not (tmp_path / "out").exists()
    plain = run_geo_factory("export-lm-eval", "out", "--model", tiny_model, *mixed, "--geobench_task_dir", FIXTURES,
                            cwd=tmp_path, env=cli_env)  # fmt: skip
    assert "geobench_npee: 8 questions (en), 8 with the tokens eval scores" in plain.stdout
    assert "quiz_a: 4 questions (zh), 4 with the tokens eval scores" in plain.stdout
    assert "warning" not in plain.stderr, plain.stderr
    assert f"--model_args pretrained={tiny_model},add_bos_token=False --include_path out" in plain.stdout
    quiz_a = ["--task", "quiz_a", "--task_dir", quiz, "--n_shot", "1"]
    styled = run_geo_factory("export-lm-eval", "styled", "--model", tiny_model, *quiz_a, "--prompt_style", "lm_eval",
                             cwd=tmp_path, env=cli_env)  # fmt: skip
    assert "quiz_a: 4 questions (zh), 4 with the tokens eval scores" in styled.stdout
    # alpaca's prompt ends in a newline, which the harness moves into the option, where it is scored with each alike
    alpaca = run_geo_factory("export-lm-eval", "alpaca", "--model", tiny_model, *quiz_a, "--template", "alpaca",
                             "--max_samples", "2", cwd=tmp_path, env=cli_env)  # fmt: skip
    assert "quiz_a: 2 questions (zh), 2 with the tokens eval scores" in alpaca.stdout
    assert "warning" not in alpaca.stderr, alpaca.stderr
    # qwen's <|im_end|> is a special token LLaMA-Factory adds for the run; the model's own tokenizer reads it as text
    qwen = run_geo_factory("export-lm-eval", "qwen", "--model", tiny_model, *quiz_a, "--template", "qwen",
                           "--max_samples", "2", cwd=tmp_path, env=cli_env)  # fmt: skip
    assert "quiz_a: 2 questions (zh), 0 with the tokens eval scores" in qwen.stdout
    assert (
        "warning: quiz_a: the harness reads 2 of 2 prompts as other tokens than eval scores: their scores may differ "
        "from eval's." in qwen.stderr
    ), qwen.stderr

    base = {"model_name_or_path": str(tiny_model), "n_shot": 1, "save_dir": str(tmp_path / "unused")}
    quiz_only = {**base, "task": "quiz_a", "task_dir": str(quiz)}
    runs = {
        ("out", "geobench_npee"): {**base, "task": "geobench_npee,quiz_a", "task_dir": str(quiz),
                                   "geobench_task_dir": str(FIXTURES)},
        ("out", "quiz_a"): {**base, "task": "geobench_npee,quiz_a", "task_dir": str(quiz),
                            "geobench_task_dir": str(FIXTURES)},
        ("styled", "quiz_a"): {**quiz_only, "prompt_style": "lm_eval"},
        ("alpaca", "quiz_a"): {**quiz_only, "template": "alpaca", "max_samples": 2},
        ("qwen", "quiz_a"): {**quiz_only, "template": "qwen", "max_samples": 2},
    }  # fmt: skip
    for (folder, task), settings in runs.items():
        manifest = json.loads((tmp_path / folder / "geobench_export.json").read_text())
        no_bos = manifest["settings"].get("harness_model_args") == "add_bos_token=False"
        harness = HFLM(pretrained=str(tiny_model), device="cpu", add_bos_token=False if no_bos else None)
        rows = _read_jsonl(tmp_path / folder / f"{task}.jsonl")
        prompts = Evaluator(settings).prompts[task]
        assert len(rows) == len(prompts)
        read_as_eval = 0
        for row, prompt in zip(rows, prompts):
            pairs = [harness._encode_pair(row["context"], choice) for choice in row["choices"]]
            read_as_eval += all(
                head + tail == [*prompt.ids, candidate] and tail[-1:] == [candidate]
                for (head, tail), candidate in zip(pairs, prompt.candidates)
            )
        assert read_as_eval == manifest["tasks"][task]["same_tokens_as_eval"], (folder, task)
        assert read_as_eval == (0 if folder == "qwen" else len(rows)), (folder, task)
    quiz_rows = _read_jsonl(tmp_path / "out" / "quiz_a.jsonl")
    assert all(row["context"].startswith("以下是关于地球科学的单项选择题") for row in quiz_rows)  # no stray space
    assert all(row["context"].endswith("答案： ") for row in quiz_rows)  # eval's Chinese wording, not "Answer:"
    styled_rows = _read_jsonl(tmp_path / "styled" / "quiz_a.jsonl")  # the harness's own text, as eval scores it
    assert all(
        row["context"].endswith("\n答案：") and row["choices"] == [" A", " B", " C", " D"] for row in styled_rows
    )
    assert [(row["context"].count("答案："), row["shots"]) for row in styled_rows] == [(2, 1)] * 4

    # a folder holding files export-lm-eval did not write, or a file a task reads, is refused before any write
    (tmp_path / "reread").mkdir()
    columns = {"question": "context", "options": "choices", "answer": "gold"}
    info = {"reread": {"file_name": "../out/quiz_a.jsonl", "columns": columns}}
    (tmp_path / "reread" / "eval_info.json").write_text(json.dumps(info))
    files = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    refusals = {
        ("quiz", "--task", "quiz_a", "--task_dir", "quiz"): "quiz holds eval_info.json, quiz_a.jsonl, which "
        "export-lm-eval did not write: export into a new or empty folder, or one an earlier export wrote (its "
        "geobench_export.json lists its files).",
        ("reread", "--task", "reread", "--task_dir", "reread"): "reread holds eval_info.json, which export-lm-eval",
        (
            "out",
            "--task",
            "reread",
            "--task_dir",
            "reread",
            "--n_shot",
            "1",
        ): f"out holds {tmp_path / 'out' / 'quiz_a.jsonl'}, which `reread` reads: export into another folder.",
    }
    for args, message in refusals.items():
        proc = run_geo_factory("export-lm-eval", args[0], "--model", tiny_model, *args[1:], cwd=tmp_path, env=cli_env,
                               check=False)  # fmt: skip
        *logged, error = proc.stderr.strip().splitlines()  # the last refusal comes after the tokenizer's log
        assert proc.returncode == 2 and error.startswith(f"geo-factory export-lm-eval: error: {message}"), proc.stderr
        assert "Traceback" not in proc.stderr and (args[0] == "out" or not logged), proc.stderr
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == files
