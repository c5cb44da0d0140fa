"""The shell scripts' side effects on a machine: the demo and set-up install no browser, the test command does.

The scripts run for real, in a copy of ``scripts/`` whose ``.venv`` tools are stand-ins that do nothing, as root
(a stand-in ``id``) on a machine with apt-get and no Chromium; a stand-in ``apt-get`` records what it is asked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO


@pytest.fixture
def machine(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")
    venv, bin_dir = tmp_path / ".venv" / "bin", tmp_path / "bin"
    venv.mkdir(parents=True)
    bin_dir.mkdir()
    for name in ("python", "ruff", "geo-factory", "llamafactory-cli"):
        (venv / name).write_text("#!/bin/sh\ncat >/dev/null 2>&1 || true\nexit 0\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> {tmp_path}/apt.log\n')
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")
    for path in [*venv.iterdir(), *bin_dir.iterdir()]:
        path.chmod(0o755)
    for tool in ("bash", "dirname", "cat"):  # all the scripts need of the system
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return tmp_path, {"PATH": str(bin_dir), "HOME": str(tmp_path)}


@pytest.mark.parametrize(("script", "installs"), [("demo.sh", False), ("setup.sh", False), ("test.sh", True)])
def test_only_the_test_command_installs_chromium(machine, script: str, installs: bool) -> None:
    root, env = machine
    proc = subprocess.run(
        [shutil.which("bash"), f"scripts/{script}"], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = root / "apt.log"
    calls = log.read_text() if log.exists() else ""
    assert ("chromium" in calls) == installs, calls
