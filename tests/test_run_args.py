"""A train run's arguments across keys: GeoBench decontamination reads the run's one GeoBench folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SHARED_GEOBENCH, run_cli, workdir


FIXTURE_GEOBENCH = REPO / "tests" / "fixtures" / "geobench" / "k2"
GEOBENCH = SHARED_GEOBENCH / "k2" if (SHARED_GEOBENCH / "k2").is_dir() else FIXTURE_GEOBENCH
CLEAN = [
    ("What is the Moho?", "The boundary between the crust and the mantle, where seismic velocity jumps."),
    ("Why is basalt dark?", "It is rich in iron and magnesium minerals such as pyroxene and olivine."),
    ("What does a seismometer record?", "Ground motion: the arrival of P waves, S waves and surface waves."),
]


def _planted_stem() -> str:
    """The longest APStudy question of the folder (the published one, or the fixtures' where it is absent), long
    enough for the default 13-gram rule to find it."""
    rows = json.loads((GEOBENCH / "geobench_apstudy.json").read_text(encoding="utf-8"))
    stem = max((row["question"]["stem"] for row in rows), key=lambda stem: len(stem.split()))
    assert len(stem.split()) >= 13, f"{GEOBENCH}: no APStudy question of 13 words or more"
    return stem


def _config(work: Path, **keys) -> Path:
    config = {
        "model_name_or_path": "models/tiny-mistral",
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "template": "mistral",
        "dataset": "planted",
        "cutoff_len": 128,
        "output_dir": "saves/run",
        "overwrite_output_dir": True,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "max_steps": 1,
        "geobench_decontaminate": True,
        **keys,
    }
    path = work / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def work(tmp_path, tiny_model) -> Path:
    work = workdir(tmp_path, tiny_model, {"planted": {"file_name": "planted.json"}})
    rows = [{"instruction": q, "input": "", "output": a} for q, a in CLEAN]
    rows.append({"instruction": _planted_stem(), "input": "", "output": "The answer is B."})
    (work / "data" / "planted.json").write_text(json.dumps(rows, ensure_ascii=False))
    return work


def test_decontamination_reads_the_in_training_geobench_folder(work, cli_env) -> None:
    """`geobench_task_dir` alone: decontamination reads that folder, offline, instead of going to the hub."""
    proc = run_cli("train", _config(work, geobench_task_dir=str(GEOBENCH)), cwd=work, env=cli_env)
    assert f"items from {GEOBENCH}): dropped 1 of {len(CLEAN) + 1} rows" in proc.stdout + proc.stderr
    (report,) = json.loads((work / "saves" / "run" / "geobench_decontamination.json").read_text())["datasets"]
    assert (report["rows"], report["dropped"]) == (len(CLEAN) + 1, 1), report


def test_offline_without_a_geobench_folder_stops_at_parsing_naming_both_keys(work, cli_env) -> None:
    proc = run_cli("train", _config(work), cwd=work, env=cli_env, check=False)
    output = proc.stdout + proc.stderr
    # geo-factory's configuration errors in `train` as in `eval`: one line naming the yaml file, status 2
    assert proc.returncode == 2, output[-3000:]
    (line,) = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert line.startswith(f"llamafactory-cli train: error: {work / 'train.yaml'}: "), line
    assert "Set `geobench_decontaminate_task_dir` or `geobench_task_dir` to a local GeoBench folder" in line
    assert "Traceback" not in output and "ConfigError" not in output, output[-3000:]
    assert not (work / "saves").exists()  # stopped before anything trained or was written


def _parsed_task_dir(**keys) -> str | None:
    from llamafactory.hparams.parser import _parse_train_args  # patched by geo-factory's hooks

    args = {
        "model_name_or_path": "models/tiny-mistral",
        "stage": "sft",
        "do_train": True,
        "dataset": "geosignal_demo",
        "output_dir": "unused",
        "geobench_decontaminate": True,
        **keys,
    }
    data_args = _parse_train_args(args)[1]
    return data_args.geobench_decontamination.geobench_decontaminate_task_dir


def test_the_decontamination_folder_wins_over_the_in_training_one() -> None:
    both = {"geobench_decontaminate_task_dir": str(FIXTURE_GEOBENCH), "geobench_task_dir": str(SHARED_GEOBENCH)}
    assert _parsed_task_dir(**both) == str(FIXTURE_GEOBENCH)
    assert _parsed_task_dir(geobench_task_dir=str(FIXTURE_GEOBENCH)) == str(FIXTURE_GEOBENCH)


def test_a_missing_in_training_folder_is_named_by_its_key(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"`geobench_task_dir: .*nowhere` is not a folder"):
        _parsed_task_dir(geobench_task_dir=str(tmp_path / "nowhere"))
