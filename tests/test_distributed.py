"""Evaluation on several processes: ``llamafactory-cli eval`` and the in-training hook under torchrun, on the CPU
with the gloo backend (NCCL on a GPU node runs the same code). A run on 2 processes must answer every question as a
run on 1 does, each process scoring its own share."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import example, read_trainer_log, run_cli, workdir


pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures" / "geobench"
LM_EVAL_TASKS = Path(__file__).parent / "fixtures" / "lm_eval"
ON_TWO = {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"}


@pytest.fixture(scope="module")
def general_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_general_eval import write_benchmarks

    return write_benchmarks(tmp_path_factory.mktemp("general"), n_test=5)


def _predictions(save_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (save_dir / "predictions.jsonl").read_text().splitlines()]


def _same_answers(one: list[dict], two: list[dict]) -> None:
    assert [(p["task"], p["id"]) for p in two] == [(p["task"], p["id"]) for p in one]
    for a, b in zip(one, two):
        assert b["prediction"] == a["prediction"], (a, b)
        assert b["probs"] == pytest.approx(a["probs"], abs=1e-5)


def _same_results(one: Path, two: Path) -> tuple[dict, dict]:
    """results.json of both runs, equal but for when they finished, where they were saved and how many ran."""
    a, b = (json.loads((path / "results.json").read_text()) for path in (one, two))
    for results in (a, b):
        results.pop("finished_at"), results["config"].pop("save_dir")
    assert (a["settings"].pop("world_size"), b["settings"].pop("world_size")) == (1, 2)
    per_rank = a.pop("scored_per_rank"), b.pop("scored_per_rank")
    assert a == b
    return per_rank


@pytest.mark.parametrize(("layout", "general"), [("k2", "mmlu_test"), ("jiuzhou", "cmmlu_test,ceval_validation")])
def test_eval_on_two_processes_answers_as_one(layout, general, general_dir, tmp_path, tiny_model, cli_env) -> None:
    """GeoBench (each layout) beside general benchmarks: the same predictions, probabilities and results.json on 2
    processes as on 1; each process scores a share; a run stopped on 2 processes resumes on 1 (K2 layout)."""
    work = workdir(tmp_path, tiny_model)
    config = {
        "model_name_or_path": "models/tiny-mistral", "trust_remote_code": False,
        "task": f"geobench,{general}", "geobench_task_dir": str(FIXTURES / layout), "task_dir": str(general_dir),
        "n_shot": 2, "batch_size": 3,
    }  # fmt: skip
    (work / "eval.yaml").write_text(yaml.safe_dump(config))
    run_cli("eval", "eval.yaml", "save_dir=one", cwd=work, env=cli_env)
    two = run_cli("eval", "eval.yaml", "save_dir=two", cwd=work, env={**cli_env, **ON_TWO})
    assert "Evaluating on 2 processes per node, 1 node(s)" in two.stdout + two.stderr

    one_predictions = _predictions(work / "one")
    _same_answers(one_predictions, _predictions(work / "two"))
    (total,), shares = _same_results(work / "one", work / "two")
    assert total == len(one_predictions) and sum(shares) == total
    tasks = json.loads((work / "one" / "results.json").read_text())["tasks"]
    scored_tasks = sum("scored" in summary for summary in tasks.values())
    assert min(shares) > 0 and max(shares) - min(shares) <= scored_tasks  # each task's shares differ by one at most

    if layout != "k2":
        return  # resuming is the same code for every task: once is enough
    # stopped on 2 processes with a third of the answers written (a torn last line too), resumed on 1
    resumed = work / "resumed"
    resumed.mkdir()
    shutil.copy(work / "two" / "run_config.json", resumed)
    kept = len(one_predictions) // 3
    lines = (work / "two" / "predictions.jsonl").read_text().splitlines(keepends=True)
    (resumed / "predictions.jsonl").write_text("".join(lines[:kept]) + lines[kept][:20])
    proc = run_cli("eval", "eval.yaml", "save_dir=resumed", cwd=work, env=cli_env)
    assert f"{kept} predictions found" in proc.stdout + proc.stderr
    _same_answers(one_predictions, _predictions(resumed))
    assert json.loads((resumed / "results.json").read_text())["scored_per_rank"] == [total - kept]


@pytest.mark.parametrize(
    ("stage", "harness", "harness_key"),
    [
        ("pt", "geo_rocks_letters", "acc"),  # loglikelihood requests
        ("sft", "geo_numbers_gen", "exact_match_first-number"),  # generate_until requests
    ],
)
def test_in_training_evaluation_on_two_processes(
    stage, harness, harness_key, general_dir, tmp_path, tiny_model, cli_env
) -> None:
    """The in-training hook under DDP: each rank scores a share, with as many forward passes as the other, and the
    gathered accuracies equal a single process's (learning rate 0: the model is the same at every step); an
    `lm_eval:` task's requests are shared between the ranks too and its logged score is a single process's."""
    work = workdir(tmp_path, tiny_model)
    shutil.copytree(LM_EVAL_TASKS, work / "lm_eval_tasks")
    config = yaml.safe_load(example(f"tiny/tiny_lora_{'pretrain' if stage == 'pt' else 'sft'}.yaml").read_text())
    for key in ("val_size", "eval_strategy", "eval_steps", "eval_on_start", "per_device_eval_batch_size",
                "adapter_name_or_path"):  # fmt: skip
        config.pop(key, None)
    config.update(
        per_device_train_batch_size=2, learning_rate=0.0, max_steps=2, save_steps=100, plot_loss=False,
        geobench_eval_steps=1, geobench_tasks=f"geobench,mmlu_test,lm_eval:{harness}",
        geobench_task_dir=str(FIXTURES / "k2"), geobench_general_task_dir=str(general_dir), geobench_n_shot=2,
        geobench_batch_size=4, geobench_lm_eval_include_path="lm_eval_tasks",
    )  # fmt: skip
    (work / "train.yaml").write_text(yaml.safe_dump(config))
    run_cli("train", "train.yaml", "output_dir=one", cwd=work, env=cli_env)
    two = run_cli("train", "train.yaml", "output_dir=two", cwd=work, env={**cli_env, **ON_TWO})

    def metrics(output_dir: str) -> list[dict]:
        rows = [row for row in read_trainer_log(work / output_dir) if "geobench_npee_acc" in row]
        return [{k: v for k, v in row.items() if k.startswith("geobench_")} for row in rows]

    assert len(metrics("one")) == 2 and "geobench_mmlu_test_acc" in metrics("one")[0]
    assert f"geobench_lm_eval_{harness}_{harness_key}" in metrics("one")[0]
    assert metrics("two") == metrics("one")
    shares = re.findall(
        r"rank (\d) of 2 scores (\d+) of (\d+) questions in (\d+) forward passes", two.stdout + two.stderr
    )
    assert sorted(rank for rank, *_ in shares) == ["0", "1"], two.stdout[-3000:]
    assert len({passes for *_, passes in shares}) == 1  # every rank keeps step with the other
    (total,) = {int(total) for _, _, total, _ in shares}
    assert sum(int(scored) for _, scored, _, _ in shares) == total and all(int(s) > 0 for _, s, _, _ in shares)
    answered = re.findall(r"rank (\d) of 2 answered (\d+) of (\d+) lm_eval requests\.", two.stdout + two.stderr)
    assert len(answered) == 4 and sorted(rank for rank, _, _ in set(answered)) == ["0", "1"]  # the same at each step
    (requested,) = {int(total) for *_, total in answered}
    assert sum(int(n) for _, n, _ in set(answered)) == requested and all(int(n) > 0 for _, n, _ in answered)


def test_a_mistake_is_one_line_before_any_process_starts(tmp_path, tiny_model, cli_env) -> None:
    """Checked once, in the launching process: the same one line and exit 2 as on one process, no torchrun report."""
    work = workdir(tmp_path, tiny_model)
    (work / "eval.yaml").write_text(yaml.safe_dump({"model_name_or_path": "models/tiny-mistral", "task": "geobench"}))
    proc = run_cli(
        "eval", "eval.yaml", f"task_dir={FIXTURES / 'k2'}", "n_shot=many", "save_dir=out",
        cwd=work, env={**cli_env, **ON_TWO}, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "llamafactory-cli eval: error: command line: `n_shot` must be an integer >= 0, got 'many'."
    )
    assert "Evaluating on" not in proc.stdout and "Traceback" not in proc.stderr
    assert not (work / "out").exists()


def test_a_training_mistake_is_one_line_before_torchrun_starts(tmp_path, tiny_model, cli_env) -> None:
    """``train`` under torchrun: geo-factory's configuration error is checked before torchrun starts, so it is the one
    line and exit 2 of a single-process run, not each rank's traceback and torchrun's report; nothing is written."""
    work = workdir(tmp_path, tiny_model)
    config = yaml.safe_load(example("tiny/tiny_lora_pretrain.yaml").read_text())
    config.update(output_dir="out", geobench_eval_steps=5, geobench_task_dir=str(FIXTURES / "k2"), geobench_n_shot=-1)
    (work / "train.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli("train", "train.yaml", cwd=work, env={**cli_env, **ON_TWO}, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "llamafactory-cli train: error: train.yaml: `geobench_n_shot` must be an integer >= 0, got -1."
    )
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "ChildFailedError" not in output and "distributed tasks" not in output
    assert not (work / "out").exists()
