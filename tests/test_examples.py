"""The example yamls as README tells a user without a GPU to run them (issue 25, item 12)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import example, run_cli, workdir


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs geo-factory[qlora]")
def test_qlora_recipe_on_a_cpu_with_bf16_false(tmp_path: Path, tiny_model: Path, cli_env: dict[str, str]) -> None:
    """As shipped, the recipe stops on a CPU with the message README quotes; `bf16=false` makes it train."""
    work = workdir(tmp_path, tiny_model)
    recipe = example("train_qlora/JiuZhou_qlora_sft.yaml")
    small = ("model_name_or_path=models/tiny-mistral", "dataset=geosignal_demo", "max_steps=1", "cutoff_len=64")
    small += ("preprocessing_num_workers=1", "dataloader_num_workers=0", "plot_loss=false", "output_dir=out")
    stopped = run_cli("train", recipe, *small, cwd=work, env=cli_env, check=False)
    assert stopped.returncode != 0 and "Your setup doesn't support bf16/gpu" in stopped.stderr, stopped.stderr[-2000:]
    assert not (work / "out").exists()

    proc = run_cli("train", recipe, *small, "bf16=false", cwd=work, env=cli_env)
    assert "Quantizing model to 4 bit with bitsandbytes" in proc.stdout + proc.stderr
    assert (work / "out" / "adapter_model.safetensors").is_file()
