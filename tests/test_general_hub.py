"""The general benchmarks without a `task_dir`: read from the hub datasets lm-evaluation-harness reads.

No test reaches the hub. A stand-in cais/mmlu (questions of our own, every subject of the package's table) is put
into a temporary HF cache as an online ``load_dataset`` leaves it: the parquet files in the hub cache's snapshot
layout, and the ``datasets`` cache its Parquet builder prepares from them (``cais___mmlu/SUBJECT/0.0.0/REVISION``),
which is what ``load_dataset`` reads with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli, workdir


SHARED_GENERAL = REPO.parent / "shared" / "general_eval"
REVISION = "c30699e8356da336a370243923dbaf21066bb9fe"  # any commit hash: the stand-in's revision
RICH = ("astronomy", "marketing", "philosophy")  # subjects with more than one scored question
N_DEV = 2


def _questions(subject: str, split: str) -> list[tuple[str, list[str], int]]:
    """Invented questions: (question, four choices, answer index); a leading space is stripped as the archive's."""
    n = N_DEV if split == "dev" else (3 if subject in RICH else 1)
    return [
        (
            f" Which {split} option {i} fits {subject.replace('_', ' ')}?",
            [f"{subject} {split} {i} choice {label}" for label in "ABCD"],
            (i * 3 + len(subject)) % 4,
        )
        for i in range(n)
    ]


def write_hub_cache(hf_home: Path) -> None:
    """cais/mmlu as ``load_dataset("cais/mmlu", name=SUBJECT)`` caches it online, for every subject of the table.

    Run in a child process: ``datasets`` reads HF_HOME when first imported."""
    from geo_factory.eval.families.subjects import SUBJECTS

    rows = {subject: {split: _questions(subject, split) for split in ("dev", "test")} for subject in SUBJECTS["mmlu"]}
    code = f"""
import json
import sys
from pathlib import Path

import datasets
import huggingface_hub
from datasets.data_files import DataFilesDict
from datasets.load import configure_builder_class
from datasets.packaged_modules.parquet.parquet import Parquet, ParquetConfig

repo = Path(huggingface_hub.constants.HF_HUB_CACHE) / "datasets--cais--mmlu"
(repo / "refs").mkdir(parents=True)
(repo / "refs" / "main").write_text({REVISION!r})
for subject, splits in json.load(sys.stdin).items():
    files = {{}}
    for split, rows in splits.items():
        table = datasets.Dataset.from_dict(
            {{"question": [q for q, _, _ in rows], "subject": [subject] * len(rows),
             "choices": [c for _, c, _ in rows], "answer": [a for _, _, a in rows]}},
            features=datasets.Features({{
                "question": datasets.Value("string"), "subject": datasets.Value("string"),
                "choices": datasets.Sequence(datasets.Value("string")),
                "answer": datasets.ClassLabel(names=["A", "B", "C", "D"]),
            }}),
        )
        path = repo / "snapshots" / {REVISION!r} / subject / f"{{split}}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(str(path))
        files[split] = [str(path)]
    config = ParquetConfig(name=subject, data_files=DataFilesDict.from_patterns(files))
    builder = configure_builder_class(Parquet, builder_configs=[config], default_config_name=None, dataset_name="mmlu")
    builder(config_name=subject, dataset_name="mmlu", repo_id="cais/mmlu", hash={REVISION!r}).download_and_prepare()
"""
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_HUB_CACHE", None)
    env.pop("HF_DATASETS_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, input=json.dumps(rows), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def write_archive(folder: Path) -> Path:
    """The same questions in LLaMA-Factory's evaluation layout: mmlu/mmlu.zip (headerless CSVs) + mapping.json."""
    from geo_factory.eval.families.subjects import SUBJECTS

    (folder / "mmlu").mkdir(parents=True)
    (folder / "mmlu" / "mapping.json").write_text(json.dumps(SUBJECTS["mmlu"]))
    with zipfile.ZipFile(folder / "mmlu" / "mmlu.zip", "w") as archive:
        for subject in SUBJECTS["mmlu"]:
            for split in ("dev", "test"):
                out = io.StringIO()
                csv.writer(out, lineterminator="\n").writerows(
                    [q, *choices, "ABCD"[a]] for q, choices, a in _questions(subject, split)
                )
                archive.writestr(f"data/{split}/{subject}_{split}.csv", out.getvalue())
    return folder


@pytest.fixture(scope="module")
def hub_env(tmp_path_factory, cli_env) -> dict[str, str]:
    """The CLI's offline environment with HF_HOME holding the stand-in cais/mmlu."""
    home = tmp_path_factory.mktemp("hub_home")
    write_hub_cache(home)
    return {**cli_env, "HF_HOME": str(home)}


def _predictions(save_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (save_dir / "predictions.jsonl").read_text().splitlines()]


def test_subject_table_is_the_archives_mapping() -> None:
    """The shipped table gives the names, categories and order of the published archives' mapping.json."""
    from geo_factory.eval.families.subjects import SUBJECTS

    assert {name: len(table) for name, table in SUBJECTS.items()} == {"mmlu": 57, "cmmlu": 67, "ceval": 52}
    if not SHARED_GENERAL.is_dir():
        pytest.skip(f"the published archives ({SHARED_GENERAL}) are absent")
    for bench, table in SUBJECTS.items():
        mapping = json.loads((SHARED_GENERAL / bench / "mapping.json").read_text(encoding="utf-8"))
        assert list(table.items()) == list(mapping.items()), bench


def test_mmlu_from_the_hub_cache_scores_as_the_archive(tmp_path, tiny_model, hub_env) -> None:
    """No task_dir, no ./evaluation: cais/mmlu from the cache, offline; the same questions from an archive give the
    same predictions, and results.json differs in where the data came from."""
    from geo_factory.eval.families.subjects import SUBJECTS

    work = workdir(tmp_path, tiny_model)
    config = {
        "model_name_or_path": "models/tiny-mistral", "task": "mmlu_test", "n_shot": N_DEV, "batch_size": 64,
        "save_dir": "hub",
    }  # fmt: skip
    (work / "eval.yaml").write_text(yaml.safe_dump(config))
    run_cli("eval", work / "eval.yaml", cwd=work, env=hub_env)
    folder = write_archive(tmp_path / "archive")
    run_cli("eval", work / "eval.yaml", f"task_dir={folder}", "save_dir=archive", cwd=work, env=hub_env)

    results = json.loads((work / "hub" / "results.json").read_text())
    summary = results["tasks"]["mmlu_test"]
    assert results["settings"]["task_dir"] == "hub:cais/mmlu" and results["settings"]["layout"] == "hub"
    assert results["settings"]["hub_datasets"] == {"mmlu_test": "hub:cais/mmlu"}
    assert summary["source"] == "hub:cais/mmlu"
    total = len(SUBJECTS["mmlu"]) + 2 * len(RICH)
    assert summary["total"] == summary["scored"] == total
    assert {key: (part["name"], part["category"]) for key, part in summary["subjects"].items()} == {
        key: (entry["name"], entry["category"]) for key, entry in SUBJECTS["mmlu"].items()
    }
    assert {key: part["total"] for key, part in summary["subjects"].items() if part["total"] > 1} == dict.fromkeys(
        RICH, 3
    )
    assert sum(part["subjects"] for part in summary["categories"].values()) == 57
    predictions = _predictions(work / "hub")
    assert summary["correct"] == sum(p["correct"] for p in predictions)
    assert summary["accuracy"] == pytest.approx(100 * summary["correct"] / total, abs=1e-3)
    for key, part in summary["subjects"].items():
        mine = [p for p in predictions if p["subject"] == key]
        assert part["scored"] == len(mine) and part["correct"] == sum(p["correct"] for p in mine)
    assert all(p["shots"] == N_DEV for p in predictions)

    archived = json.loads((work / "archive" / "results.json").read_text())
    assert _predictions(work / "archive") == predictions  # ids, subjects, answers, probabilities: all the same
    theirs = archived["tasks"]["mmlu_test"]
    differ = {"source", "data_sha256"}
    assert {k: v for k, v in theirs.items() if k not in differ} == {
        k: v for k, v in summary.items() if k not in differ
    }
    assert theirs["source"] == str(folder / "mmlu" / "mmlu.zip")


def test_offline_and_not_cached_stops_before_the_model(tmp_path, tiny_model, cli_env) -> None:
    """The real command, offline with an empty cache: one line naming the dataset and `task_dir`, exit 2."""
    work = workdir(tmp_path, tiny_model)
    config = {"model_name_or_path": "models/tiny-mistral", "task": "cmmlu_test", "save_dir": "out"}
    (work / "eval.yaml").write_text(yaml.safe_dump(config))
    env = {**cli_env, "HF_HOME": str(tmp_path / "empty_home")}
    proc = run_cli("eval", work / "eval.yaml", cwd=work, env=env, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line == (
        "llamafactory-cli eval: error: `cmmlu_test` reads the hub dataset haonan-li/cmmlu, which is not in the cache "
        "and the hub cannot be reached (HF_HUB_OFFLINE=1): set `task_dir` to a folder in LLaMA-Factory's evaluation "
        "layout, or run once online to cache it."
    ), proc.stderr[-3000:]
    assert "all params" not in proc.stderr  # LLaMA-Factory's model loader never ran
    assert not (work / "out").exists()


def test_a_partly_cached_dataset_names_the_missing_subject(hub_env) -> None:
    """A subject the cache lacks (an interrupted first download) is named; the table is cut to two subjects here."""
    code = """
from geo_factory.eval.data import EvalDataError
from geo_factory.eval.families import general

general.SUBJECTS = {"mmlu": {"marketing": {"name": "marketing", "category": "Other"},
                            "no_such_subject": {"name": "no such subject", "category": "STEM"}}}
try:
    general.load_hub("mmlu_test", None, None)
except EvalDataError as err:
    print(err)
"""
    proc = subprocess.run([sys.executable, "-c", code], env=hub_env, capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == (
        "`mmlu_test` reads the hub dataset cais/mmlu, which is not in the cache (subject `no_such_subject`) and the hub "
        "cannot be reached (HF_HUB_OFFLINE=1): set `task_dir` to a folder in LLaMA-Factory's evaluation layout, or run "
        "once online to cache it."
    ), proc.stderr[-3000:]
