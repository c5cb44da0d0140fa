"""A tiny Mistral-architecture base model with a real byte-fallback BPE tokenizer, built offline.

The demo and the tests run the real LLaMA-Factory pipeline on it: no weights are downloaded.
Like a real general base model, it is trained on *general* text only (the bundled general corpus):
its tokenizer, so that geoscience text is where vocabulary expansion has something to gain, and
its weights, briefly, because LoRA on a randomly initialized model cannot move its frozen output
layer enough to show learning.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .datasets import registry_dir
from .extras import save_pretrained


SPECIALS = ("<unk>", "<s>", "</s>")
METASPACE = "\u2581"


DEMO_CORPORA = ("geo_corpus.jsonl", "general_corpus.jsonl")


def demo_texts(names: tuple[str, ...] = DEMO_CORPORA) -> Iterator[str]:
    """The texts of bundled demo corpora (``data/demo/<name>``): the tiny model's, the benchmarks' and the tests'."""
    for name in names:
        with open(registry_dir() / "demo" / name, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)["text"]


def train_tokenizer(texts: Iterator[str], vocab_size: int):
    """LLaMA/Mistral layout: <unk> <s> </s>, then the 256 byte-fallback pieces <0x00>..<0xFF>, then BPE pieces."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    pre = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="first", split=True)
    probe = Tokenizer(models.BPE(unk_token="<unk>"))
    probe.pre_tokenizer = pre
    n_pieces = vocab_size - len(SPECIALS) - 256
    probe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=n_pieces, show_progress=False))
    trained = json.loads(probe.to_str())["model"]

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({f"<0x{b:02X}>": len(SPECIALS) + b for b in range(256)})
    for piece, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))

    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.pre_tokenizer = pre
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace(METASPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return tokenizer


def pretrain(model, tokenizer, texts: list[str], steps: int, block: int = 128, batch: int = 16) -> None:
    """Plain causal-LM training on packed blocks: a general base model in seconds (also used by benchmarks)."""
    import torch

    ids = [i for text in texts for i in [*tokenizer(text)["input_ids"], tokenizer.eos_token_id]]
    blocks = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(steps):
        batch_ids = blocks[torch.randint(len(blocks), (batch,))]
        model(input_ids=batch_ids, labels=batch_ids).loss.backward()
        optimizer.step(), schedule.step(), optimizer.zero_grad()
    model.eval()


def build_tiny_model(
    output_dir: str | Path,
    vocab_size: int = 2048,
    hidden_size: int = 128,
    num_layers: int = 2,
    pretrain_steps: int = 150,
    seed: int = 0,
    corpora: tuple[str, ...] = ("general_corpus.jsonl",),
) -> Path:
    """Write the tiny Mistral, pretrained for ``pretrain_steps`` on the general corpus, and its tokenizer."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    output_dir = Path(output_dir)
    texts = list(demo_texts(corpora))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(iter(texts), vocab_size),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=4096,
    )
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=4096,
        sliding_window=None,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = MistralForCausalLM(config)
    threads = torch.get_num_threads()
    # One thread: the same weights on any machine (threaded sums round by the core count, and the tests' greedy
    # answers follow the weights), and faster beside another busy process (105 s -> 23 s on 2 cores).
    torch.set_num_threads(1)
    try:
        if pretrain_steps:
            pretrain(model, tokenizer, texts, pretrain_steps)
    finally:
        torch.set_num_threads(threads)
    save_pretrained(output_dir, model, tokenizer)
    return output_dir
