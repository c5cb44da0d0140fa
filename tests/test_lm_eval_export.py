"""``geo-factory export-lm-eval``: lm-evaluation-harness, in its own virtual environment, on the exported GeoBench
tasks chooses what ``llamafactory-cli eval`` chooses, on the same model and questions.

The harness environment is built once by ``scripts/lm_eval_env.sh`` into geo-factory's cache, keyed by the lm-eval
version and this environment's site-packages; the test skips, saying why, only when it cannot be built (no package
registry).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli, run_geo_factory


LM_EVAL_VERSION = "0.4.13"
FIXTURES = Path(__file__).parent / "fixtures" / "geobench" / "k2"


@pytest.fixture(scope="session")
def harness() -> Path:
    """``lm_eval`` of the harness environment (built on first use)."""
    from geo_factory.smol import cache_dir

    key = hashlib.sha256(f"{sysconfig.get_paths()['purelib']}:{LM_EVAL_VERSION}".encode()).hexdigest()[:12]
    target = cache_dir() / f"lm-eval-{LM_EVAL_VERSION}-{key}"
    if not (target / "lm_eval_version").is_file():
        env = {**os.environ, "LM_EVAL_VERSION": LM_EVAL_VERSION}
        proc = subprocess.run(
            ["bash", str(REPO / "scripts" / "lm_eval_env.sh"), str(target)],
            capture_output=True, text=True, env=env, timeout=900,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"the harness environment could not be built (package registry?): {proc.stderr[-500:]}")
    return target / "bin" / "lm_eval"


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
        [str(harness), "--model", "hf", "--model_args", f"pretrained={tiny_model},dtype=float32", "--device", "cpu",
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
