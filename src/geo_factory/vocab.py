"""Domain vocabulary expansion with PreparedLLM's embedding initialization: TSPT's stage 0.

A general base tokenizer spells a geoscience term in many pieces ("▁sed" "im" "ent" "ary"), and a
Chinese character it lacks in three byte-fallback pieces. Stage 0 continues the base tokenizer's own
BPE training on the domain corpora and appends what it learns:

* the corpus is split into words the way the base tokenizer splits it, and each word is written as
  its *base* segmentation, one symbol per base token (a character the base lacks, spelt in bytes,
  is one symbol of its own, since no piece may end inside a character);
* ``tokenizers``' BPE trainer learns merges over those symbols: each one joins two tokens that the
  expanded tokenizer really has side by side at that point of a word, because new merges rank
  after all base merges, so the base merges finish first and the new ones then run in trainer order;
* the candidates (missing characters, merged pieces) are ranked by the tokens they save on the
  corpus, and the best ``vocab_size`` are added together with the pieces they are built from;
  pieces the base vocabulary already has are never added.

A ByteLevel BPE tokenizer (GPT-2 layout: Llama-3, Qwen2, SmolLM2, Mistral-Nemo) needs no byte
fallback: its words are written in a 256-symbol byte alphabet that its vocabulary holds whole, so a
character it spells in bytes is merged like anything else (a piece may end inside a character, as
many base pieces do), and a new piece is a string of that alphabet.

Base ids and base merges are untouched and new ids come after the last one, so every weight keeps
its meaning, general text encodes as before or shorter, and the base decoder decodes new pieces
(plain strings) like any other. New embedding rows start as the mean of the base rows of the pieces
that spell the token (``prepared``, PreparedLLM's), the mean of all rows (``mean``) or at random.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamafactory.extras import logging
from tqdm import tqdm

from .datasets import check_dataset_names, reject_repeated
from .extras import save_pretrained


if TYPE_CHECKING:
    from llamafactory.hparams import DataArguments, ModelArguments, TrainingArguments
    from tokenizers import Tokenizer
    from transformers import PreTrainedModel

    from .hparams import TsptArguments


logger = logging.get_logger(f"llamafactory.{__name__}")  # under LLaMA-Factory's root: its format and log file

INIT_METHODS = ("prepared", "mean", "random")
STAGE_KEYS = ("tspt_vocab_corpus", "tspt_vocab_size", "tspt_vocab_init")
RECORD = "vocab_expansion.json"  # written last: a folder that has it holds a finished expansion
MAX_CORPUS_CHARS = 10**9  # per dataset: plenty for vocabulary statistics, and a bound on streamed corpora
_SYMBOL = 0x10000  # trainer symbol of token id i: chr(_SYMBOL + i), never whitespace nor a surrogate
_WORD = re.compile("(?=\u2581)")  # a word starts at each metaspace, as Metaspace(split=True) splits
_BYTE_PIECE = re.compile(r"<0x([0-9A-F]{2})>")
_SAMPLE_TEXTS = 64  # corpus texts kept to check the written tokenizer against the base one


def check_expansion_args(
    corpus: str | list[str] | None,
    vocab_size: int | None,
    init: str,
    dataset_dir: str,
    keys: tuple[str, str, str] = STAGE_KEYS,
) -> list[str]:
    """The corpus names, once every setting is valid; ``keys`` name the settings in the errors."""
    corpus_key, size_key, init_key = keys
    names = [n.strip() for n in corpus.split(",") if n.strip()] if isinstance(corpus, str) else list(corpus or [])
    if not names:
        raise ValueError(f"`{corpus_key}` needs at least one registry dataset name.")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= 0:
        raise ValueError(f"`{size_key}` must be a positive number of new tokens; got `{vocab_size}`.")
    if init not in INIT_METHODS:
        raise ValueError(f"`{init_key}: {init}` is not supported; allowed: {', '.join(INIT_METHODS)}.")
    reject_repeated(names, corpus_key, "name each corpus once.")
    check_dataset_names(names, dataset_dir, key=corpus_key)
    return names


def run_stage0(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    tspt_args: TsptArguments,
    stage0_dir: str | Path,
) -> Path:
    """TSPT stage 0: the expanded model and tokenizer that stages 1 and 2 start from.

    Rank 0 (of each node with ``save_on_each_node``) does the work while the others wait; they then
    find it finished. A finished ``stage0_dir`` with the same settings is reused as it is.
    """
    names = check_expansion_args(
        tspt_args.tspt_vocab_corpus, tspt_args.tspt_vocab_size, tspt_args.tspt_vocab_init, data_args.dataset_dir
    )
    if model_args.adapter_name_or_path is not None:
        raise ValueError(
            "`tspt_vocab_corpus` cannot start from `adapter_name_or_path`: the adapter belongs to the unexpanded "
            "model. Merge it first (`llamafactory-cli export`) and set `model_name_or_path` to the merged model."
        )
    with training_args.main_process_first(desc="vocabulary expansion", local=training_args.save_on_each_node):
        return expand_vocabulary(
            model_args,
            data_args,
            names,
            tspt_args.tspt_vocab_size,
            tspt_args.tspt_vocab_init,
            Path(stage0_dir),
            overwrite=getattr(training_args, "overwrite_output_dir", False),
            seed=training_args.seed,
            keys=STAGE_KEYS,
            training_args=training_args,
        )


def expand_command(
    model: str,
    dataset: str,
    vocab_size: int,
    init: str,
    output: str | Path,
    dataset_dir: str = "data",
    streaming: bool = False,
    max_chars: int | None = None,
    trust_remote_code: bool = False,
    overwrite: bool = False,
    seed: int = 42,
) -> Path:
    """``geo-factory expand-vocab``: LLaMA-Factory's arguments from the command line, then stage 0's path."""
    from llamafactory.hparams import DataArguments, ModelArguments, TrainingArguments

    keys = ("--dataset", "--vocab-size", "--init")
    names = check_expansion_args(dataset, vocab_size, init, dataset_dir, keys=keys)
    max_chars = MAX_CORPUS_CHARS if max_chars is None else max_chars
    if max_chars <= 0:
        raise ValueError(f"`--max-chars` must be positive; got `{max_chars}`.")
    model_args = ModelArguments(model_name_or_path=model, trust_remote_code=trust_remote_code)
    data_args = DataArguments(dataset=dataset, dataset_dir=dataset_dir, streaming=streaming)
    training_args = TrainingArguments(output_dir=str(output), seed=seed, report_to="none")
    return expand_vocabulary(
        model_args, data_args, names, vocab_size, init, Path(output), overwrite, seed, keys, training_args, max_chars
    )


def expand_vocabulary(
    model_args: ModelArguments,
    data_args: DataArguments,
    names: list[str],
    vocab_size: int,
    init: str,
    output_dir: Path,
    overwrite: bool,
    seed: int,
    keys: tuple[str, str, str],
    training_args: TrainingArguments,
    max_chars: int = MAX_CORPUS_CHARS,
) -> Path:
    """Learn up to ``vocab_size`` new pieces on ``names``, resize and initialize, write ``output_dir`` atomically."""
    settings = {
        "model": model_args.model_name_or_path,
        "corpus": names,
        "vocab_size": vocab_size,
        "init": init,
        "max_chars": max_chars,
        "seed": seed if init == "random" else None,  # only random rows depend on it
    }
    done = _finished_settings(output_dir)
    if done is not None and {k: done.get(k) for k in settings} == settings:
        logger.info_rank0(f"Vocabulary expansion found finished in {output_dir}; reusing it.")
        return output_dir
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        changed = [k for k in settings if done is not None and done.get(k) != settings[k]]
        what = f"an expansion made with other {', '.join(changed)}" if changed else "other files"
        flag = "overwrite_output_dir: true" if keys == STAGE_KEYS else "--overwrite"
        raise ValueError(f"{output_dir} already holds {what}; set `{flag}` to replace it, or remove it.")

    from llamafactory.model.loader import _get_init_kwargs
    from transformers import AutoModelForCausalLM, AutoTokenizer

    init_kwargs = _get_init_kwargs(model_args)  # LLaMA-Factory's hub, revision, token, trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, **init_kwargs)
    if not tokenizer.is_fast:
        raise ValueError(
            f"Vocabulary expansion needs a `tokenizers` tokenizer (tokenizer.json); {model_args.model_name_or_path} has none."
        )
    expansion = VocabExpansion(tokenizer.backend_tokenizer)  # fails on an unsupported tokenizer before reading data
    sample: list[str] = []
    texts = corpus_texts(names, model_args, data_args, training_args, max_chars)
    expansion.learn(_keep_sample(texts, sample), vocab_size)
    if not expansion.pieces:
        raise ValueError(f"`{keys[0]}` gave no piece worth adding to the vocabulary (is the corpus empty?).")

    for stale in output_dir.parent.glob(f".{output_dir.name}.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp_dir = output_dir.parent / f".{output_dir.name}.tmp-{os.getpid()}"
    tmp_dir.mkdir(parents=True)
    _save_tokenizer(tokenizer, expansion.backend, tmp_dir)
    new_tokenizer = AutoTokenizer.from_pretrained(tmp_dir, **init_kwargs)
    expansion.check(tokenizer, new_tokenizer, sample)

    with _outside_zero3(training_args):
        model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, dtype="auto", **init_kwargs)
        init_embeddings(model, expansion.spellings(), expansion.first_id, init, seed)
        save_pretrained(tmp_dir, model)  # safetensors alone would write the weights 0600
    record = {**settings, **expansion.summary(), "embedding_rows": model.get_input_embeddings().weight.size(0)}
    with open(tmp_dir / RECORD, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False, indent=2)

    if output_dir.exists():
        shutil.rmtree(output_dir)
    os.rename(tmp_dir, output_dir)
    logger.info_rank0(
        f"Added {record['added']} tokens ({record['base_vocab_size']} -> {record['vocab_size_after']}); corpus "
        f"tokens {record['corpus_tokens_before']} -> {record['corpus_tokens_after']}; model written to {output_dir}."
    )
    return output_dir


@contextmanager
def _outside_zero3(training_args: TrainingArguments) -> Iterator[None]:
    """One rank works alone here, so ZeRO-3's partitioned loading (a collective) would wait forever."""
    hf_config = getattr(training_args, "hf_deepspeed_config", None)
    if hf_config is None:
        yield
        return
    from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        set_hf_deepspeed_config(hf_config)


def _finished_settings(output_dir: Path) -> dict[str, Any] | None:
    try:
        with open(output_dir / RECORD, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _keep_sample(texts: Iterable[str], sample: list[str]) -> Iterator[str]:
    for text in texts:
        if len(sample) < _SAMPLE_TEXTS:
            sample.append(text[:2000])
        yield text


def corpus_texts(
    names: list[str],
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    max_chars: int = MAX_CORPUS_CHARS,
) -> Iterator[str]:
    """Each dataset's pretraining text as ``stage: pt`` loads it (registry, hub, files, streaming)."""
    from llamafactory.data.loader import _get_merged_dataset

    if data_args.streaming and training_args.dataloader_num_workers == 0:
        # LLaMA-Factory streams a local file in `dataloader_num_workers` shards: 0 would give an empty stream
        training_args = copy.copy(training_args)
        training_args.dataloader_num_workers = 1
    datasets = _get_merged_dataset(names, model_args, data_args, training_args, stage="pt", return_dict=True)
    for dataset in datasets.values():
        budget = max_chars
        for example in dataset:
            text = example["_prompt"][0]["content"] if example["_prompt"] else ""
            if text:
                yield text[:budget]
                budget -= len(text)
                if budget <= 0:
                    break


class VocabExpansion:
    """New pieces and merges for a byte-fallback or ByteLevel BPE tokenizer, learned as a continuation of its training."""

    def __init__(self, backend: Tokenizer) -> None:
        self.base = backend
        self.spec = json.loads(backend.to_str())
        model = self.spec["model"]
        self.byte_level = has_byte_level(self.spec.get("pre_tokenizer"))
        if model.get("type") != "BPE" or not (model.get("byte_fallback") or self.byte_level):
            raise ValueError(
                "Vocabulary expansion needs a BPE tokenizer that can spell any text: with byte fallback (LLaMA/Mistral "
                "layout) or a ByteLevel pre-tokenizer (GPT-2 layout: Llama-3, Qwen2, SmolLM2); this one has a "
                f"{model.get('type')} model with byte_fallback={model.get('byte_fallback', False)} and no ByteLevel "
                "pre-tokenizer."
            )
        if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            raise ValueError("Vocabulary expansion does not support BPE subword prefixes or word suffixes.")
        self.vocab: dict[str, int] = model["vocab"]
        self.first_id = max(backend.get_vocab(with_added_tokens=True).values()) + 1
        self.byte_ids = {i: int(m.group(1), 16) for p, i in self.vocab.items() if (m := _BYTE_PIECE.fullmatch(p))}
        self.text: dict[str, str] = {}  # trainer symbol -> what it spells
        self.char_count: Counter[str] = Counter()  # symbol of a character the base lacks -> occurrences
        self.pieces: list[str] = []
        self.merges: list[tuple[str, str]] = []
        self.backend = backend
        self.tokens_before = self.tokens_after = 0

    def learn(self, texts: Iterable[str], vocab_size: int) -> None:
        """Choose up to ``vocab_size`` pieces on ``texts``; afterwards ``backend`` is the expanded tokenizer."""
        words = self._count_words(texts)
        symbol_words = self._symbol_words(words)
        n_merges = 2 * vocab_size  # room for candidates that are skipped or cost nothing
        while True:
            trainer_merges, uses = _continue_bpe(symbol_words, n_merges)
            self._choose(trainer_merges, uses, vocab_size)
            if len(self.pieces) >= vocab_size or len(trainer_merges) < n_merges:
                break
            n_merges *= 2
        self.backend = self._expanded_backend()
        self.tokens_after = sum(len(self.backend.model.tokenize(w)) * n for w, n in words.items())

    def _count_words(self, texts: Iterable[str]) -> Counter[str]:
        """Words as the base tokenizer sees them: normalized, pre-tokenized, split before each metaspace.

        A ByteLevel pre-tokenizer has split the text into words already, each written in its byte alphabet.
        """
        normalizer, pre_tokenizer = self.base.normalizer, self.base.pre_tokenizer
        words: Counter[str] = Counter()
        with tqdm(desc="Reading the vocabulary corpus", unit="char", unit_scale=True) as bar:  # the one long pass
            for text in texts:
                bar.update(len(text))
                if normalizer is not None:
                    text = normalizer.normalize_str(text)
                parts = [p for p, _ in pre_tokenizer.pre_tokenize_str(text)] if pre_tokenizer is not None else [text]
                for part in parts:
                    words.update([part] if self.byte_level else (w for w in _WORD.split(part) if w))
        return words

    def _symbol_words(self, words: Counter[str]) -> Counter[str]:
        """Each word as its base segmentation, one symbol per token, a byte-fallback character as one symbol."""
        char_symbol: dict[str, str] = {}
        symbol_words: Counter[str] = Counter()
        for word, count in words.items():
            symbols, pending = [], bytearray()
            tokens = self.base.model.tokenize(word)
            self.tokens_before += len(tokens) * count
            for token in [*tokens, None]:
                if token is not None and token.id in self.byte_ids:
                    pending.append(self.byte_ids[token.id])
                    continue
                for char in pending.decode("utf-8"):  # byte pieces only ever spell whole characters
                    if char not in char_symbol:
                        char_symbol[char] = chr(_SYMBOL + self.first_id + len(char_symbol))
                        self.text[char_symbol[char]] = char
                    symbols.append(char_symbol[char])
                    self.char_count[char_symbol[char]] += count
                pending.clear()
                if token is not None:
                    symbol = chr(_SYMBOL + token.id)
                    self.text[symbol] = token.value
                    symbols.append(symbol)
            symbol_words["".join(symbols)] += count
        return symbol_words

    def _spell(self, token: str) -> str:
        return "".join(self.text[s] for s in token)

    def _choose(self, merges: list[tuple[str, str]], uses: Counter[str], limit: int) -> None:
        """The ``limit`` most token-saving candidates, each with what it is built from; then their merges."""
        first_merge: dict[str, tuple[str, str]] = {}
        for a, b in merges:
            first_merge.setdefault(a + b, (a, b))
        saved = Counter(uses)  # tokens a merge saves = times its result is made: used, or consumed by a later merge
        for token in reversed(first_merge):
            for part in first_merge[token]:
                saved[part] += saved[token]
        value = {t: saved[t] for t in first_merge}
        value.update({c: n * (len(self.text[c].encode()) - 1) for c, n in self.char_count.items()})
        order = dict.fromkeys(self.char_count, -1) | {t: i for i, t in enumerate(first_merge)}

        chosen: dict[str, None] = {}  # new pieces, as text, in the order they are added

        def needs(token: str, need: dict[str, None]) -> bool:
            """Add to ``need`` what ``token`` takes that is not there yet; False if it cannot be added."""
            text = self._spell(token)
            if text in chosen or token in need or (len(token) == 1 and token not in self.char_count):
                return True
            if token not in self.char_count:
                if text in self.vocab:  # the base has it, produced by other merges: never add it twice
                    return False
                a, b = first_merge[token]
                if not (needs(a, need) and needs(b, need)):
                    return False
            need[token] = None
            return True

        for token in sorted(value, key=lambda t: (-value[t], order[t])):
            if len(chosen) >= limit or value[token] < 2:
                break
            need: dict[str, None] = {}
            if needs(token, need):
                new = dict.fromkeys(t for t in map(self._spell, need) if t not in chosen)
                if len(chosen) + len(new) <= limit:
                    chosen.update(new)

        def available(token: str) -> bool:
            text = self._spell(token)
            return text in chosen or (text in self.vocab and len(token) == 1)

        self.pieces = list(chosen)
        self.merges = list(
            dict.fromkeys(
                (self._spell(a), self._spell(b))
                for a, b in merges
                if self._spell(a + b) in chosen and available(a) and available(b)
            )
        )

    def _expanded_backend(self) -> Tokenizer:
        from tokenizers import Tokenizer

        spec = json.loads(json.dumps(self.spec))
        model = spec["model"]
        model["vocab"].update({piece: self.first_id + i for i, piece in enumerate(self.pieces)})
        for added in spec["added_tokens"]:  # e.g. a `<pad>` after the BPE vocabulary: `from_str` would renumber it
            model["vocab"].setdefault(added["content"], added["id"])
        base_merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
        model["merges"] = base_merges + [list(m) for m in self.merges]
        return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))

    def spellings(self) -> list[list[int]]:
        """For each new token, the base ids that spell it (byte pieces for a missing character)."""
        return [[t.id for t in self.base.model.tokenize(piece)] for piece in self.pieces]

    def check(self, base: Any, expanded: Any, sample: list[str]) -> None:
        """Guard against a tokenizer class that rebuilds the backend on load and loses the expansion."""
        vocab = expanded.get_vocab()
        lost = [p for p, i in self.vocab.items() if vocab.get(p) != i]
        lost += [p for i, p in enumerate(self.pieces) if vocab.get(p) != self.first_id + i]
        lost += [t.content for i, t in base.added_tokens_decoder.items() if vocab.get(t.content) != i]
        if lost:
            raise RuntimeError(f"The saved tokenizer does not keep the ids of {len(lost)} pieces, e.g. {lost[:5]}.")
        for text in sample:
            old, new = base.encode(text, add_special_tokens=False), expanded.encode(text, add_special_tokens=False)
            if expanded.decode(new) != base.decode(old) or len(new) > len(old):
                raise RuntimeError(f"The saved tokenizer encodes {text[:80]!r} differently from the base tokenizer.")

    def summary(self) -> dict[str, Any]:
        return {
            "added": len(self.pieces),
            "merges_added": len(self.merges),
            "base_vocab_size": self.first_id,
            "vocab_size_after": self.first_id + len(self.pieces),
            "corpus_tokens_before": self.tokens_before,
            "corpus_tokens_after": self.tokens_after,
            "pieces": self.pieces,
        }


def has_byte_level(pre_tokenizer: dict[str, Any] | None) -> bool:
    """Whether the pre-tokenizer (or one in its sequence) maps text to the 256-symbol byte alphabet."""
    if not pre_tokenizer:
        return False
    return pre_tokenizer.get("type") == "ByteLevel" or any(map(has_byte_level, pre_tokenizer.get("pretokenizers", [])))


def _continue_bpe(words: Counter[str], n_merges: int) -> tuple[list[tuple[str, str]], Counter[str]]:
    """``tokenizers``' BPE trainer over the symbol words: its merges, and how often each token is used."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    alphabet = {s for word in words for s in word}
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + n_merges, min_frequency=2, show_progress=False)
    tokenizer.train_from_iterator(_repeat(words), trainer)
    merges = [tuple(m) for m in json.loads(tokenizer.to_str())["model"]["merges"]]
    uses: Counter[str] = Counter()
    items = list(words.items())
    for start in range(0, len(items), 10_000):
        batch = items[start : start + 10_000]
        for encoding, (_, count) in zip(tokenizer.encode_batch([w for w, _ in batch]), batch):
            for token in encoding.tokens:
                uses[token] += count
    return merges, uses


def _repeat(words: Counter[str], chunk: int = 4096) -> Iterator[str]:
    """The symbol words with their counts, as whitespace-separated text for the trainer."""
    for word, count in words.items():
        for start in range(0, count, chunk):
            yield " ".join([word] * min(chunk, count - start))


def init_embeddings(
    model: PreTrainedModel, spellings: list[list[int]], first_id: int, init: str, seed: int = 42
) -> None:
    """Resize to ``first_id + len(spellings)`` tokens and initialize the new input and output rows.

    ``prepared``: the mean of the base rows of the pieces that spell the token (PreparedLLM), so the
    model reads and predicts the new token roughly as it did its spelling; ``mean``: the mean of all
    base rows; ``random``: normal with the model's ``initializer_range``, as a fresh model would.
    Rows that a resize adds only to pad the matrix to a multiple of 64 (as LLaMA-Factory resizes) get the mean.
    """
    import torch

    n_new, total = len(spellings), first_id + len(spellings)
    old_rows = model.get_input_embeddings().weight.size(0)
    if total > old_rows:
        model.resize_token_embeddings(total, pad_to_multiple_of=64, mean_resizing=False)
    weights = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not weights[0]:
        weights.append(output.weight)

    generator = torch.Generator().manual_seed(seed)
    std = getattr(model.config.get_text_config(), "initializer_range", 0.02)
    with torch.no_grad():
        for weight in weights:
            base = weight[:first_id].float()
            mean = base.mean(dim=0)
            if init == "prepared":
                rows = torch.stack([base[ids].mean(dim=0) for ids in spellings])
            elif init == "mean":
                rows = mean.expand(n_new, -1)
            else:
                rows = torch.randn(n_new, base.size(1), generator=generator) * std
            weight[first_id:total] = rows.to(weight.dtype)
            if total > old_rows:
                weight[total:] = mean.to(weight.dtype)


def _save_tokenizer(tokenizer: Any, backend: Tokenizer, save_dir: Path) -> None:
    """The base tokenizer's files with the expanded ``tokenizer.json``.

    A sentencepiece ``tokenizer.model`` is not written: it would load without the new pieces.
    """
    tokenizer.save_pretrained(save_dir)
    backend.save(str(save_dir / "tokenizer.json"))
    (save_dir / "tokenizer.model").unlink(missing_ok=True)
