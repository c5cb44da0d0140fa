"""Activation: the stock ``llamafactory-cli`` picks geo-factory up in every process, and only when it should.

That torchrun's workers have the hooks too is shown by TSPT under torchrun (test_tspt.py): ``stage: tspt`` and the
registry's dataset names exist only through them.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from conftest import REPO, example, run_cli, workdir
from geo_factory.hooks import SUPPORTED, version_problem


def test_disable_switch_gives_back_stock_llamafactory(tmp_path, tiny_model, cli_env) -> None:
    work = workdir(tmp_path, tiny_model)
    env = {**cli_env, "GEO_FACTORY_DISABLE": "1"}
    proc = run_cli("train", example("tiny/tiny_lora_pretrain.yaml"), cwd=work, env=env, check=False)
    assert proc.returncode != 0
    assert "dataset_info.json" in proc.stderr  # stock LLaMA-Factory cannot find the registry names
    assert not (work / "saves").exists()

    proc = run_cli("eval", example("tiny/tiny_lora_pretrain.yaml"), cwd=work, env=env, check=False)
    assert proc.returncode != 0 and "NotImplementedError" in proc.stderr

    usage = run_cli("help", cwd=work, env=env).stdout
    assert "llamafactory-cli train" in usage and "GeoBench" not in usage
    assert "GeoBench" in run_cli("help", cwd=work, env=cli_env).stdout


def test_version_guard_refuses_an_untested_llamafactory(tmp_path, cli_env) -> None:
    """An old llamafactory on the path: a clear message, and nothing of it patched."""
    fake = tmp_path / "old" / "llamafactory"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "0.8.3"\n')
    (fake / "launcher.py").write_text('USAGE = "stock"\n\ndef launch():\n    pass\n')
    code = "import llamafactory.launcher as l; print('launch is', l.launch.__name__)"
    env = {**cli_env, "PYTHONPATH": str(tmp_path / "old")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "launch is launch" in proc.stdout
    assert f"supports llamafactory>={SUPPORTED[0]},<{SUPPORTED[1]}, but llamafactory 0.8.3 is installed" in proc.stderr
    assert "pip install 'llamafactory>=" in proc.stderr

    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "GEO_FACTORY_ALLOW_UNTESTED": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "launch is geo_launch" in proc.stdout and "WARNING" not in proc.stderr


@pytest.mark.parametrize(
    ("installed", "ok"), [("0.9.5", True), ("0.9.5.post1", True), ("0.9.4", False), ("0.9.6", False), ("1.0", False)]
)
def test_version_range(installed: str, ok: bool) -> None:
    assert (version_problem(installed) is None) is ok


def test_a_plain_python_process_never_imports_llamafactory(cli_env) -> None:
    code = "import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('llamafactory', 'torch', 'geo_factory')))"
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "['geo_factory', 'geo_factory.hooks']"


def test_wheel_ships_the_startup_hook_and_the_registry(tmp_path) -> None:
    """A regular (non-editable) install activates too: the .pth sits at the root of site-packages."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("geo_factory-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "geo_factory.hooks" in zf.read("geo_factory.pth").decode()
    assert {"geo_factory/data/dataset_info.json", "geo_factory/data/demo/geo_corpus.jsonl"} <= names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import site, sys; site.addsitedir(sys.argv[1]); import geo_factory.hooks as h; "
        "from geo_factory.datasets import registry_dir; print(h._finder is not None, registry_dir())"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(site)], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True", str(site / "geo_factory" / "data")]


def test_own_configuration_errors_are_one_line_in_every_command(tmp_path, tiny_model, cli_env) -> None:
    """`chat` (and `train`, test_run_args.py) say geo-factory's own configuration errors as `eval` does: one line
    naming where the value was given, status 2, no traceback."""
    work = workdir(tmp_path, tiny_model)
    proc = run_cli("chat", example("tiny/tiny_chat.yaml"), "geo_tools=mineral,teleport", cwd=work, env=cli_env,
                   check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "ConfigError" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("llamafactory-cli chat: error: command line: `geo_tools: mineral,teleport`: unknown tool")
