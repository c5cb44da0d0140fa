"""The registry: geo-factory's names resolve anywhere, the user's own entries win, mistakes fail early and clearly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import example, run_cli, run_geo_factory, workdir
from geo_factory.datasets import DATA_CONFIG, check_dataset_names, registry_dir


def _train_fails(work: Path, env: dict, *overrides: str) -> str:
    proc = run_cli("train", example("tiny/tiny_lora_pretrain.yaml"), *overrides, cwd=work, env=env, check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert not (work / "saves").exists(), "output written before the configuration was validated"
    assert "Loading checkpoint" not in proc.stdout + proc.stderr
    return proc.stderr


def test_registry_lists_every_bundled_file_that_exists() -> None:
    info = json.loads((registry_dir() / DATA_CONFIG).read_text())
    for name in ("geosignal", "alpaca_gpt4_en", "geo_corpus_demo", "general_corpus_demo", "geosignal_demo"):
        assert name in info
    for name, entry in info.items():
        if "file_name" in entry:
            assert (registry_dir() / entry["file_name"]).is_file(), name
    provenance = (registry_dir() / "README.md").read_text()
    assert all(f"`{name}`" in provenance for name in info), "each dataset needs its provenance line"


def test_misspelt_dataset_name_lists_the_close_names(tmp_path, tiny_model, cli_env) -> None:
    work = workdir(tmp_path, tiny_model)
    err = _train_fails(work, cli_env, "dataset=geo_corpus_dmeo")
    assert "Unknown dataset `geo_corpus_dmeo` in `dataset`" in err
    assert "Did you mean: geo_corpus_demo" in err


def test_users_own_entry_overrides_the_registry(tmp_path, tiny_model, cli_env) -> None:
    marker = "Basalt columns override marker"
    registry = {"geo_corpus_demo": {"file_name": "mine.jsonl", "columns": {"prompt": "text"}}}
    work = workdir(tmp_path, tiny_model, registry)
    (work / "data" / "mine.jsonl").write_text(
        "".join(json.dumps({"text": f"{marker} number {i}. " * 20}) + "\n" for i in range(40))
    )
    proc = run_cli(
        "train",
        example("tiny/tiny_lora_pretrain.yaml"),
        "dataset=geo_corpus_demo",
        "max_steps=1",
        "plot_loss=false",
        cwd=work,
        env=cli_env,
    )
    assert marker in proc.stdout  # LLaMA-Factory prints the first training example
    assert "mine.jsonl" in proc.stdout + proc.stderr


def test_missing_data_file_fails_at_parsing_naming_file_and_key(tmp_path, tiny_model, parse_train) -> None:
    work = workdir(tmp_path, tiny_model, {"my_corpus": {"file_name": "missing.jsonl"}})
    with pytest.raises(ValueError) as err:
        parse_train(example("tiny/tiny_lora_pretrain.yaml"), "dataset=my_corpus", cwd=work)
    assert f"{work / 'data' / DATA_CONFIG}, entry `my_corpus`: key `file_name` points to" in str(err.value)
    assert str(work / "data" / "missing.jsonl") in str(err.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"file_name": "mine.jsonl", "colums": {"prompt": "text"}}, "unknown key `colums`; allowed: "),
        ({"columns": {"prompt": "text"}}, "needs one of hf_hub_url"),
        ({"file_name": "mine.jsonl", "formatting": "chatml"}, "key `formatting` is `chatml`; allowed: alpaca"),
        ({"file_name": "mine.jsonl", "columns": ["text"]}, "key `columns` must be a JSON object"),
        (["mine.jsonl"], "must be a JSON object, got list"),
    ],
)
def test_malformed_entry_names_file_and_key(tmp_path, entry, message) -> None:
    """The same check the CLI runs at argument parsing (above), on each kind of malformed entry."""
    (tmp_path / DATA_CONFIG).write_text(json.dumps({"my_corpus": entry}))
    (tmp_path / "mine.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match="^" + re.escape(f"{tmp_path / DATA_CONFIG}, entry `my_corpus`: {message}")):
        check_dataset_names(["my_corpus"], str(tmp_path), key="dataset")


def test_registry_json_errors_name_the_file(tmp_path) -> None:
    (tmp_path / DATA_CONFIG).write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / DATA_CONFIG} is not valid JSON")):
        check_dataset_names(["geo_corpus_demo"], str(tmp_path), key="dataset")


def test_datasets_command_lists_the_users_own_names_with_their_source(tmp_path, cli_env) -> None:
    registry = {
        "my_corpus": {"file_name": "mine.jsonl", "columns": {"prompt": "text"}},
        "geo_corpus_demo": {"hf_hub_url": "me/better_geo_corpus"},
    }
    for folder in ("data", "elsewhere"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / DATA_CONFIG).write_text(json.dumps(registry))
    for args, folder in (((), "data"), (("--dataset-dir", "elsewhere"), "elsewhere")):
        proc = run_geo_factory("datasets", *args, cwd=tmp_path, env=cli_env)
        lines = [" ".join(line.split()) for line in proc.stdout.splitlines()]
        assert f"your registry: {tmp_path / folder / DATA_CONFIG}" in lines
        assert "my_corpus mine.jsonl (yours)" in lines
        assert "geo_corpus_demo me/better_geo_corpus (yours)" in lines  # the user's entry wins, as in training
        assert "geosignal daven3/geosignal" in lines  # and geo-factory's names are still there


def test_inside_the_clone_the_registry_is_named_once(tmp_path, cli_env, parse_train) -> None:
    """`dataset_dir: data` in a clone of geo-factory is geo-factory's own registry, not a second one."""
    repo = registry_dir().parent
    geo = registry_dir() / DATA_CONFIG
    overrides = ("dataset=geo_corpus_dmeo", f"output_dir={tmp_path / 'out'}")
    with pytest.raises(ValueError) as err:
        parse_train(example("tiny/tiny_lora_pretrain.yaml"), *overrides, cwd=repo)
    assert not (tmp_path / "out").exists()
    assert f"Searched {geo} (geo-factory's);" in str(err.value)
    assert str(err.value).count(str(geo)) == 1, str(err.value)

    proc = run_geo_factory("datasets", cwd=repo, env=cli_env)
    assert f"your registry: none (data/{DATA_CONFIG} is geo-factory's own)" in proc.stdout
    assert "(yours)" not in proc.stdout
