"""QLoRA (bitsandbytes 4-bit) through the stock ``llamafactory-cli`` (issue 17).

On the real model: QLoRA SFT, QLoRA TSPT (both stages) then ``export`` onto the unquantized base and ``chat``,
and GeoBench on the 4-bit model with the QLoRA adapter, giving the same answers at batch size 1 and 16. On the
tiny model: vocabulary expansion with a 4-bit base trains the new rows in full precision.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import (
    SHARED_GEOBENCH,
    chat,
    example,
    losses,
    npee_predictions,
    run_cli,
    smol_workdir,
    workdir,
)


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs geo-factory[qlora]"),
]
QUANTIZED = "Quantizing model to 4 bit with bitsandbytes"
FOUR_BIT = ("quantization_bit=4", "quantization_method=bnb")


@pytest.fixture(scope="module")
def qlora_sft(smol_model: Path, tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str]) -> Path:
    """The demo's SFT yaml in 4 bits, 3 steps and no held-out evaluation (test_smol.py measures that the SFT
    lowers the held-out loss; on a 4-bit CPU base every step and evaluation costs seconds)."""
    work = smol_workdir(tmp_path_factory.mktemp("qlora_sft"), smol_model)
    short = ("adapter_name_or_path=null", "max_steps=3", "val_size=0", "eval_strategy='no'", "eval_on_start=false")
    proc = run_cli("train", example("smol/smol_lora_sft.yaml"), *FOUR_BIT, *short, cwd=work, env=cli_env)
    assert QUANTIZED in proc.stdout + proc.stderr
    return work / "saves/smol/lora/sft"


@pytest.mark.real_model
def test_qlora_sft_trains_an_adapter_on_the_4_bit_model(qlora_sft: Path) -> None:
    curve = losses(qlora_sft)
    assert len(curve) == 3 and all(0 < loss < 20 for loss in curve), curve
    config = json.loads((qlora_sft / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"].endswith("smollm2-135m-instruct") and config["r"] == 8
    lora_b = [t for name, t in load_file(qlora_sft / "adapter_model.safetensors").items() if "lora_B" in name]
    # peft starts every lora_B at zero: after the steps each target's lora_B has moved
    assert len(lora_b) == 7 * 30 and all(b.abs().max() > 0 for b in lora_b)


@pytest.mark.real_model
def test_qlora_tspt_then_export_onto_the_unquantized_base_and_chat(
    smol_model: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    work = smol_workdir(tmp_path, smol_model)
    budgets = ("tspt_stage1_tokens=512", "tspt_stage2_tokens=512", "cutoff_len=128")
    proc = run_cli("train", example("smol/smol_tspt_lora.yaml"), *FOUR_BIT, *budgets, cwd=work, env=cli_env)
    assert (proc.stdout + proc.stderr).count(QUANTIZED) == 2, "each stage loads the base in 4 bits"
    tspt = work / "saves/smol/lora/tspt"
    report = json.loads((tspt / "tspt_report.json").read_text())
    assert [report["stages"][stage]["steps"] for stage in ("stage1", "stage2")] == [2, 2], report
    assert (tspt / "adapter_model.safetensors").is_file()

    run_cli(
        "export",
        example("smol/smol_lora_merge.yaml"),
        "adapter_name_or_path=saves/smol/lora/tspt",
        cwd=work,
        env=cli_env,
    )
    merged = work / "saves/smol/merged"
    config = json.loads((merged / "config.json").read_text())
    assert "quantization_config" not in config, "the merge went onto a quantized base"
    with (
        safe_open(merged / "model.safetensors", "pt") as new,
        safe_open(smol_model / "model.safetensors", "pt") as base,
    ):
        name = "model.layers.0.self_attn.q_proj.weight"
        assert new.get_tensor(name).dtype == base.get_tensor(name).dtype
        assert not new.get_tensor(name).equal(base.get_tensor(name)), "the adapter was not merged"
    answer = chat(example("smol/smol_chat.yaml"), "What is a subduction zone?", cwd=work, env=cli_env)
    assert "tectonic plates" in answer, answer  # greedy: what it answered, every time


@pytest.mark.real_model
@pytest.mark.skipif(
    not (SHARED_GEOBENCH / "k2").is_dir(), reason="needs the published GeoBench in ../shared/geobench/k2"
)
def test_geobench_on_the_4_bit_model_with_its_adapter_gives_the_same_answers_at_batch_size_1_and_16(
    smol_model: Path, qlora_sft: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """The 4-bit scorer path once, with the QLoRA adapter on it (the base alone takes the same path, less the
    adapter; test_smol.py checks the unquantized model). 8 questions in one batch of 16 against 8 of 1."""
    work = smol_workdir(tmp_path, smol_model)
    extra = (f"adapter_name_or_path={qlora_sft}", "finetuning_type=lora")
    predictions = {}
    for batch_size in (1, 16):
        predictions[batch_size], log = npee_predictions(
            work, *FOUR_BIT, *extra, "max_samples=8", batch_size=batch_size, env=cli_env
        )
        assert QUANTIZED in log
    assert len(predictions[1]) == 8 and predictions[1].keys() == predictions[16].keys()
    for qid, one in predictions[1].items():
        other = predictions[16][qid]
        # bitsandbytes' CPU 4-bit kernels round differently by batch shape: a choice's probability moves by up to
        # 0.015 (measured), so only a near tie may flip; padding or mask errors move it far more
        assert one["probs"] == pytest.approx(other["probs"], abs=0.03), (qid, one, other)
        first, second = sorted(one["probs"].values(), reverse=True)[:2]
        assert first - second < 0.03 or one["prediction"] == other["prediction"], (qid, one, other)


def test_vocabulary_expansion_with_a_4_bit_base_trains_the_new_rows_in_full_precision(
    tiny_model: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    work = workdir(tmp_path, tiny_model)
    budgets = ("tspt_stage1_tokens=1024", "tspt_stage2_tokens=1024", "output_dir=saves/vq")
    proc = run_cli("train", example("tiny/tiny_tspt_vocab.yaml"), *FOUR_BIT, *budgets, cwd=work, env=cli_env)
    assert (proc.stdout + proc.stderr).count(QUANTIZED) == 2
    out = work / "saves/vq"
    base_rows = json.loads((tiny_model / "config.json").read_text())["vocab_size"]
    with (
        safe_open(out / "adapter_model.safetensors", "pt") as adapter,
        safe_open(out / "stage0/model.safetensors", "pt") as expanded,
    ):
        trained = adapter.get_tensor("base_model.model.model.embed_tokens.weight")
        start = expanded.get_tensor("model.embed_tokens.weight")
    assert trained.dtype == start.dtype and trained.shape == start.shape and trained.shape[0] > base_rows
    assert (trained[base_rows:] - start[base_rows:]).abs().max() > 0, "the new rows did not train"
