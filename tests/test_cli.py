"""``geo-factory``'s own commands: a user's mistake gets its message and exit status 2, never a traceback."""

from __future__ import annotations

import argparse

import pytest

from conftest import run_geo_factory
from geo_factory.cli import _parser


EXPAND = ("expand-vocab", "--model", "m", "--vocab-size", "8", "--output", "o")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [*EXPAND, "--dataset", "geo_corpus_dmeo"],
            "Unknown dataset `geo_corpus_dmeo` in `--dataset`. Did you mean: geo_corpus_demo",
        ),
        (
            [*EXPAND, "--dataset", "geo_corpus_demo", "--init", "zeros"],
            "`--init: zeros` is not supported; allowed: prepared, mean, random.",
        ),
        (["datasets", "--dataset-dir", "bad"], "bad/dataset_info.json is not valid JSON"),
        (["smol-model", "notes"], "notes exists and is not a finished SmolLM2 folder: remove it or choose another."),
    ],
)
def test_user_errors_print_the_message_and_exit_2(tmp_path, cli_env, args, message) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "dataset_info.json").write_text("{not json")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    proc = run_geo_factory(*args, cwd=tmp_path, env=cli_env, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"geo-factory {args[0]}: error: ") and message in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]


def test_every_argument_of_every_command_has_help() -> None:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    undocumented = [
        f"{name} {action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert undocumented == []


def test_tiny_model_help_explains_each_argument_and_its_default(tmp_path, cli_env) -> None:
    proc = run_geo_factory("tiny-model", "-h", cwd=tmp_path, env=cli_env, check=False)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for fragment in (
        "output_dir Folder to write (default: models/tiny-mistral)",
        "--vocab-size VOCAB_SIZE Tokens in the tokenizer, specials included (default: 2048)",
        "--pretrain-steps PRETRAIN_STEPS Training steps on the general corpus; 0 leaves the weights random "
        "(default: 150)",
        "--seed SEED Seed of the initial weights (default: 0)",
    ):
        assert fragment in text, proc.stdout
