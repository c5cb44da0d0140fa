"""The tiny model's build (``geo_factory.tiny``): the tests share one, from geo-factory's cache; this builds its own."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from geo_factory.tiny import SPECIALS, build_tiny_model


def test_a_small_build_has_the_llama_layout_round_trips_any_text_and_is_reproducible(tmp_path: Path) -> None:
    small = {"vocab_size": 2048, "hidden_size": 32, "num_layers": 1, "pretrain_steps": 3}
    first, second = build_tiny_model(tmp_path / "a", **small), build_tiny_model(tmp_path / "b", **small)
    tokenizer = AutoTokenizer.from_pretrained(first)
    vocab = tokenizer.get_vocab()
    assert [vocab[t] for t in SPECIALS] == [0, 1, 2] and vocab["<0x00>"] == 3 and vocab["<0xFF>"] == 258
    assert len(tokenizer) == 2048
    text = "Basalt 玄武岩 🌋 is mafic."  # characters the general corpus never had: spelt in bytes
    ids = tokenizer.encode(text)
    assert ids[0] == tokenizer.bos_token_id and tokenizer.decode(ids, skip_special_tokens=True) == text
    assert any(3 <= i < 259 for i in ids)

    config = json.loads((first / "config.json").read_text())
    assert (config["model_type"], config["vocab_size"], config["hidden_size"]) == ("mistral", 2048, 32)
    model = AutoModelForCausalLM.from_pretrained(first)
    assert model(torch.tensor([ids])).logits.shape == (1, len(ids), 2048)
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), "the same build gave other weights"
