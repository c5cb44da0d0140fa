"""Vocabulary expansion (PreparedLLM): TSPT's stage 0 and ``geo-factory expand-vocab``.

The expansion runs through the real console script or ``llamafactory-cli`` on the tiny model, whose
tokenizer was trained on general text only, with the bundled demo corpora and held-out texts; on
ByteLevel BPE tokenizers (GPT-2 layout) built here with ``tokenizers``; and on SmolLM2's own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from conftest import REPO, chat, example, greedy_reference, losses, run_cli, run_geo_factory, workdir
from geo_factory.tiny import demo_texts
from geo_factory.vocab import RECORD, expand_command, init_embeddings


HELDOUT = REPO / "benchmarks" / "data"
BASE_VOCAB = 2048  # the tiny model's
ADDED = 300
TSPT_VOCAB = "saves/tiny/lora/tspt_vocab"  # tiny_tspt_vocab.yaml's output_dir

# English, Chinese, emoji (one and several code points), a supplementary-plane character, controls and
# other characters the tiny tokenizer lacks: all of them repeated so that some become new pieces.
MIXED = [
    "Subduction zones recycle oceanic lithosphere into the mantle; 俯冲带把大洋岩石圈带回地幔。",
    "Volcano 🌋 erupts: basaltic lava 🌋🔥 flows, 火山喷发 🌋 玄武岩熔岩流动。",
    "Family 👨‍👩‍👧 hikes to the outcrop 🪨 with a compass 🧭 and a hammer ⚒️.",
    "Rare characters 𠀀𠀁 and 𡃁 appear in old gazetteers; 古籍中的地名 𠀀。",
    "Tabs\tand\nnewlines, a bell \x07 and a NUL \x00 byte, café, naïve, Ω ≈ ∑, ﬁ ligature.",
    "Zircon U–Pb ages: 4.404 ± 0.008 Ga (Jack Hills) — 锆石铀铅年龄。",
]
PROBES = [
    *MIXED,
    "🌋🌋🌋 火山 🌋 and 𠀀𠀀 again, 👨‍👩‍👧👨‍👩‍👧",
    "Unseen: 🦕 🧪 𝔊𝔢𝔬 ∮ ☃ \x1b[0m and \u200b zero width",
    "mixed语言text不加空格🙂end",
    "trailing spaces   ",
    "",
]


def _record(path: Path) -> dict:
    return json.loads((path / RECORD).read_text())


def _lines(name: str) -> list[str]:
    return [line for line in (HELDOUT / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def _mixed_registry(work: Path) -> None:
    """``data/`` in ``work`` with ``mixed_demo``: the MIXED texts, each 20 times (the registry's sets stay available)."""
    (work / "data").mkdir()
    (work / "data" / "mixed.jsonl").write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in MIXED * 20), encoding="utf-8"
    )
    registry = {"mixed_demo": {"file_name": "mixed.jsonl", "columns": {"prompt": "text"}}}
    (work / "data" / "dataset_info.json").write_text(json.dumps(registry))


def _check_promises(base_dir: Path, new_dir: Path) -> tuple:
    """What every expansion promises, whatever the layout: the tokenizers, after asserting it.

    Every base id (added and special tokens included) is unchanged and new ids follow the last one; any text
    round-trips exactly; general text never gets longer (and is unchanged where it uses no new token);
    geoscience text gets shorter; special tokens in a chat still encode as themselves.
    """
    base, new = AutoTokenizer.from_pretrained(base_dir), AutoTokenizer.from_pretrained(new_dir)
    pieces = _record(new_dir)["pieces"]
    first = max(base.get_vocab().values()) + 1
    new_vocab = new.get_vocab()
    assert all(new_vocab[piece] == i for piece, i in base.get_vocab().items())
    assert [new_vocab[p] for p in pieces] == list(range(first, first + len(pieces)))
    assert len(new) == first + len(pieces)

    def encode(tokenizer, text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    for text in PROBES + _lines("heldout_geo_zh.txt")[:5] + _lines("heldout_geo_en.txt")[:5]:
        assert new.decode(encode(new, text), clean_up_tokenization_spaces=False) == text, repr(text)
    for line in _lines("heldout_general_en.txt") + _lines("heldout_general_zh.txt"):
        old, ids = encode(base, line), encode(new, line)
        assert len(ids) <= len(old), line
        if all(i < first for i in ids):
            assert ids == old, line
    for name in ("heldout_geo_en.txt", "heldout_geo_zh.txt"):
        text = "\n".join(_lines(name))
        assert len(encode(new, text)) < len(encode(base, text)), name
    specials = [t for t in base.all_special_tokens if t != base.unk_token]
    chat = "".join(f"{t}地震 earthquake 🌋" for t in specials)
    assert [i for i in encode(new, chat) if i < first and base.convert_ids_to_tokens(i) in specials] == [
        base.convert_tokens_to_ids(t) for t in specials
    ]
    return base, new, pieces


def _check_prepared_tied_rows(base_dir: Path, new_dir: Path, base, pieces: list[str]) -> None:
    """One embedding matrix, shared by the output layer: base rows kept, new rows the mean of the spelling rows."""
    from transformers import AutoModelForCausalLM

    weights = load_file(new_dir / "model.safetensors")
    assert "lm_head.weight" not in weights and json.loads((new_dir / "config.json").read_text())["tie_word_embeddings"]
    model = AutoModelForCausalLM.from_pretrained(new_dir)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    old = load_file(base_dir / "model.safetensors")["model.embed_tokens.weight"]
    rows = weights["model.embed_tokens.weight"]
    first = max(base.get_vocab().values()) + 1
    assert torch.equal(rows[:first], old[:first])
    spellings = [[t.id for t in base.backend_tokenizer.model.tokenize(piece)] for piece in pieces]
    assert max(map(len, spellings)) >= 3
    torch.testing.assert_close(
        rows[first : first + len(pieces)], torch.stack([old[ids].mean(dim=0) for ids in spellings])
    )


@pytest.fixture(scope="module")
def expanded(tmp_path_factory, tiny_model, cli_env) -> Path:
    """The tiny model expanded by 300 tokens on both demo corpora, through the console script."""
    work = tmp_path_factory.mktemp("expand")
    args = ("--model", tiny_model, "--dataset", "geo_corpus_demo,general_corpus_demo", "--vocab-size", ADDED)
    proc = run_geo_factory("expand-vocab", *args, "--output", "expanded", cwd=work, env=cli_env)
    (work / "expand-vocab.log").write_text(proc.stderr)
    return work / "expanded"


@pytest.fixture(scope="module")
def tokenizer_pair(expanded, tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(expanded)


def _llama_layout(tiny_model: Path, target: Path) -> Path:
    """The tiny model with a LLaMA/Mistral-hub tokenizer: no pre-tokenizer, a Prepend/Replace normalizer,
    string merges, and `LlamaTokenizerFast`, which transformers rebuilds from vocab and merges on load."""
    shutil.copytree(tiny_model, target)
    spec = json.loads((target / "tokenizer.json").read_text())
    spec["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ],
    }
    spec["pre_tokenizer"] = None
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
    (target / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False))
    config = json.loads((target / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="LlamaTokenizerFast", legacy=False)
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


def test_command_writes_a_resized_model_and_its_tokenizer(expanded: Path, tokenizer_pair) -> None:
    new = tokenizer_pair[1]
    record = _record(expanded)
    assert record["added"] == ADDED and record["base_vocab_size"] == BASE_VOCAB
    assert record["corpus_tokens_after"] < record["corpus_tokens_before"]
    assert len(new) == BASE_VOCAB + ADDED
    config = json.loads((expanded / "config.json").read_text())
    rows = load_file(expanded / "model.safetensors")["model.embed_tokens.weight"].shape[0]
    assert config["vocab_size"] == rows == record["embedding_rows"] and rows % 64 == 0 and rows >= len(new)
    assert not (expanded / "tokenizer.model").exists()
    corpus_chars = sum(map(len, demo_texts()))
    log = (expanded.parent / "expand-vocab.log").read_text()
    counts = re.findall(r"Reading the vocabulary corpus: ([\d.]+)kchar", log)  # refreshed while it reads: the last
    assert counts and float(counts[-1]) == pytest.approx(corpus_chars / 1000, abs=1), "no progress bar over the corpus"
    assert not any(i >= BASE_VOCAB for i in new.added_tokens_decoder), (
        "new pieces must be vocabulary, not added tokens"
    )


def test_base_ids_and_general_encodings_are_kept(tokenizer_pair) -> None:
    base, new = tokenizer_pair
    new_vocab = new.get_vocab()
    assert all(new_vocab[piece] == i for piece, i in base.get_vocab().items())
    assert sorted(i for i in new_vocab.values() if i >= BASE_VOCAB) == list(range(BASE_VOCAB, BASE_VOCAB + ADDED))
    for line in _lines("heldout_general_en.txt") + _lines("heldout_general_zh.txt"):
        old, ids = base.encode(line, add_special_tokens=False), new.encode(line, add_special_tokens=False)
        assert len(ids) <= len(old) and new.decode(ids) == base.decode(old)
        if all(i < BASE_VOCAB for i in ids):
            assert ids == old, line


@pytest.mark.parametrize("name", ["heldout_geo_en.txt", "heldout_geo_zh.txt"])
def test_domain_text_is_encoded_with_the_new_tokens(tokenizer_pair, name: str) -> None:
    base, new = tokenizer_pair
    text = "\n".join(_lines(name))
    old, ids = base.encode(text, add_special_tokens=False), new.encode(text, add_special_tokens=False)
    assert len(ids) < 0.95 * len(old), (len(old), len(ids))
    used = {new.convert_ids_to_tokens(i) for i in ids if i >= BASE_VOCAB}
    assert len(used) >= 20, used
    if name.endswith("en.txt"):  # whole words reached through the appended merges, not single characters
        assert sum(len(t) >= 5 and t.isascii() for t in used) >= 10, used
    else:  # characters the base spelt in bytes, and merges of them
        assert any(len(t) == 1 and not t.isascii() for t in used) and any(len(t) >= 2 for t in used), used


def test_every_new_piece_is_produced_by_encoding_the_corpus(expanded: Path, tiny_model: Path, tokenizer_pair) -> None:
    """Appended merges are reachable: each new piece is output, or made on the way to one that is."""
    new = tokenizer_pair[1]
    pieces = _record(expanded)["pieces"]
    merges = json.loads((expanded / "tokenizer.json").read_text())["model"]["merges"]
    base_merges = json.loads((tiny_model / "tokenizer.json").read_text())["model"]["merges"]
    assert merges[: len(base_merges)] == base_merges, "base merges keep their ranks"
    made_from = {a + b: (a, b) for a, b in merges[len(base_merges) :]}
    assert set(made_from) <= set(pieces)

    produced = {piece for text in demo_texts() for piece in new.tokenize(text)}
    reached, todo = set(), [p for p in pieces if p in produced]
    while todo:
        piece = todo.pop()
        if piece not in reached:
            reached.add(piece)
            todo.extend(made_from.get(piece, ()))
    assert set(pieces) <= reached, set(pieces) - reached


@pytest.mark.parametrize("layout", ["metaspace", "llama"])
def test_round_trip_on_english_chinese_emoji_and_bytes(tmp_path, tiny_model, cli_env, layout: str) -> None:
    model = tiny_model if layout == "metaspace" else _llama_layout(tiny_model, tmp_path / "llama-layout")
    _mixed_registry(tmp_path)
    run_geo_factory(
        "expand-vocab",
        "--model",
        model,
        "--dataset",
        "mixed_demo",
        "--vocab-size",
        200,
        "--output",
        "out",
        cwd=tmp_path,
        env=cli_env,
    )

    base, new = AutoTokenizer.from_pretrained(model), AutoTokenizer.from_pretrained(tmp_path / "out")
    pieces = _record(tmp_path / "out")["pieces"]
    assert {"🌋", "𠀀", "锆"} <= set(pieces), "characters the base spells in bytes become tokens"
    assert any("🌋" in p and len(p) > 1 for p in pieces), "and merge with their neighbours"
    held_out = _lines("heldout_geo_zh.txt")[:5] + _lines("heldout_general_en.txt")[:5]
    for text in PROBES + held_out:
        ids = new.encode(text, add_special_tokens=False)
        assert new.decode(ids) == text == base.decode(base.encode(text, add_special_tokens=False)), repr(text)
    assert any(i >= BASE_VOCAB for i in new.encode(PROBES[6], add_special_tokens=False))


def test_an_added_token_after_the_bpe_vocabulary_keeps_its_id(tmp_path, tiny_model, cli_env) -> None:
    """Like the `<pad>` many LLaMA-2 fine-tunes add at id 32000: new pieces go after it, and it stays put."""
    from transformers import AutoModelForCausalLM

    model_dir = tmp_path / "with-pad"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    args = ("--model", model_dir, "--dataset", "geo_corpus_demo,general_corpus_demo", "--vocab-size", 100)
    run_geo_factory("expand-vocab", *args, "--output", "out", cwd=tmp_path, env=cli_env)

    new = AutoTokenizer.from_pretrained(tmp_path / "out")
    pieces = _record(tmp_path / "out")["pieces"]
    assert new.pad_token_id == BASE_VOCAB and new.convert_tokens_to_ids(pieces[0]) == BASE_VOCAB + 1
    assert len(new) == BASE_VOCAB + 1 + len(pieces)
    for text in [*PROBES, *_lines("heldout_geo_en.txt")[:5]]:
        ids = new.encode(text, add_special_tokens=False)
        assert BASE_VOCAB not in ids and new.decode(ids) == text, repr(text)
    assert {new.convert_tokens_to_ids(p) for p in pieces} & set(new.encode(" ".join(pieces)))


def test_prepared_rows_are_the_mean_of_the_spelling_rows(expanded: Path, tiny_model: Path, tokenizer_pair) -> None:
    base_bpe = tokenizer_pair[0].backend_tokenizer.model
    spellings = [[t.id for t in base_bpe.tokenize(piece)] for piece in _record(expanded)["pieces"]]
    assert any(len(ids) == 3 and all(3 <= i < 259 for i in ids) for ids in spellings), "a CJK character: 3 bytes"
    base, new = load_file(tiny_model / "model.safetensors"), load_file(expanded / "model.safetensors")
    end = BASE_VOCAB + ADDED
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(new[key][:BASE_VOCAB], base[key]), "base rows must not move"
        prepared = torch.stack([base[key][ids].mean(dim=0) for ids in spellings])
        torch.testing.assert_close(new[key][BASE_VOCAB:end], prepared)
        torch.testing.assert_close(new[key][end:], base[key].mean(dim=0).expand(len(new[key]) - end, -1))


@pytest.mark.parametrize("init", ["mean", "random"])
def test_mean_and_random_initialization(tiny_model: Path, init: str) -> None:
    from transformers import AutoModelForCausalLM

    spellings = [[300, 301], [302], [303, 304, 305]]
    rows = {}
    for seed in (0, 0, 1):
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        base = {"in": model.get_input_embeddings().weight.clone(), "out": model.get_output_embeddings().weight.clone()}
        init_embeddings(model, spellings, BASE_VOCAB, init, seed=seed)
        assert model.config.vocab_size == model.get_input_embeddings().weight.shape[0] == BASE_VOCAB + 64
        for side, weight in (
            ("in", model.get_input_embeddings().weight),
            ("out", model.get_output_embeddings().weight),
        ):
            assert torch.equal(weight[:BASE_VOCAB], base[side])
            new = weight[BASE_VOCAB : BASE_VOCAB + 3].detach()
            rows.setdefault(side, []).append(new)
            if init == "mean":
                torch.testing.assert_close(new, base[side].mean(dim=0).expand(3, -1))
            else:
                assert abs(new.std().item() - model.config.initializer_range) < 0.01
                assert not torch.allclose(new[0], base[side][spellings[0]].mean(dim=0), atol=1e-3)
    for runs in rows.values():
        assert torch.equal(runs[0], runs[1]), "same seed, same rows"
        assert init == "mean" or not torch.equal(runs[0], runs[2])


def test_prepared_rows_in_bf16_with_tied_embeddings(tiny_model: Path) -> None:
    """A model that ties its output layer to its input embeddings, loaded in bf16 as the GPU yamls do."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_model, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, config=config, dtype=torch.bfloat16)
    base = model.get_input_embeddings().weight.detach().clone()
    spellings = [[300, 301], [3 + 0xE5, 3 + 0x9C, 3 + 0xB0]]  # a piece pair; a character in bytes
    init_embeddings(model, spellings, BASE_VOCAB, "prepared")
    weight = model.get_input_embeddings().weight
    assert weight.dtype == torch.bfloat16 and model.get_output_embeddings().weight is weight
    assert torch.equal(weight[:BASE_VOCAB], base)
    for row, ids in enumerate(spellings, start=BASE_VOCAB):
        torch.testing.assert_close(weight[row], base[ids].float().mean(dim=0).to(torch.bfloat16))


def test_streaming_reads_the_same_corpus(expanded: Path, tiny_model: Path, cli_env, tmp_path) -> None:
    stale = tmp_path / ".streamed.tmp-1"  # what a killed run leaves: never mistaken for a finished expansion
    stale.mkdir()
    args = ("--model", tiny_model, "--dataset", "geo_corpus_demo,general_corpus_demo", "--vocab-size", ADDED)
    run_geo_factory("expand-vocab", *args, "--streaming", "--output", "streamed", cwd=tmp_path, env=cli_env)
    assert _record(tmp_path / "streamed")["pieces"] == _record(expanded)["pieces"]
    assert not stale.exists()


def test_a_finished_expansion_is_reused_and_other_files_are_never_replaced(
    expanded: Path, tiny_model: Path, cli_env, tmp_path
) -> None:
    args = ("--model", tiny_model, "--dataset", "geo_corpus_demo,general_corpus_demo", "--vocab-size", ADDED)
    written = (expanded / "model.safetensors").stat().st_mtime_ns
    proc = run_geo_factory("expand-vocab", *args, "--output", expanded, cwd=tmp_path, env=cli_env)
    assert "reusing it" in proc.stdout + proc.stderr
    assert (expanded / "model.safetensors").stat().st_mtime_ns == written

    settings = {"model": str(tiny_model), "dataset": "geo_corpus_demo,general_corpus_demo", "init": "prepared"}
    with pytest.raises(ValueError, match="other vocab_size; set `--overwrite`"):
        expand_command(**settings, vocab_size=100, output=expanded)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds other files"):
        expand_command(**settings, vocab_size=100, output=tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"dataset": "geo_corpus_dem"},
            "Unknown dataset `geo_corpus_dem` in `--dataset`. Did you mean: geo_corpus_demo",
        ),
        ({"vocab_size": 0}, "`--vocab-size` must be a positive number of new tokens; got `0`"),
        ({"init": "zeros"}, "`--init: zeros` is not supported; allowed: prepared, mean, random"),
        ({"max_chars": 0}, "`--max-chars` must be positive"),
    ],
)
def test_invalid_settings_fail_before_any_work(tmp_path, tiny_model, overrides: dict, message: str) -> None:
    settings = {"dataset": "geo_corpus_demo", "vocab_size": 10, "init": "prepared"} | overrides
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        expand_command(str(tiny_model), output=tmp_path / "out", **settings)
    assert not any(tmp_path.iterdir())


def test_a_tokenizer_that_cannot_spell_any_text_is_refused(tmp_path, tiny_model) -> None:
    """Metaspace BPE without byte fallback: a character it lacks becomes `<unk>`, so no expansion could round-trip."""
    model = shutil.copytree(tiny_model, tmp_path / "no-fallback")
    spec = json.loads((model / "tokenizer.json").read_text())
    spec["model"]["byte_fallback"] = False
    (model / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(
        ValueError,
        match=r"needs a BPE tokenizer that can spell any text: with byte fallback .* or a ByteLevel pre-tokenizer",
    ):
        expand_command(str(model), "geo_corpus_demo", 10, "prepared", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def vocab_tspt(tmp_path_factory, tiny_model, cli_env) -> tuple[Path, subprocess.CompletedProcess]:
    """The shipped stage-0 TSPT yaml (shorter stages), then ``export`` of its adapter as the merge yaml has it: onto
    the original base, which is refused, then onto the expanded base the refusal names."""
    work = workdir(tmp_path_factory.mktemp("tspt_vocab"), tiny_model)
    budgets = ("tspt_stage1_tokens=2048", "tspt_stage2_tokens=2048")
    run_cli("train", example("tiny/tiny_tspt_vocab.yaml"), *budgets, cwd=work, env=cli_env)
    merge, adapter = example("tiny/tiny_lora_merge.yaml"), f"adapter_name_or_path={TSPT_VOCAB}"
    wrong = run_cli("export", merge, adapter, cwd=work, env=cli_env, check=False)
    run_cli("export", merge, adapter, f"model_name_or_path={TSPT_VOCAB}/stage0", cwd=work, env=cli_env)
    return work, wrong


@pytest.mark.slow
def test_tspt_stage0_then_both_stages_train_the_new_rows(vocab_tspt) -> None:
    work, _ = vocab_tspt
    out = work / TSPT_VOCAB
    stage0 = out / "stage0"
    assert _record(stage0)["added"] == ADDED and _record(stage0)["init"] == "prepared"
    for stage in ("stage1", "stage2"):
        assert losses(out / stage), f"{stage} did not train"
        base_model = json.loads((out / stage / "adapter_config.json").read_text())["base_model_name_or_path"]
        assert (work / base_model).resolve() == stage0.resolve(), f"{stage} did not start from stage 0"

    config = json.loads((out / "adapter_config.json").read_text())
    assert set(config["modules_to_save"]) >= {"embed_tokens", "lm_head"}, "the new rows must be trainable"
    adapter, start = load_file(out / "adapter_model.safetensors"), load_file(stage0 / "model.safetensors")
    new_rows = slice(BASE_VOCAB, BASE_VOCAB + ADDED)
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        trained = next(v for k, v in adapter.items() if k.endswith(key))
        assert trained.shape == start[key].shape
        assert not torch.allclose(trained[new_rows], start[key][new_rows]), f"{key}: new rows did not train"


@pytest.mark.slow
def test_export_onto_the_original_base_names_stage0_and_onto_stage0_merges(vocab_tspt) -> None:
    work, wrong = vocab_tspt
    assert wrong.returncode != 0
    expanded = json.loads((work / TSPT_VOCAB / "stage0" / "config.json").read_text())["vocab_size"]
    assert (
        f"The adapter {TSPT_VOCAB} was trained on a model with {expanded:,} token embeddings, but "
        "`model_name_or_path: models/tiny-mistral` has 2,048" in wrong.stderr
    ), wrong.stderr[-3000:]
    suggested = wrong.stderr.split("Set `model_name_or_path` to the expanded model the adapter belongs to: ")[1]
    assert suggested.split()[0].rstrip(".") == f"{TSPT_VOCAB}/stage0"  # what the second export used

    merged = work / "saves/tiny/merged"
    stage0 = AutoTokenizer.from_pretrained(work / TSPT_VOCAB / "stage0").get_vocab()
    assert AutoTokenizer.from_pretrained(merged).get_vocab() == stage0
    assert not any("lora" in k or "modules_to_save" in k for k in load_file(merged / "model.safetensors"))


@pytest.mark.slow
def test_the_merged_expanded_model_chats_and_evaluates(vocab_tspt, cli_env) -> None:
    work, _ = vocab_tspt
    answer = chat(example("tiny/tiny_chat.yaml"), "什么是俯冲带？", cwd=work, env=cli_env)  # on saves/tiny/merged
    # the merged model's own words, new Chinese tokens and all
    reference = greedy_reference(work / "saves/tiny/merged", "什么是俯冲带？", template="mistral", max_new_tokens=32)
    assert answer == reference, (answer, reference)

    (work / "eval.yaml").write_text(
        f"model_name_or_path: saves/tiny/merged\ntemplate: mistral\ntask: geobench_npee\n"
        f"task_dir: {REPO / 'tests/fixtures/geobench/k2'}\nn_shot: 1\nmax_samples: 8\nsave_dir: saves/geobench\n"
    )
    run_cli("eval", work / "eval.yaml", cwd=work, env=cli_env)
    assert json.loads((work / "saves/geobench/results.json").read_text())["tasks"]["geobench_npee"]["scored"] == 8


# ByteLevel BPE (GPT-2 layout: Llama-3, Qwen2, SmolLM2, Mistral-Nemo), built here with `tokenizers`.

LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def _byte_level_model(target: Path, layout: str) -> Path:
    """A 1,024-piece ByteLevel BPE tokenizer (no byte fallback) trained on the general demo corpus, and a tiny
    Llama with tied embeddings.

    ``gpt2``: the ByteLevel pre-tokenizer's own regex, special tokens first in the vocabulary, `GPT2Tokenizer`
    (GPT-2, SmolLM2). ``llama3``: NFC, Llama-3's split regex then ByteLevel, ``ignore_merges``, and special tokens
    added after the BPE vocabulary with a BOS template (Llama-3's `<|begin_of_text|>` is id 128000).
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import GPT2Tokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(ignore_merges=layout == "llama3"))
    if layout == "gpt2":
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        backend.normalizer = normalizers.NFC()
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"] if layout == "gpt2" else [],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(demo_texts(("general_corpus.jsonl",)), trainer)
    if layout == "gpt2":
        merges = [tuple(m) for m in json.loads(backend.to_str())["model"]["merges"]]
        tokenizer = GPT2Tokenizer(
            vocab=backend.get_vocab(), merges=merges, eos_token="<|im_end|>", unk_token="<|endoftext|>"
        )
        tokenizer.add_special_tokens({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"})
    else:
        bos, eot = "<|begin_of_text|>", "<|eot_id|>"
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (bos, eot)])
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, backend.token_to_id(bos))]
        )
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eot)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module", params=["gpt2", "llama3"])
def byte_level(request, tmp_path_factory, cli_env) -> tuple[Path, Path]:
    """A ByteLevel model and its expansion by 300 tokens on the mixed texts and both demo corpora."""
    work = tmp_path_factory.mktemp(f"byte-level-{request.param}")
    base = _byte_level_model(work / "base", request.param)
    _mixed_registry(work)
    args = ("--dataset", "mixed_demo,geo_corpus_demo,general_corpus_demo", "--vocab-size", ADDED)
    run_geo_factory("expand-vocab", "--model", base, *args, "--output", "out", cwd=work, env=cli_env)
    return base, work / "out"


def test_byte_level_expansion_keeps_every_promise(byte_level) -> None:
    base_dir, new_dir = byte_level
    spec = json.loads((new_dir / "tokenizer.json").read_text())
    assert not spec["model"]["byte_fallback"] and len(_record(new_dir)["pieces"]) == ADDED
    base, new, pieces = _check_promises(base_dir, new_dir)
    if base.bos_token == "<|begin_of_text|>":  # added after the BPE vocabulary: still there, still prepended
        assert new.encode("地震")[0] == base.bos_token_id == 1024 and new.convert_ids_to_tokens(1025) == "<|eot_id|>"
    texts = {new.convert_tokens_to_string([p]) for p in pieces}
    for char in ("🌋", "锆", "𠀀"):  # each spelt in 2 to 4 byte pieces by the base
        assert any(char in t for t in texts), f"no new token holds {char}, which the base spells in bytes"
    assert any(len(t) >= 5 and t.strip().isalpha() and t.isascii() for t in texts), "and whole English words"
    assert any(i >= len(base) for i in new.encode(PROBES[6], add_special_tokens=False))


def test_byte_level_prepared_rows_with_tied_embeddings(byte_level) -> None:
    base_dir, new_dir = byte_level
    base = AutoTokenizer.from_pretrained(base_dir)
    _check_prepared_tied_rows(base_dir, new_dir, base, _record(new_dir)["pieces"])
    umask = os.umask(0)
    os.umask(umask)
    assert {(f.name, f.stat().st_mode & 0o777) for f in new_dir.iterdir()} == {
        (f.name, 0o666 & ~umask) for f in new_dir.iterdir()
    }, "the weights must be as readable as the rest of the folder"


# SmolLM2-135M-Instruct's own tokenizer (ByteLevel, digits split one by one, tied embeddings).


@pytest.mark.real_model
@pytest.mark.slow
def test_smollm2_tspt_stage0_keeps_every_promise_then_trains_and_exports(smol_model: Path, tmp_path, cli_env) -> None:
    """The documented path on a ByteLevel model: stage 0 (the expansion ``expand-vocab`` makes, on the mixed texts
    and both demo corpora), one step of each stage (the first on the mixed texts, full of new pieces: their rows
    train), export on stage 0."""
    _mixed_registry(tmp_path)
    (tmp_path / "train.yaml").write_text(
        f"model_name_or_path: {smol_model}\ntemplate: smollm2\nstage: tspt\ndo_train: true\nfinetuning_type: lora\n"
        "lora_rank: 4\nlora_target: q_proj,v_proj\ntspt_vocab_corpus: mixed_demo,geo_corpus_demo,general_corpus_demo\n"
        f"tspt_vocab_size: {ADDED}\ntspt_stage1_dataset: mixed_demo\ntspt_stage1_mix: 1.0\n"
        "tspt_stage1_tokens: 128\ntspt_stage2_dataset: geo_corpus_demo\ntspt_stage2_mix: 1.0\ntspt_stage2_tokens: 128\n"
        "cutoff_len: 64\noverwrite_cache: true\npreprocessing_num_workers: null\ndataloader_num_workers: 0\n"
        "output_dir: saves/smol_vocab\nlogging_steps: 1\nsave_steps: 100\nreport_to: none\n"
        "per_device_train_batch_size: 2\nlearning_rate: 1.0e-3\nseed: 42\n"
    )
    run_cli("train", tmp_path / "train.yaml", cwd=tmp_path, env=cli_env)
    out = tmp_path / "saves/smol_vocab"
    stage0 = out / "stage0"
    assert _record(stage0)["added"] == ADDED and _record(stage0)["base_vocab_size"] == 49152
    base, new, pieces = _check_promises(smol_model, stage0)
    assert len(pieces) == ADDED and len(base) == 49152
    assert new.tokenize("2024") == ["2", "0", "2", "4"], "the base pre-tokenizer is kept"
    _check_prepared_tied_rows(smol_model, stage0, base, pieces)
    assert all(losses(out / stage) for stage in ("stage1", "stage2"))
    assert {"embed_tokens", "lm_head"} <= set(json.loads((out / "adapter_config.json").read_text())["modules_to_save"])

    (tmp_path / "merge.yaml").write_text(
        f"model_name_or_path: {stage0}\nadapter_name_or_path: {out}\ntemplate: smollm2\n"
        "export_dir: saves/merged\nexport_size: 1\nexport_device: cpu\nexport_legacy_format: false\n"
    )
    run_cli("export", tmp_path / "merge.yaml", cwd=tmp_path, env=cli_env)
    merged = tmp_path / "saves/merged"
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(stage0).get_vocab()
    text = "俯冲带把大洋岩石圈带回地幔 🌋 subduction"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    trained = next(
        v for k, v in load_file(out / "adapter_model.safetensors").items() if k.endswith("embed_tokens.weight")
    )
    rows = load_file(merged / "model.safetensors")["model.embed_tokens.weight"]
    new_rows = slice(49152, 49152 + ADDED)
    assert torch.equal(rows[new_rows], trained[new_rows]), "the merged model has the trained new rows"
    assert not torch.equal(
        rows[new_rows], load_file(stage0 / "model.safetensors")["model.embed_tokens.weight"][new_rows]
    )
