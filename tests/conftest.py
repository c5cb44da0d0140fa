"""Shared fixtures: the tiny offline model, and running ``llamafactory-cli`` the way a user does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED_GEOBENCH = REPO.parent / "shared" / "geobench"
CLI = str(Path(sys.executable).parent / "llamafactory-cli")


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Offline, quiet, and with caches inside the test session."""
    home = tmp_path_factory.mktemp("hf_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEO_FACTORY_", "FORCE_TORCHRUN", "NPROC_"))}
    env.update(
        HF_HOME=str(home),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        WANDB_DISABLED="true",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from geo_factory.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-mistral")


def run_cli(
    *args: str | Path,
    cwd: Path,
    env: dict[str, str],
    input: str | None = None,
    timeout: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """``llamafactory-cli ARGS`` in ``cwd``; on an unexpected exit code, fail with its output."""
    proc = subprocess.run(
        [CLI, *map(str, args)], cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"llamafactory-cli {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def read_trainer_log(output_dir: Path) -> list[dict]:
    with open(output_dir / "trainer_log.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def losses(output_dir: Path) -> list[float]:
    return [row["loss"] for row in read_trainer_log(output_dir) if "loss" in row]


def example(name: str) -> Path:
    """A yaml under examples/, as shipped."""
    path = EXAMPLES / name
    assert path.is_file(), path
    return path
