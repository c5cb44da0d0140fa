"""The offline pipeline as a user runs it: the shipped tiny yamls through ``llamafactory-cli``.

Every step runs in a fresh directory that has no ``data/`` of its own, so dataset names resolve through
geo-factory's registry; ``models/tiny-mistral`` is the tiny model, linked in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import chat, example, greedy_reference, losses, read_trainer_log, run_cli, workdir


def _assert_learned(output_dir: Path) -> None:
    """Held-out loss (the yamls evaluate a fixed split before and during training) went down."""
    assert len(losses(output_dir)) >= 10
    curve = [row["eval_loss"] for row in read_trainer_log(output_dir) if "eval_loss" in row]
    assert len(curve) >= 3, curve
    assert curve[-1] < curve[0] * 0.98, f"held-out loss did not go down: {curve}"


@pytest.fixture(scope="module")
def jiuzhou(tmp_path_factory, tiny_model, cli_env) -> Path:
    """pretrain -> SFT -> merge: the JiuZhou LoRA recipe's tiny twin."""
    work = workdir(tmp_path_factory.mktemp("jiuzhou"), tiny_model)
    for name in ("tiny_lora_pretrain.yaml", "tiny_lora_sft.yaml"):
        run_cli("train", example(f"tiny/{name}"), cwd=work, env=cli_env)
    run_cli("export", example("tiny/tiny_lora_merge.yaml"), cwd=work, env=cli_env)
    return work


def test_lora_pretraining_learns_and_saves_an_adapter(jiuzhou: Path) -> None:
    out = jiuzhou / "saves/tiny/lora/pretrain"
    _assert_learned(out)
    assert (out / "adapter_model.safetensors").is_file()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    assert (out / "training_loss.png").stat().st_size > 0  # plot_loss: true


def test_sft_continues_the_pretraining_adapter_and_learns(jiuzhou: Path) -> None:
    out = jiuzhou / "saves/tiny/lora/sft"
    _assert_learned(out)
    pretrained = load_file(jiuzhou / "saves/tiny/lora/pretrain/adapter_model.safetensors")
    tuned = load_file(out / "adapter_model.safetensors")
    assert pretrained.keys() == tuned.keys()
    assert any(not pretrained[k].equal(tuned[k]) for k in tuned), "SFT left the adapter untouched"


def test_export_merges_the_adapter_into_the_base_weights(jiuzhou: Path, tiny_model: Path) -> None:
    merged_dir = jiuzhou / "saves/tiny/merged"
    assert (merged_dir / "tokenizer.json").is_file()
    base, merged = load_file(tiny_model / "model.safetensors"), load_file(merged_dir / "model.safetensors")
    assert not any("lora" in key for key in merged), "adapter weights left unmerged"
    key = "model.layers.0.self_attn.q_proj.weight"
    assert base[key].shape == merged[key].shape
    assert not base[key].equal(merged[key].float()), "merged weights equal the base: the adapter was not applied"


def test_chat_answers_a_question_on_stdin(jiuzhou: Path, cli_env) -> None:
    answer = chat(example("tiny/tiny_chat.yaml"), "What is a subduction zone?", cwd=jiuzhou, env=cli_env)
    reference = greedy_reference(
        jiuzhou / "saves/tiny/merged", "What is a subduction zone?", template="mistral", max_new_tokens=32
    )
    assert answer == reference, (answer, reference)


def test_k2_recipe_full_pretraining_then_two_step_instruction_tuning(tmp_path, tiny_model, cli_env) -> None:
    work = workdir(tmp_path, tiny_model)
    run_cli("train", example("tiny/tiny_full_pretrain.yaml"), cwd=work, env=cli_env)
    full = work / "saves/tiny/full/pretrain"
    _assert_learned(full)
    assert (full / "model.safetensors").is_file() and (full / "tokenizer.json").is_file()

    run_cli("train", example("tiny/tiny_k2_sft_step1.yaml"), cwd=work, env=cli_env)
    run_cli("train", example("tiny/tiny_k2_sft_step2.yaml"), cwd=work, env=cli_env)
    step1 = load_file(work / "saves/tiny/k2/sft_step1/adapter_model.safetensors")
    step2 = load_file(work / "saves/tiny/k2/sft_step2/adapter_model.safetensors")
    assert step1.keys() == step2.keys(), "step 2 did not continue step 1's adapter"
    assert any(not step1[k].equal(step2[k]) for k in step2)


@pytest.mark.skipif(
    shutil.which("nvidia-smi") is None, reason="vLLM inference needs a CUDA GPU and `geo-factory[vllm]`"
)
def test_chat_with_vllm_backend(jiuzhou: Path, cli_env) -> None:
    proc = run_cli(
        "chat", example("tiny/tiny_chat_vllm.yaml"), cwd=jiuzhou, env=cli_env, input="What is basalt?\nexit\n"
    )
    assert proc.stdout.split("Assistant:", 1)[1].strip()
