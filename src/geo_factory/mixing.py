"""Token-share mixtures of datasets: ``mix_strategy: interleave_tokens`` in ``pt`` and ``sft``, and TSPT's stages.

LLaMA-Factory mixes by examples: ``interleave_probs`` draws documents, so a source of long documents gets far more
tokens than its probability says, and every epoch repeats one order. Here ``interleave_probs`` are shares of the
tokens the model trains on: the labels its loss counts (in ``sft`` the supervised tokens; in ``pt`` every token
but padding, which the collator masks).

- Each dataset is loaded and preprocessed on its own by LLaMA-Factory's processor for the stage (packed or not),
  so each training row belongs to one dataset, and its trained tokens are counted from its labels once.
- :func:`token_schedule` orders the rows: the next one comes from the dataset furthest below its share of the
  tokens so far (smooth weighted round-robin), so at every prefix of the stream each dataset is within about one row
  (the longest) of its share; with equal rows, within one. TSPT's packed blocks are that case
  (:func:`mixture_schedule`).
- :class:`TokenMixture` is the train set: an epoch has as many rows as all datasets together (as ``concat`` has, so
  ``num_train_epochs`` and ``max_steps`` keep their meaning), each dataset's rows in an order drawn from ``seed``,
  the epoch and the dataset; a dataset too small for its share is repeated (reshuffled each pass), a larger one
  subsampled. The trainer reads it in order (``disable_shuffling``), so resuming a checkpoint skips exactly the rows
  trained on and continues the same stream.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import concatenate_datasets
from llamafactory.data.loader import _get_preprocessed_dataset, _load_single_dataset
from llamafactory.data.parser import get_dataset_list
from llamafactory.extras import logging
from llamafactory.extras.constants import IGNORE_INDEX

from .hparams.tspt_args import global_batch


if TYPE_CHECKING:
    from datasets import Dataset
    from llamafactory.data import Template
    from llamafactory.data.data_utils import DatasetModule
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import PreTrainedTokenizer, ProcessorMixin, Seq2SeqTrainingArguments


logger = logging.get_logger(f"llamafactory.{__name__}")  # under LLaMA-Factory's logger: its format and verbosity

SOURCE_COLUMN = "mix_source"  # each row's dataset (its index in the mixture), read by geo_factory.source_loss


def token_schedule(
    shares: list[float], rows: int, draws: list[Iterator[tuple[Any, int]]]
) -> Iterator[tuple[int, Any]]:
    """``rows`` rows as (dataset, row): each from the dataset furthest below its share of the trained tokens,
    counting the row it would add (ties: the first listed).

    ``draws``: per dataset, its rows in the order they are taken, each with its trained tokens.
    """
    heads = [next(draw) for draw in draws]
    counts, total, order = [0] * len(shares), 0, range(len(shares))
    for _ in range(rows):
        i = max(order, key=lambda j: (shares[j] * (total + heads[j][1]) - counts[j], -j))
        row, tokens = heads[i]
        counts[i] += tokens
        total += tokens
        heads[i] = next(draws[i])
        yield i, row


def mixture_schedule(shares: list[float], blocks: int) -> Iterator[int]:
    """The dataset of each of ``blocks`` equal blocks (TSPT's packed blocks): after n blocks each dataset has within
    one block of ``n * share``."""
    draws = [itertools.repeat((None, 1)) for _ in shares]
    return (i for i, _ in token_schedule(shares, blocks, draws))


def trained_tokens(dataset: Dataset, stage: str, pad_token_id: int | None) -> np.ndarray:
    """Per row, the tokens its loss counts: its labels after the one-token shift of causal language modelling.

    ``sft`` rows carry their labels; ``pt`` labels are the input ids with padding masked by the collator (the pad
    token is often the end-of-text token, which packed blocks hold). Read in Arrow batches: memory is one batch.
    """
    column, ignore = ("labels", IGNORE_INDEX) if stage == "sft" else ("input_ids", pad_token_id)
    counts = []
    for table in dataset.select_columns([column]).with_format("arrow").iter(batch_size=10_000):
        lists = table.column(column).combine_chunks()
        lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        values = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
        keep = np.ones(len(values), dtype=bool) if ignore is None else values != ignore
        keep[(np.cumsum(lengths) - lengths)[lengths > 0]] = False  # a row's first token is predicted by nothing
        rows = np.repeat(np.arange(len(lengths)), lengths)
        counts.append(np.bincount(rows[keep], minlength=len(lengths)))
    return np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)


class TokenMixture(torch.utils.data.Dataset):
    """The train set of a token-share mixture: one epoch's order per ``set_epoch`` (the dataloader calls it)."""

    def __init__(
        self, sources: list[Dataset], tokens: list[np.ndarray], names: list[str], shares: list[float], seed: int
    ) -> None:
        for name, source in zip(names, sources):
            if len(source) == 0:
                raise ValueError(f"`{name}` has no example left after preprocessing: add data to it or remove it.")
        self.data = concatenate_datasets(sources)
        self.offsets = np.cumsum([0] + [len(source) for source in sources[:-1]])
        self.tokens, self.names, self.shares, self.seed = tokens, names, shares, seed
        self.epoch, self._plans = 0, {}

    def __len__(self) -> int:
        return len(self.data)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's rows (indices into the concatenated datasets) and each row's dataset."""
        if epoch not in self._plans:
            schedule = token_schedule(self.shares, len(self), [self._draws(epoch, j) for j in range(len(self.names))])
            pairs = np.fromiter(itertools.chain.from_iterable(schedule), dtype=np.int64, count=2 * len(self))
            self._plans = {epoch: (pairs[1::2], pairs[0::2])}  # one epoch at a time: memory stays one plan
        return self._plans[epoch]

    def _draws(self, epoch: int, j: int) -> Iterator[tuple[int, int]]:
        """Endless passes over dataset ``j``, reshuffled each pass."""
        rng, tokens, offset = np.random.default_rng([self.seed, epoch, j]), self.tokens[j], int(self.offsets[j])
        while True:
            for row in rng.permutation(len(tokens)):
                yield offset + int(row), int(tokens[row])

    def epoch_tokens(self, epoch: int) -> np.ndarray:
        """Trained tokens each dataset contributes to the epoch."""
        rows, sources = self.plan(epoch)
        flat = np.concatenate(self.tokens)
        return np.bincount(sources, weights=flat[rows], minlength=len(self.names)).astype(np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rows, sources = self.plan(self.epoch)
        return {**self.data[int(rows[index])], SOURCE_COLUMN: int(sources[index])}


def preprocessed_sources(
    names: list[str],
    load: Callable[..., Any],
    stage: str,
    template: Template,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    tokenizer: PreTrainedTokenizer,
    processor: ProcessorMixin | None,
) -> list[Any]:
    """Each dataset loaded by ``load`` and preprocessed by LLaMA-Factory's processor for ``stage``, on its own."""
    local = not data_args.data_shared_file_system
    with training_args.main_process_first(desc="load dataset", local=local):
        sources = []
        for name, attr in zip(names, get_dataset_list(names, data_args.dataset_dir)):
            if attr.ranking:
                raise ValueError(f"`{name}` is a ranking (preference) dataset: it cannot be trained on in `{stage}`.")
            sources.append(load(attr, model_args, data_args, training_args))

    with training_args.main_process_first(desc="pre-process dataset", local=local):
        return [
            _get_preprocessed_dataset(source, data_args, training_args, stage, template, tokenizer, processor)
            for source in sources
        ]


def held_out_sets(
    get_dataset: Callable[..., DatasetModule],
    template: Template,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    stage: str,
    tokenizer: PreTrainedTokenizer,
    processor: ProcessorMixin | None,
    each: bool,
) -> Any:
    """The ``eval_dataset`` by LLaMA-Factory's own ``get_dataset``; ``each``: every dataset evaluated on its own."""
    eval_args = copy.copy(data_args)
    eval_args.dataset, eval_args.mix_strategy, eval_args.interleave_probs = None, "concat", None
    eval_args.eval_on_each_dataset = each or data_args.eval_on_each_dataset
    return get_dataset(template, model_args, eval_args, training_args, stage, tokenizer, processor)["eval_dataset"]


def get_token_mixture_dataset(
    get_dataset: Callable[..., DatasetModule],
    template: Template,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    stage: str,
    tokenizer: PreTrainedTokenizer,
    processor: ProcessorMixin | None = None,
) -> DatasetModule:
    """``mix_strategy: interleave_tokens``: the train set mixed by token share; held-out sets evaluated each alone.

    Called by the ``pt`` and ``sft`` workflows in place of LLaMA-Factory's ``get_dataset`` (see hooks.py), which is
    ``get_dataset`` here.
    """
    names, shares = list(data_args.dataset), list(data_args.interleave_probs)
    sources = preprocessed_sources(
        names, _load_single_dataset, stage, template, model_args, data_args, training_args, tokenizer, processor
    )
    tokens = [trained_tokens(source, stage, tokenizer.pad_token_id) for source in sources]
    mixture = TokenMixture(sources, tokens, names, shares, training_args.seed)
    _announce(mixture, training_args)
    dataset_module: DatasetModule = {"train_dataset": mixture}
    if data_args.eval_dataset is not None:
        dataset_module["eval_dataset"] = held_out_sets(
            get_dataset, template, model_args, data_args, training_args, stage, tokenizer, processor, each=True
        )
    return dataset_module


def _announce(mixture: TokenMixture, training_args: Seq2SeqTrainingArguments) -> None:
    """Per dataset, its tokens and how many passes over it the run makes; a warning for one the run repeats more
    often than its epochs (too small for its share): the run goes on, repeating it."""
    if training_args.max_steps > 0:
        epochs = training_args.max_steps * global_batch(training_args) / len(mixture)
    else:
        epochs = training_args.num_train_epochs
    per_epoch = mixture.epoch_tokens(0)
    for j, name in enumerate(mixture.names):
        available = int(mixture.tokens[j].sum())
        passes = epochs * per_epoch[j] / available if available else float("inf")
        line = (
            f"Token mixture: `{name}` (share {mixture.shares[j]:g}) has {available:,} trained tokens; the run trains "
            f"on about {round(epochs * per_epoch[j]):,} of them over {epochs:.3g} epochs: {passes:.2f} passes"
        )
        if passes > max(epochs, 1.0):
            logger.warning_rank0(f"{line}. It is too small for its share: it is repeated.")
        else:
            logger.info_rank0(f"{line}.")
