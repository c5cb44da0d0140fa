"""TSPT: JiuZhou's two-stage pre-adaptation pretraining, as ``stage: tspt`` of ``llamafactory-cli train``.

Each stage is one call of LLaMA-Factory's own ``run_pt`` with ``output_dir/stageN`` as its output dir, so
each stage is a complete LLaMA-Factory output and every pretraining option keeps its meaning. TSPT only
decides, per stage, the data (a token-share mixture), the steps (from the token budget), the learning rate
and warmup, and the weights to start from.

- Mixture by tokens: pretraining packs every example into a ``cutoff_len``-token block, so a token share is
  a block share. :func:`mixture_schedule` picks each block's dataset deterministically (smooth weighted
  round-robin), so after n blocks each dataset has within one block of ``n * share``. A dataset too small
  for its share is repeated (a warning says how many passes), a larger one is subsampled.
- Stage 2 starts from stage 1's weights in a new Trainer: fresh optimizer state, fresh warmup and schedule.
  LoRA: the stage-1 adapter *continues* in stage 2 (``adapter_name_or_path``) instead of being merged.
  Merged, stage 2's adapter would sit on a merged stage-1 model, a full-size copy that export and chat would
  then need as their base; continued, ``output_dir`` holds one adapter on the original base, used exactly
  like a ``stage: pt`` output, with the same capacity as the one-stage baseline's adapter.
  Full and freeze: stage 2 loads the model that stage 1 saved.
- Resume: a finished stage leaves ``tspt_stage.json`` (written atomically, after its model) and is skipped
  on a re-run; an unfinished one resumes from its last complete ``checkpoint-N``; a finished run is found at
  parsing and says where its result is. ``overwrite_output_dir`` starts over, as for ``stage: pt``.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from accelerate import PartialState
from datasets import concatenate_datasets, load_dataset
from llamafactory.data.converter import align_dataset
from llamafactory.data.loader import _load_single_dataset
from llamafactory.data.parser import get_dataset_list
from llamafactory.extras import logging
from llamafactory.extras.constants import CHECKPOINT_NAMES, FILEEXT2TYPE, TRAINER_LOG
from llamafactory.model import load_tokenizer
from torch.utils.data import IterableDataset
from transformers.trainer import TRAINER_STATE_NAME, TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .extras import write_json_atomic
from .hparams.tspt_args import STAGES, global_batch
from .mixing import SOURCE_COLUMN, held_out_sets, mixture_schedule, preprocessed_sources


if TYPE_CHECKING:
    from datasets import Dataset
    from llamafactory.data import Template
    from llamafactory.data.data_utils import DatasetModule
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.hparams import DataArguments, FinetuningArguments, ModelArguments
    from matplotlib.figure import Figure
    from transformers import PreTrainedTokenizer, ProcessorMixin, Seq2SeqTrainingArguments, TrainerCallback

    from .hparams import TsptArguments


logger = logging.get_logger(f"llamafactory.{__name__}")  # under LLaMA-Factory's logger: its format and verbosity

STAGE_MARKER = "tspt_stage.json"
REPORT_NAME = "tspt_report.json"
PLOT_NAME = "training_loss.png"
# What a stage folder holds besides the model: stays in the stage folder when the model is published.
_RUN_FILES = {TRAINER_LOG, TRAINER_STATE_NAME, TRAINING_ARGS_NAME, STAGE_MARKER}
_RUN_FILE_PATTERN = re.compile(r".*_results\.json|training_.*\.png|.*\.tmp")
_CHECKPOINT = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)")


@dataclass
class StageMixture:
    """One stage's data plan; :func:`run_tspt` hands it to :func:`get_mixture_dataset` as ``data_args.tspt_mixture``."""

    stage: int
    datasets: list[str]
    shares: list[float]
    tokens: int  # the configured budget
    block_size: int  # cutoff_len: every packed block has this many tokens
    max_steps: int
    blocks: int  # blocks the stage trains on: max_steps x global batch
    seed: int
    start: dict[str, Any]  # what the run starts from: base model, finetuning type, stage-0 vocabulary
    blocks_per_pass: list[int | None] = field(default_factory=list)  # per dataset, once known

    def fingerprint(self) -> dict[str, Any]:
        """What a finished stage must match to be reused by a re-run."""
        return {**{k: getattr(self, k) for k in ("datasets", "shares", "tokens", "block_size")}, **self.start}

    def counts(self, blocks: int | None = None) -> list[int]:
        """Blocks per dataset among the first ``blocks`` of the schedule (default: all of them)."""
        counts = [0] * len(self.datasets)
        for i in mixture_schedule(self.shares, self.blocks if blocks is None else blocks):
            counts[i] += 1
        return counts


def plan_stage(
    stage: int,
    tspt: TsptArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    finetuning_args: FinetuningArguments,
) -> StageMixture:
    max_steps = tspt.stage_steps(stage, data_args, training_args)
    vocab = [getattr(tspt, key) for key in ("tspt_vocab_corpus", "tspt_vocab_size", "tspt_vocab_init")]
    return StageMixture(
        stage=stage,
        datasets=tspt.stage_datasets(stage),
        shares=tspt.stage_mix(stage),
        tokens=tspt.stage_tokens(stage),
        block_size=data_args.cutoff_len,
        max_steps=max_steps,
        blocks=max_steps * global_batch(training_args),
        seed=training_args.seed,
        start={
            "model_name_or_path": model_args.model_name_or_path,
            "finetuning_type": finetuning_args.finetuning_type,
            "vocab": vocab if tspt.tspt_vocab_corpus is not None else None,
        },
    )


# ---------------------------------------------------------------------------------------------
# Data: called by LLaMA-Factory's run_pt in place of its get_dataset (see hooks.py).


def get_mixture_dataset(
    get_dataset: Callable[..., DatasetModule],
    template: Template,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    tokenizer: PreTrainedTokenizer,
    processor: ProcessorMixin | None = None,
) -> DatasetModule:
    """A stage's train set: each dataset packed by LLaMA-Factory's pretrain processor, then mixed by token share.

    ``get_dataset`` is LLaMA-Factory's own: it builds the eval set, if any, as for ``stage: pt``.
    """
    mixture: StageMixture = data_args.tspt_mixture
    sources = preprocessed_sources(
        mixture.datasets, _load_source, "pt", template, model_args, data_args, training_args, tokenizer, processor
    )
    train_dataset = _MixtureStream(sources, mixture) if data_args.streaming else _mix(sources, mixture)
    dataset_module: DatasetModule = {"train_dataset": train_dataset}
    if data_args.eval_dataset is not None:
        dataset_module["eval_dataset"] = held_out_sets(
            get_dataset, template, model_args, data_args, training_args, "pt", tokenizer, processor, each=False
        )
    return dataset_module


def _load_source(
    attr: DatasetAttr, model_args: ModelArguments, data_args: DataArguments, training_args: Seq2SeqTrainingArguments
):
    """LLaMA-Factory's loader, except that a streamed local file is read lazily.

    LLaMA-Factory converts local files to an Arrow cache even with ``streaming: true``, i.e. reads the whole
    corpus before the first step. Streams are shuffled with ``buffer_size``, as LLaMA-Factory shuffles its own.
    """
    if not data_args.streaming:
        return _load_single_dataset(attr, model_args, data_args, training_args)

    if attr.load_from == "file":
        path = os.path.join(data_args.dataset_dir, attr.dataset_name)
        files = sorted(os.path.join(path, name) for name in os.listdir(path)) if os.path.isdir(path) else [path]
        file_type = FILEEXT2TYPE.get(os.path.splitext(files[0])[-1][1:])
        if file_type is None:
            raise ValueError(f"{path}: allowed file types: {', '.join(FILEEXT2TYPE)}.")
        dataset = load_dataset(
            file_type, data_files=files, split=attr.split, streaming=True, cache_dir=model_args.cache_dir
        )
        dataset = align_dataset(dataset, attr, data_args, training_args)
    else:
        dataset = _load_single_dataset(attr, model_args, data_args, training_args)

    return dataset.shuffle(seed=training_args.seed, buffer_size=data_args.buffer_size)


def _announce_passes(mixture: StageMixture, i: int, available: int, wanted: int) -> None:
    name, size = mixture.datasets[i], mixture.block_size
    if wanted > available:
        logger.warning_rank0(
            f"TSPT stage {mixture.stage}: `{name}` has {available:,} blocks ({available * size:,} tokens) for its "
            f"share of {wanted:,} blocks: it is repeated, {wanted / available:.2f} passes."
        )
    else:
        logger.info_rank0(
            f"TSPT stage {mixture.stage}: `{name}`: {wanted:,} of its {available:,} blocks "
            f"({wanted / available:.1%} of one pass)."
        )


def _mix(sources: list[Dataset], mixture: StageMixture) -> Dataset:
    """In memory: the schedule's blocks as one index map; each dataset's blocks in a seeded random order."""
    schedule = np.fromiter(mixture_schedule(mixture.shares, mixture.blocks), dtype=np.int64, count=mixture.blocks)
    indices = np.empty(mixture.blocks, dtype=np.int64)
    mixture.blocks_per_pass = [len(source) for source in sources]
    offset = 0
    for i, available in enumerate(mixture.blocks_per_pass):
        picks = np.flatnonzero(schedule == i)
        if available == 0:
            raise RuntimeError(f"`{mixture.datasets[i]}` has no complete {mixture.block_size}-token block.")
        _announce_passes(mixture, i, available, len(picks))
        order = np.random.default_rng([mixture.seed, mixture.stage, i]).permutation(available)
        indices[picks] = offset + order[np.arange(len(picks)) % available]
        offset += available

    sources = [source.add_column(SOURCE_COLUMN, [i] * len(source)) for i, source in enumerate(sources)]
    return concatenate_datasets(sources).select(indices)


class _MixtureStream(IterableDataset):
    """Streaming: the schedule's blocks in order, each read and tokenized only when the trainer needs it.

    The trainer reads it from the main process (rank 0 dispatches batches under DDP), in schedule order, so
    resuming skips exactly the blocks already trained on.
    """

    def __init__(self, sources: list, mixture: StageMixture) -> None:
        self.sources, self.mixture = sources, mixture
        mixture.blocks_per_pass = [None] * len(sources)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        wanted = self.mixture.counts()
        streams = [self._passes(i, wanted[i]) for i in range(len(self.sources))]
        for i in mixture_schedule(self.mixture.shares, self.mixture.blocks):
            yield {**next(streams[i]), SOURCE_COLUMN: i}

    def _passes(self, i: int, wanted: int) -> Iterator[dict[str, Any]]:
        """Endless passes over one dataset, reshuffled each time."""
        source = self.sources[i]
        for epoch in itertools.count():
            source.set_epoch(epoch)
            available = 0
            for block in source:
                available += 1
                yield block

            if available == 0:
                raise RuntimeError(
                    f"`{self.mixture.datasets[i]}` has no complete {self.mixture.block_size}-token block."
                )
            if epoch == 0:
                self.mixture.blocks_per_pass[i] = available
                _announce_passes(self.mixture, i, available, wanted)


# ---------------------------------------------------------------------------------------------
# The stages: called by LLaMA-Factory's tuner in place of run_pt (see hooks.py).


def run_tspt(
    run_pt: Callable[..., None],
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    finetuning_args: FinetuningArguments,
    callbacks: list[TrainerCallback] | None = None,
) -> None:
    """Stage 0 (if configured), stage 1 and stage 2, each a ``run_pt``; then the result is published at output_dir."""
    tspt: TsptArguments = finetuning_args.tspt
    output_dir, overwrite = Path(training_args.output_dir), training_args.overwrite_output_dir
    plans = _plans(tspt, model_args, data_args, training_args, finetuning_args)
    summaries = {} if overwrite else _finished_stages(output_dir, plans)
    _warn_past_positions(model_args, data_args)
    state = PartialState()
    if overwrite and training_args.should_save:  # stale markers must not survive into a later resume
        for stage in STAGES:
            (output_dir / f"stage{stage}" / STAGE_MARKER).unlink(missing_ok=True)
        (output_dir / REPORT_NAME).unlink(missing_ok=True)

    if tspt.tspt_vocab_corpus is not None:
        from .vocab import run_stage0

        model_args.model_name_or_path = str(
            run_stage0(model_args, data_args, training_args, tspt, output_dir / "stage0")
        )
        if finetuning_args.finetuning_type == "lora":  # the new embedding rows must train
            targets = [*(finetuning_args.additional_target or []), "embed_tokens", "lm_head"]
            finetuning_args.additional_target = list(dict.fromkeys(targets))
        elif finetuning_args.finetuning_type == "freeze":
            extra = [*(finetuning_args.freeze_extra_modules or []), "embed_tokens", "lm_head"]
            finetuning_args.freeze_extra_modules = list(dict.fromkeys(extra))

    _check_blocks([plans[stage] for stage in STAGES if stage not in summaries], model_args, data_args, training_args)
    for stage in STAGES:
        stage_dir = output_dir / f"stage{stage}"
        if stage in summaries:
            logger.info_rank0(f"TSPT stage {stage} finished earlier ({stage_dir / STAGE_MARKER}): skipped.")
            continue

        stage_model, stage_data, stage_training, stage_finetuning = _stage_args(
            plans[stage], model_args, data_args, training_args, finetuning_args, tspt
        )
        logger.info_rank0(
            f"TSPT stage {stage}: {plans[stage].max_steps:,} steps on {plans[stage].blocks * plans[stage].block_size:,}"
            f" tokens of {', '.join(plans[stage].datasets)}, learning rate {stage_training.learning_rate:g}, "
            f"from {stage_training.resume_from_checkpoint or 'the start'}."
        )
        start = time.time()
        run_pt(stage_model, stage_data, stage_training, stage_finetuning, callbacks)
        if training_args.should_save:  # the process that saved the trainer state
            summaries[stage] = _summarize(plans[stage], stage_training, time.time() - start)
            write_json_atomic(stage_dir / STAGE_MARKER, summaries[stage])
            _write_report(output_dir, model_args, data_args, training_args, finetuning_args, summaries)

        state.wait_for_everyone()  # the next stage loads what this one saved

    if training_args.should_save:
        _write_report(output_dir, model_args, data_args, training_args, finetuning_args, summaries)
        if finetuning_args.plot_loss:
            _plot_loss(output_dir)
        _publish(output_dir / f"stage{STAGES[-1]}", output_dir)

    state.wait_for_everyone()


def check_at_parsing(
    tspt: TsptArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    finetuning_args: FinetuningArguments,
) -> None:
    """After :meth:`TsptArguments.validate`, what needs domain code: stage 0's settings, then a finished run.

    A re-run of a finished run says where its result is and exits 0: LLaMA-Factory would refuse the ``output_dir``
    that holds the result. A stage finished with another configuration is an error here, before any work. The
    weights are published last, so a run cut short while publishing goes on.
    """
    if tspt.tspt_vocab_corpus is not None:
        from .vocab import check_expansion_args

        check_expansion_args(tspt.tspt_vocab_corpus, tspt.tspt_vocab_size, tspt.tspt_vocab_init, data_args.dataset_dir)
    if training_args.overwrite_output_dir:
        return
    output_dir = Path(training_args.output_dir)
    finished = _finished_stages(output_dir, _plans(tspt, model_args, data_args, training_args, finetuning_args))
    if len(finished) == len(STAGES) and any((output_dir / name).is_file() for name in CHECKPOINT_NAMES):
        logger.info_rank0(
            f"TSPT run already finished: the result is in {output_dir} (report: {output_dir / REPORT_NAME}). Nothing "
            "to do; set `overwrite_output_dir: true` to train it again."
        )
        raise SystemExit(0)


def _plans(
    tspt: TsptArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    finetuning_args: FinetuningArguments,
) -> dict[int, StageMixture]:
    return {stage: plan_stage(stage, tspt, model_args, data_args, training_args, finetuning_args) for stage in STAGES}


def _warn_past_positions(model_args: ModelArguments, data_args: DataArguments) -> None:
    """Every packed block is ``cutoff_len`` tokens long: past the model's positions, all of them run out of range."""
    from llamafactory.model import load_config

    positions = getattr(load_config(model_args).get_text_config(), "max_position_embeddings", None)
    if positions is not None and data_args.cutoff_len > positions and model_args.rope_scaling is None:
        logger.warning_rank0(
            f"TSPT: `cutoff_len: {data_args.cutoff_len}` is above the model's max_position_embeddings ({positions}): "
            f"every packed block reaches positions the model was not trained on. Lower `cutoff_len` to {positions} "
            "or less, or set `rope_scaling` to extend the positions."
        )


def _check_blocks(
    plans: list[StageMixture],
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
) -> None:
    """Every dataset of the stages to run has a complete ``cutoff_len`` block, found before stage 1 trains.

    Packing joins one preprocessing batch of texts and cuts it into blocks, so a dataset has one as soon as one
    batch holds ``cutoff_len`` tokens: usually the first, and only a dataset too small reads to its end.
    """
    if not plans:
        return
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.data.loader import _get_dataset_processor

    tokenizer = load_tokenizer(model_args)["tokenizer"]  # the stages' own: stage 0's expanded one, if any
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    preprocess = _get_dataset_processor(data_args, "pt", template, tokenizer, None).preprocess_dataset
    stages = {
        name: [plan.stage for plan in plans if name in plan.datasets] for plan in plans for name in plan.datasets
    }
    local = not data_args.data_shared_file_system
    with training_args.main_process_first(desc="check datasets", local=local):
        attrs = get_dataset_list(list(stages), data_args.dataset_dir)
        for (name, in_stages), attr in zip(stages.items(), attrs):
            source, tokens = _load_source(attr, model_args, data_args, training_args), 0
            for batch in source.iter(batch_size=data_args.preprocessing_batch_size):
                if preprocess(batch)["input_ids"]:  # LLaMA-Factory's own packing of this batch
                    break
                texts = [prompt[0]["content"] for prompt in batch["_prompt"]]
                tokens += sum(map(len, tokenizer(texts, add_special_tokens=False)["input_ids"])) + len(texts)  # + eos
            else:
                keys = " and ".join(f"`tspt_stage{stage}_dataset`" for stage in in_stages)
                raise ValueError(
                    f"`{name}` (in {keys}) has no complete {data_args.cutoff_len}-token block: it holds {tokens:,} "
                    "tokens. Add text to it, remove it from the stage, or lower `cutoff_len`."
                )


def check_adapter_vocabulary(tokenizer: PreTrainedTokenizer, model_args: ModelArguments) -> None:
    """Before any weight loads: adapters that carry embedding and output layers must fit the base model.

    A LoRA adapter trained after stage 0 holds the expanded layers; on the original base model peft would stop
    only after loading the weights, with a bare size mismatch.
    """
    from llamafactory.model import load_config
    from safetensors import safe_open

    from .vocab import RECORD

    rows = (
        getattr(load_config(model_args).get_text_config(), "vocab_size", None)
        if model_args.adapter_name_or_path
        else None
    )
    if rows is None:
        return
    if model_args.resize_vocab and len(tokenizer) > rows:  # as LLaMA-Factory's resize_embedding_layer will
        rows = -(-len(tokenizer) // 64) * 64
    for adapter in map(Path, model_args.adapter_name_or_path):
        weights = adapter / "adapter_model.safetensors"
        if not weights.is_file():
            continue
        with safe_open(weights, framework="pt") as f:
            layers = [k for k in f.keys() if k.endswith(("embed_tokens.weight", "lm_head.weight"))]  # noqa: SIM118
            trained = {f.get_slice(k).get_shape()[0] for k in layers} - {rows}
        if not trained:
            continue
        stage0 = next(
            (d / "stage0" for d in (adapter, *adapter.parents[:2]) if (d / "stage0" / RECORD).is_file()), None
        )
        if stage0 is None and (adapter / "adapter_config.json").is_file():
            stage0 = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get(
                "base_model_name_or_path"
            )
        raise ValueError(
            f"The adapter {adapter} was trained on a model with {max(trained):,} token embeddings, but "
            f"`model_name_or_path: {model_args.model_name_or_path}` has {rows:,}: the adapter's model had its "
            "vocabulary expanded (TSPT stage 0 or `geo-factory expand-vocab`). Set `model_name_or_path` to the "
            f"expanded model the adapter belongs to{f': {stage0}' if stage0 else ''}."
        )


def _finished_stages(output_dir: Path, plans: dict[int, StageMixture]) -> dict[int, dict[str, Any]]:
    """Summaries of the stages a previous run finished; an error if one was run with other data, budget or start."""
    summaries = {}
    for stage, plan in plans.items():
        marker = output_dir / f"stage{stage}" / STAGE_MARKER
        if not marker.is_file():
            continue
        with open(marker, encoding="utf-8") as f:
            summary = json.load(f)
        changed = [k for k, v in plan.fingerprint().items() if summary["plan"].get(k) != v]
        if changed:
            raise ValueError(
                f"{marker.parent} was finished with other {', '.join(changed)} than configured now; set "
                "`overwrite_output_dir: true` to start over, or choose another `output_dir`."
            )
        summaries[stage] = summary
    return summaries


def _last_checkpoint(stage_dir: Path) -> str | None:
    """The newest checkpoint that holds its trainer state, which the Trainer writes last.

    ``get_last_checkpoint`` would pick a checkpoint that a SIGKILL cut short, and resuming from it fails.
    """
    steps = [
        (int(match.group(1)), path)
        for path in (stage_dir.iterdir() if stage_dir.is_dir() else ())
        if (match := _CHECKPOINT.fullmatch(path.name)) and (path / TRAINER_STATE_NAME).is_file()
    ]
    return str(max(steps)[1]) if steps else None


def _stage_args(
    plan: StageMixture,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    finetuning_args: FinetuningArguments,
    tspt: TsptArguments,
) -> tuple[ModelArguments, DataArguments, Seq2SeqTrainingArguments, FinetuningArguments]:
    stage_dir = Path(training_args.output_dir) / f"stage{plan.stage}"
    overrides: dict[str, Any] = {
        "output_dir": str(stage_dir),
        "max_steps": plan.max_steps,
        "resume_from_checkpoint": None if training_args.overwrite_output_dir else _last_checkpoint(stage_dir),
    }
    learning_rate = getattr(tspt, f"tspt_stage{plan.stage}_learning_rate")
    if learning_rate is not None:
        overrides["learning_rate"] = learning_rate
    warmup = getattr(tspt, f"tspt_stage{plan.stage}_warmup_ratio")
    if warmup is not None:  # a ratio for transformers 4 and 5 alike (5 reads a float < 1 in warmup_steps as one)
        overrides.update(warmup_ratio=warmup, warmup_steps=0)
    if plan.stage < STAGES[-1]:
        overrides["push_to_hub"] = False  # only the final result goes to the hub

    # replace() re-runs __post_init__: a fresh DeepSpeed config, filled from this stage's steps and rate
    stage_training = dataclasses.replace(training_args, **overrides)
    stage_data = copy.copy(data_args)
    stage_data.dataset, stage_data.tspt_mixture = plan.datasets, plan
    stage_model, stage_finetuning = copy.copy(model_args), copy.copy(finetuning_args)
    stage_finetuning.mixture = plan.datasets  # the trainer logs each dataset's loss and tokens
    if plan.stage > STAGES[0]:
        previous = str(stage_dir.parent / f"stage{plan.stage - 1}")
        if finetuning_args.finetuning_type == "lora":  # continue the adapter: see the module docstring
            earlier = model_args.adapter_name_or_path or []
            merged = earlier if finetuning_args.create_new_adapter else earlier[:-1]
            stage_model.adapter_name_or_path = [*merged, previous]
            stage_finetuning.create_new_adapter = False
        else:
            stage_model.model_name_or_path = previous
            if data_args.template is None and not isinstance(
                load_tokenizer(model_args)["tokenizer"].chat_template, str
            ):
                # LLaMA-Factory gave stage 1 its `empty` placeholder template and saved it with the model, but
                # cannot parse it back from there: name the template stage 1 used.
                stage_data.template = "empty"

    return stage_model, stage_data, stage_training, stage_finetuning


def _summarize(plan: StageMixture, training_args: Seq2SeqTrainingArguments, wall_time: float) -> dict[str, Any]:
    """The stage's part of the report, from its trainer state: steps, losses, tokens and passes per dataset.

    Consumed tokens are the schedule's first steps x global batch blocks; ``wall_time_s`` is the time of the
    run that finished the stage (from its resume, if it resumed).
    """
    with open(os.path.join(training_args.output_dir, TRAINER_STATE_NAME), encoding="utf-8") as f:
        state = json.load(f)

    losses = [log["loss"] for log in state["log_history"] if "loss" in log]
    consumed = plan.counts(state["global_step"] * (plan.blocks // plan.max_steps))
    planned, total = plan.counts(), sum(consumed)
    datasets = {}
    for i, name in enumerate(plan.datasets):
        per_pass = plan.blocks_per_pass[i] if plan.blocks_per_pass else None
        datasets[name] = {
            "share": plan.shares[i],
            "planned_tokens": planned[i] * plan.block_size,
            "consumed_tokens": consumed[i] * plan.block_size,
            "realized_share": consumed[i] / total if total else 0.0,
            "tokens_per_pass": None if per_pass is None else per_pass * plan.block_size,
            "passes": None if per_pass is None else consumed[i] / per_pass,
        }

    resumed_from = training_args.resume_from_checkpoint
    return {
        "plan": plan.fingerprint(),
        "output_dir": os.path.basename(training_args.output_dir),
        "planned_tokens": plan.blocks * plan.block_size,
        "consumed_tokens": total * plan.block_size,
        "steps": state["global_step"],
        "max_steps": plan.max_steps,
        "learning_rate": training_args.learning_rate,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "wall_time_s": round(wall_time, 2),
        "resumed_from": None if resumed_from is None else os.path.basename(resumed_from),
        "datasets": datasets,
    }


def _write_report(
    output_dir: Path,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    finetuning_args: FinetuningArguments,
    summaries: dict[int, dict[str, Any]],
) -> None:
    write_json_atomic(
        output_dir / REPORT_NAME,
        {
            "finished": all(stage in summaries for stage in STAGES),
            "model_name_or_path": model_args.model_name_or_path,
            "finetuning_type": finetuning_args.finetuning_type,
            "cutoff_len": data_args.cutoff_len,
            "streaming": data_args.streaming,
            "world_size": training_args.world_size,
            "stages": {f"stage{stage}": summaries[stage] for stage in sorted(summaries)},
        },
    )


def _plot_loss(output_dir: Path) -> None:
    """``training_loss.png`` of the whole run, from each stage's trainer state (a resumed stage's log is clean there)."""
    curves = {}
    for stage in STAGES:
        with open(output_dir / f"stage{stage}" / TRAINER_STATE_NAME, encoding="utf-8") as f:
            state = json.load(f)
        logs = [log for log in state["log_history"] if "loss" in log]
        curves[stage] = ([log["step"] for log in logs], [log["loss"] for log in logs], state["global_step"])
    fig = loss_figure(curves, title=f"TSPT training loss of {output_dir}")
    fig.savefig(output_dir / PLOT_NAME, format="png", dpi=100)
    logger.info_rank0(f"TSPT loss plot saved at {output_dir / PLOT_NAME}.")


def loss_figure(curves: dict[int, tuple[list[int], list[float], int]], title: str | None = None) -> Figure:
    """Both stages' loss on one step axis with the boundary marked, drawn like LLaMA-Factory's ``plot_loss``.

    ``curves``: per stage, its logged steps, their losses and the stage's length in steps. The one drawing of the
    run's ``training_loss.png`` and of LlamaBoard's live plot; earlier figures are closed (LlamaBoard draws one per
    refresh).
    """
    import matplotlib.pyplot as plt
    from llamafactory.extras.ploting import smooth

    plt.close("all")
    plt.switch_backend("agg")
    fig, ax = plt.subplots()
    offset = 0
    for stage, color in zip(STAGES, ("#1f77b4", "#d62728")):
        steps, losses, length = curves.get(stage, ([], [], 0))
        if losses:
            if offset:
                ax.axvline(offset + 0.5, color="gray", linestyle="--", label="stage boundary")
            steps = [offset + step for step in steps]
            ax.plot(steps, losses, color=color, alpha=0.4)
            ax.plot(steps, smooth(losses), color=color, label=f"stage {stage}")
        offset += length
    if title is not None:
        ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return fig


def _publish(stage_dir: Path, output_dir: Path) -> None:
    """Put the last stage's adapter or model at ``output_dir``, like a ``stage: pt`` output.

    Weights go last: LLaMA-Factory refuses to resume into a folder that holds weights, so until they are in
    place a re-run of the command can still finish the job. Hard links where possible (a 7B model is 14 GB).
    """
    files = [
        path
        for path in stage_dir.iterdir()
        if path.is_file() and path.name not in _RUN_FILES and not _RUN_FILE_PATTERN.fullmatch(path.name)
    ]
    for path in sorted(files, key=lambda path: path.name in CHECKPOINT_NAMES):
        tmp = output_dir / f"{path.name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copy2(path, tmp)
        os.replace(tmp, output_dir / path.name)

    logger.info_rank0(f"TSPT result (from {stage_dir}) published at {output_dir}.")
