"""The GPU check without a GPU: it must stop at once and say why, never pass silently or half-run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


@pytest.mark.parametrize(
    ("hide", "reason"),
    [
        (True, "CUDA_VISIBLE_DEVICES='' hides every GPU"),
        (False, "no NVIDIA driver on this machine (nvidia-smi not found)"),  # PATH without nvidia-smi
    ],
    ids=["gpus-hidden", "no-driver"],
)
def test_gpu_check_without_cuda_fails_clearly_before_any_heavy_import(
    tmp_path: Path, cli_env: dict[str, str], hide: bool, reason: str
) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**cli_env, "PYTHON": sys.executable, "PYTHONPROFILEIMPORTTIME": "1"}
    if not hide:
        del env["CUDA_VISIBLE_DEVICES"]
        env["PATH"] = str(tmp_path)  # nothing on it
    proc = subprocess.run(
        [shutil.which("bash"), str(REPO / "benchmarks" / "gpu_check.sh"), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    timings = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    message = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert message == [f"gpu_check needs a CUDA GPU: {reason}. Nothing was measured or written."]
    imported = {line.rsplit("|", 1)[-1].strip() for line in timings}
    assert "json" in imported  # the import log is there to read
    assert not imported & {"torch", "transformers", "llamafactory", "geo_factory.extras"}, sorted(imported)
    assert not out.exists()
