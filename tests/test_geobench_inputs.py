"""GeoBench inputs that used to be accepted silently or to fail late: through the real ``llamafactory-cli``, and
its configuration errors through the same entry point in this process (one real command line keeps the check that
a value given there is blamed on it, in one line, with exit status 2).

Bad values of every key GeoBench reads stop the command before any model loads or file is written, naming the
key and what is allowed; prompts are fitted to the model's context; the judge is checked before the model
loads and a run it stopped resumes by judging only; GeoBench during ``pt``/``tspt`` training works without
a ``template``. The judge here is a small OpenAI-compatible server in the test process, on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLES, example, read_trainer_log, run_cli, workdir
from openai_standin import serving


FIXTURES = Path(__file__).parent / "fixtures" / "geobench"
OBJECTIVE = ("geobench_npee", "geobench_npee_tf", "geobench_apstudy")
JUDGE_REPLY = "accuracy: 7\ncompleteness: 6\nclarity: 8"
JUDGE_KEY = "judge-key-8d2e41"


def _eval_config(work: Path, model: Path, **config) -> Path:
    config = {
        "model_name_or_path": str(model), "trust_remote_code": False, "task": "geobench",
        "task_dir": str(FIXTURES / "k2"), "save_dir": str(work / "out"), **config,
    }  # fmt: skip
    path = work / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _error_line(stderr: str) -> str:
    """The exception's message: the last line of the traceback."""
    return stderr.strip().splitlines()[-1]


EVAL_ERROR = "llamafactory-cli eval: error: "


def _eval_error(monkeypatch, capsys, config: Path, *overrides: str) -> str:
    """``llamafactory-cli eval CONFIG OVERRIDES`` through the command's own entry point, in this process: the one
    line it prints for a configuration the user must fix (exit status 2)."""
    from geo_factory.eval import run_eval

    monkeypatch.setattr(sys, "argv", ["llamafactory-cli", str(config), *overrides])
    with pytest.raises(SystemExit) as stop:
        run_eval()
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(EVAL_ERROR), error
    return error.removeprefix(EVAL_ERROR)


# ---------------------------------------------------------------------------------------------
# Out-of-range and mistyped values: named, before any model or file


@pytest.mark.parametrize(
    ("in_yaml", "on_command_line", "message"),
    [
        ({"n_shot": 8}, [], "`n_shot: 8` asks for more exemplars than `geobench_npee_tf` offers: its 6 questions "
         "give each at most 5 others. Allowed here: 0 to 5."),
        ({"max_samples": -3}, [], "`max_samples` must be an integer >= 1 (or unset), got -3."),
        ({"max_samples": 2.5}, [], "`max_samples` must be an integer >= 1 (or unset), got 2.5."),
        ({"n_shot": "five"}, [], "`n_shot` must be an integer >= 0, got 'five'."),
        ({"batch_size": 0}, [], "`batch_size` must be an integer >= 1, got 0."),
        ({"cutoff_len": 0}, [], "`cutoff_len` must be an integer >= 1, got 0."),
        ({"overwrite_save_dir": "yes"}, [], "`overwrite_save_dir` must be true or false, got 'yes'."),
        (
            {"judge_api_base": "http://127.0.0.1:1/v1", "judge_model": "j", "judge_timeout": 0},
            [],
            "`judge_timeout` must be a number > 0, got 0.",
        ),
        ({}, ["max_samples=0"], "command line: `max_samples` must be an integer >= 1 (or unset), got 0."),
        ({}, ["compare_with=[nope/results.json]"], "command line: `compare_with` names nope/results.json, which is "
         "not a file (expected another results.json)."),
    ],
)  # fmt: skip
def test_eval_rejects_bad_values_before_any_work(
    tmp_path, tiny_model, monkeypatch, capsys, in_yaml, on_command_line, message
):
    config = _eval_config(tmp_path, tiny_model, **in_yaml)
    error = _eval_error(monkeypatch, capsys, config, *on_command_line)
    assert error.endswith(message), error
    # a value parsed from the command line is not blamed on the yaml file (data-dependent checks name no source)
    if on_command_line:
        assert error.startswith("command line: ") and str(config) not in error, error
    elif "asks for more exemplars" not in message:
        assert error.startswith(f"{config}: "), error
    assert not (tmp_path / "out").exists()


def test_eval_names_the_command_line_in_one_line(tmp_path, tiny_model, cli_env) -> None:
    """The real command: a task named on the command line is blamed on it, in one line, exit status 2."""
    config = _eval_config(tmp_path, tiny_model, task="mmlu_test")
    proc = run_cli("eval", config, "task=foo", cwd=tmp_path, env=cli_env, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert _error_line(proc.stderr).startswith(f"{EVAL_ERROR}command line: Unknown evaluation task `foo` in `task`.")
    assert "all params" not in proc.stderr  # LLaMA-Factory's model loader never ran
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("geobench_max_samples", -3, "`geobench_max_samples` must be an integer >= 1 (or unset), got -3."),
        ("geobench_eval_steps", 2.5, "`geobench_eval_steps` must be an integer >= 0, got 2.5."),
        ("geobench_batch_size", 0, "`geobench_batch_size` must be an integer >= 1, got 0."),
        ("geobench_tasks", "geobench_npee_qa", "`geobench_tasks` takes objective tasks only"),
        ("geobench_tasks", "mmlu_test", "`geobench_general_task_dir` is required for mmlu_test"),
    ],
)
def test_train_rejects_bad_geobench_values_at_parsing(tmp_path, tiny_model, monkeypatch, key, value, message):
    """LLaMA-Factory's own parsing of a train yaml, in this process: the bad value stops it, named."""
    from llamafactory.hparams import get_train_args

    work = workdir(tmp_path, tiny_model)
    config = yaml.safe_load(_pt_config(work, geobench_eval_steps=4).read_text())
    monkeypatch.chdir(work)
    with pytest.raises(ValueError) as err:
        get_train_args({**config, key: value})
    assert message in str(err.value)
    assert not (work / "out").exists()


def test_train_checks_exemplars_against_the_data_before_the_model_loads(tmp_path, tiny_model, cli_env) -> None:
    work = workdir(tmp_path, tiny_model)
    config = _pt_config(work, geobench_eval_steps=4)
    proc = run_cli("train", config, "geobench_n_shot=8", cwd=work, env=cli_env, check=False)
    assert proc.returncode != 0
    message = "`geobench_n_shot: 8` asks for more exemplars than `geobench_npee_tf` offers: its 6 questions"
    assert message in _error_line(proc.stderr), proc.stderr[-2000:]
    assert "all params" not in proc.stderr
    assert not (work / "out").exists()


# ---------------------------------------------------------------------------------------------
# Prompts against the model's context


def _short_context_model(tiny_model: Path, folder: Path, positions: int) -> Path:
    model = shutil.copytree(tiny_model, folder)
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = positions
    (model / "config.json").write_text(json.dumps(config))
    return model


def test_exemplars_are_dropped_to_fit_the_context(tmp_path, tiny_model, cli_env) -> None:
    """Fixture NPEE prompts on the tiny model, 3-shot: 271 to 316 tokens; without exemplars: 88 to 137."""
    model = _short_context_model(tiny_model, tmp_path / "tiny-280", 280)
    config = _eval_config(tmp_path, model, task="geobench_npee", n_shot=3)
    run_cli("eval", config, cwd=tmp_path, env=cli_env)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    predictions = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    npee = results["tasks"]["geobench_npee"]
    assert (npee["scored"], npee["n_shot"], npee["fewer_shots"]) == (8, 3, 3)
    assert sorted(p["shots"] for p in predictions) == [2, 2, 2, 3, 3, 3, 3, 3]
    limit = "the model's context (`max_position_embeddings: 280`)"
    assert results["settings"]["prompt_limit"] == limit
    table = (tmp_path / "out" / "results.log").read_text()
    assert f"geobench_npee: 3 of 8 questions were scored with fewer than 3 exemplars (prompt limit: {limit})" in table

    # `cutoff_len`, when given, limits the prompts too
    run_cli("eval", config, "cutoff_len=200", f"save_dir={tmp_path / 'cut'}", cwd=tmp_path, env=cli_env)
    results = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert results["tasks"]["geobench_npee"]["fewer_shots"] == 8
    assert results["settings"]["prompt_limit"] == "`cutoff_len: 200`"


def test_a_question_longer_than_the_context_is_an_error(tmp_path, tiny_model, monkeypatch, capsys) -> None:
    model = _short_context_model(tiny_model, tmp_path / "tiny-100", 100)
    error = _eval_error(monkeypatch, capsys, _eval_config(tmp_path, model, task="geobench_npee"))
    assert "`geobench_npee` question " in error and " prompt tokens even without exemplars, more than 100, " in error
    assert error.endswith("the model's context (`max_position_embeddings: 100`). Leave the task out, or use a model "
                          "with a longer context.")  # fmt: skip
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# The judge: checked before the model loads; a run it stopped resumes by judging only


@pytest.fixture
def judge_server():
    with serving(JUDGE_KEY, JUDGE_REPLY) as server:
        yield server


def _judge_config(work: Path, model: Path, api_base: str) -> Path:
    return _eval_config(
        work, model, task="geobench_npee_noun", template="mistral", max_new_tokens=4, judge_api_base=api_base,
        judge_model="judge", judge_api_key_env="GEOBENCH_JUDGE_KEY",
    )  # fmt: skip


def test_unreachable_judge_stops_before_the_model(tmp_path, tiny_model, judge_server, monkeypatch, capsys) -> None:
    port = judge_server.server_address[1]
    judge_server.server_close()  # nothing listens there any more
    config = _judge_config(tmp_path, tiny_model, f"http://127.0.0.1:{port}/v1")
    error = _eval_error(monkeypatch, capsys, config)
    assert f"The judge at `judge_api_base: http://127.0.0.1:{port}/v1` cannot be used: GET " in error
    assert error.endswith("is the server running?."), error
    assert not (tmp_path / "out").exists()


def test_judge_refusing_the_key_stops_before_the_model(
    tmp_path, tiny_model, judge_server, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("GEOBENCH_JUDGE_KEY", raising=False)
    config = _judge_config(tmp_path, tiny_model, f"http://127.0.0.1:{judge_server.server_address[1]}/v1")
    assert _eval_error(monkeypatch, capsys, config).endswith(
        "refused the request (HTTP 401): check the key in $GEOBENCH_JUDGE_KEY ($GEOBENCH_JUDGE_KEY is not set), "
        "which `judge_api_key_env` names."
    )
    assert not judge_server.requests
    assert not (tmp_path / "out").exists()


def test_a_run_the_judge_stopped_resumes_by_judging_only(tmp_path, tiny_model, cli_env, judge_server) -> None:
    model = shutil.copytree(tiny_model, tmp_path / "tiny-mistral")
    env = {**cli_env, "GEOBENCH_JUDGE_KEY": JUDGE_KEY}
    config = _judge_config(tmp_path, model, f"http://127.0.0.1:{judge_server.server_address[1]}/v1")
    judge_server.broken = True
    proc = run_cli("eval", config, cwd=tmp_path, env=env, check=False)
    assert proc.returncode != 0 and "did not answer like an OpenAI chat endpoint" in _error_line(proc.stderr)
    out = tmp_path / "out"
    answers = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(answers) == 3 and not any("judge" in a for a in answers)  # every answer was kept
    assert not (out / "results.json").exists()

    # no model any more: the rerun must not generate, only judge
    (model / "model.safetensors").unlink()
    judge_server.broken = False
    judge_server.requests.clear()
    proc = run_cli("eval", config, cwd=tmp_path, env=env)
    resuming = f"Resuming the unfinished run in {out}: 3 predictions found, 3 of them still to be judged."
    assert resuming in proc.stdout
    assert len(judge_server.requests) == 3
    results = json.loads((out / "results.json").read_text())
    judged = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [(p["id"], p["prediction"]) for p in judged] == [(a["id"], a["prediction"]) for a in answers]
    assert all(p["judge"] == {"accuracy": 7, "completeness": 6, "clarity": 8} for p in judged)
    summary = results["tasks"]["geobench_npee_noun"]
    assert (summary["scored"], summary["judged"], summary["judge_failures"]) == (3, 3, 0)
    # a subjective run has no few-shot exemplars, so no "no dev split" note
    assert results["notes"] == [] and "dev split" not in (out / "results.log").read_text()


# ---------------------------------------------------------------------------------------------
# During training, without a template (base-model pretraining) in pt and tspt


def _pt_config(work: Path, **overrides) -> Path:
    config = yaml.safe_load(example("tiny/tiny_lora_pretrain.yaml").read_text())
    for key in ("val_size", "eval_strategy", "eval_steps", "eval_on_start", "per_device_eval_batch_size"):
        config.pop(key)
    config.update(
        output_dir="out", max_steps=4, save_steps=100, plot_loss=False, geobench_task_dir=str(FIXTURES / "k2"),
        geobench_max_samples=3, geobench_n_shot=2, **overrides,
    )  # fmt: skip
    path = work / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _geobench_steps(output_dir: Path) -> list[int]:
    rows = read_trainer_log(output_dir)
    for row in rows:
        if "geobench_npee_acc" in row:
            assert all(0 <= row[f"{task}_acc"] <= 100 for task in OBJECTIVE)
    return [row["current_steps"] for row in rows if "geobench_npee_acc" in row]


def test_geobench_and_general_tasks_during_pt_without_template(tmp_path, tiny_model, cli_env) -> None:
    """One pretraining run logs GeoBench (every objective task and the average) beside MMLU, CMMLU and a benchmark of
    the user's own (eval_info.json in `geobench_general_task_dir`)."""
    from test_general_eval import write_benchmarks

    work = workdir(tmp_path, tiny_model)
    general = write_benchmarks(work / "evaluation", n_test=6)
    for path in (EXAMPLES / "eval" / "my_benchmark").iterdir():  # a benchmark of the user's own beside them
        shutil.copy(path, general)
    config = _pt_config(
        work,
        geobench_eval_steps=2,
        geobench_tasks="mmlu_test,cmmlu_test,geobench,rock_quiz",
        geobench_general_task_dir=str(general),
    )
    assert "template" not in yaml.safe_load(config.read_text())
    run_cli("train", config, cwd=work, env=cli_env)
    assert _geobench_steps(work / "out") == [2, 4]
    rows = [row for row in read_trainer_log(work / "out") if "geobench_mmlu_test_acc" in row]
    assert [row["current_steps"] for row in rows] == [2, 4]
    for row in rows:
        # 3 questions per subject: 9 MMLU, 6 CMMLU; 3 of each GeoBench task and of the user's own
        scored = {"geobench_mmlu_test_acc": 9, "geobench_cmmlu_test_acc": 6, "geobench_rock_quiz_acc": 3}
        scored.update({f"{t}_acc": 3 for t in OBJECTIVE})
        for key, n in scored.items():
            correct = row[key] * n / 100
            assert abs(correct - round(correct)) < 1e-3 and 0 <= correct <= n, (key, row)
        assert row["geobench_average_acc"] == pytest.approx(
            (row["geobench_npee_acc"] + row["geobench_apstudy_acc"]) / 2, abs=1e-4
        )  # rounded to 4 places


def test_geobench_during_tspt_without_template(tmp_path, tiny_model, cli_env) -> None:
    work = workdir(tmp_path, tiny_model)
    config = yaml.safe_load(example("tiny/tiny_tspt_lora.yaml").read_text())
    config.update(
        output_dir="out", tspt_stage1_tokens=2048, tspt_stage2_tokens=2048, save_steps=100, plot_loss=False,
        geobench_eval_steps=2, geobench_task_dir=str(FIXTURES / "k2"), geobench_max_samples=3, geobench_n_shot=2,
    )  # fmt: skip
    assert "template" not in config
    (work / "tspt.yaml").write_text(yaml.safe_dump(config))
    run_cli("train", work / "tspt.yaml", cwd=work, env=cli_env)
    assert _geobench_steps(work / "out" / "stage1") == [2, 4]  # 2048 tokens: 4 steps of 4 x 128
    assert _geobench_steps(work / "out" / "stage2") == [2, 4]


# ---------------------------------------------------------------------------------------------
# The shipped tiny eval yaml resumes instead of starting over


def test_tiny_eval_yaml_keeps_a_finished_run(tmp_path, tiny_model, cli_env) -> None:
    work = workdir(tmp_path, tiny_model)
    args = ("eval", example("tiny/tiny_eval.yaml"), f"task_dir={FIXTURES / 'k2'}", "max_samples=2")
    run_cli(*args, cwd=work, env=cli_env)
    results = work / "saves" / "tiny" / "geobench" / "results.json"
    before = results.read_bytes()
    proc = run_cli(*args, cwd=work, env=cli_env, check=False)
    assert proc.returncode != 0 and "holds a finished evaluation run" in _error_line(proc.stderr)
    assert results.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# compare_with: labels that tell runs apart, and a warning when they scored other questions


def _results(name: str, task_dir: str, layout: str, sample_ids: list[int] | None, **settings) -> dict:
    summary = {"kind": "objective", "metric": "accuracy", "accuracy": 50.0, "total": 8, "data_sha256": layout}
    if sample_ids is not None:
        summary["sample_ids"] = sample_ids
    return {
        "model": {"name": name},
        "settings": {"task_dir": task_dir, "layout": layout, "eval_mode": "likelihood", "n_shot": 5, **settings},
        "tasks": {"geobench_npee": summary},
    }


def test_compare_labels_and_question_sets() -> None:
    from geo_factory.eval.report import labels, question_sets

    k2 = _results("JiuZhou-base", "/data/geobench/k2", "k2", None)
    jiuzhou = _results("JiuZhou-base", "/data/geobench/jiuzhou", "jiuzhou", None)
    other = _results("K2", "/data/geobench/k2", "k2", None)
    assert labels([k2, jiuzhou, other]) == ["JiuZhou-base (k2)", "JiuZhou-base (jiuzhou)", "K2"]
    assert labels([k2, _results("JiuZhou-base", "/data/geobench/k2", "k2", None, n_shot=0)]) == [
        "JiuZhou-base (5-shot)",
        "JiuZhou-base (0-shot)",
    ]
    assert question_sets(k2, [other]) == []
    assert question_sets(k2, [jiuzhou, other]) == ["geobench_npee (JiuZhou-base (jiuzhou))"]
    subset = _results("K2", "/data/geobench/k2", "k2", [1, 4, 6])
    assert question_sets(k2, [subset]) == ["geobench_npee (K2)"]
