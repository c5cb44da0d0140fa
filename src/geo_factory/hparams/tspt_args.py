import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from llamafactory.extras import logging

from ..datasets import check_dataset_names, reject_repeated
from .checks import ConfigError, split


if TYPE_CHECKING:
    from llamafactory.hparams import DataArguments, FinetuningArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments


logger = logging.get_logger(f"llamafactory.{__name__}")  # under LLaMA-Factory's logger: its format and verbosity

STAGES = (1, 2)
FINETUNING_TYPES = ("lora", "full", "freeze")


def global_batch(training_args: "Seq2SeqTrainingArguments") -> int:
    """Sequences per optimizer step, over all processes."""
    return (
        training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size
    )


def _number(value: object) -> float:
    """A float from what YAML or the command line handed over (``1e-3``, ``"5.5e9"``, ``10240``); NaN if none."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(str(value))
    except ValueError:
        return math.nan


@dataclass
class TsptArguments:
    """Two-stage pre-adaptation pretraining (JiuZhou / PreparedLLM), for ``stage: tspt``.

    Stage 1 adapts the model on a general-heavy mixture, stage 2 specializes it on geoscience
    text with some general replay. Everything not listed here keeps its LLaMA-Factory meaning.
    What needs domain code (stage 0's corpus and settings, a finished run) is checked after parsing
    by :func:`geo_factory.tspt.check_at_parsing`.
    """

    tspt_stage1_dataset: str | None = field(
        default=None, metadata={"help": "Stage 1 datasets: comma-separated registry names."}
    )
    tspt_stage2_dataset: str | None = field(
        default=None, metadata={"help": "Stage 2 datasets: comma-separated registry names."}
    )
    tspt_stage1_mix: str | None = field(
        default=None,
        metadata={
            "help": "Stage 1 token shares, comma-separated, one per dataset, summing to 1; unset: equal shares."
        },
    )
    tspt_stage2_mix: str | None = field(
        default=None,
        metadata={
            "help": "Stage 2 token shares, comma-separated, one per dataset, summing to 1; unset: equal shares."
        },
    )
    tspt_stage1_tokens: str | None = field(
        default=None,
        metadata={
            "help": "Token budget of stage 1 (packed training tokens; accepts `5.5e9`). Sets the stage's max_steps: "
            "tokens / (cutoff_len * per_device_train_batch_size * gradient_accumulation_steps * world size), "
            "rounded up to whole steps; at least one step."
        },
    )
    tspt_stage2_tokens: str | None = field(
        default=None, metadata={"help": "Token budget of stage 2 (packed training tokens; accepts `5.5e9`)."}
    )
    tspt_stage1_learning_rate: float | None = field(
        default=None, metadata={"help": "Stage 1 peak learning rate, >= 0; unset: `learning_rate`."}
    )
    tspt_stage2_learning_rate: float | None = field(
        default=None, metadata={"help": "Stage 2 peak learning rate, >= 0; unset: `learning_rate`."}
    )
    tspt_stage1_warmup_ratio: float | None = field(
        default=None, metadata={"help": "Stage 1 warmup, a fraction of its steps in [0, 1); unset: the global warmup."}
    )
    tspt_stage2_warmup_ratio: float | None = field(
        default=None, metadata={"help": "Stage 2 warmup, a fraction of its steps in [0, 1); unset: the global warmup."}
    )
    tspt_vocab_corpus: str | None = field(
        default=None,
        metadata={
            "help": "Stage 0 (PreparedLLM): registry datasets to train the new vocabulary on; turns stage 0 on."
        },
    )
    tspt_vocab_size: int | None = field(
        default=None, metadata={"help": "Stage 0: how many new tokens to add to the base vocabulary."}
    )
    tspt_vocab_init: str = field(
        default="prepared",
        metadata={"help": "Stage 0: new embedding rows from `prepared` (mean of the pieces), `mean` or `random`."},
    )

    def stage_datasets(self, stage: int) -> list[str]:
        return split(getattr(self, f"tspt_stage{stage}_dataset"))

    def all_datasets(self) -> list[str]:
        return list(dict.fromkeys(self.stage_datasets(1) + self.stage_datasets(2)))

    def reject_outside_tspt(self, stage: str) -> None:
        used = [f.name for f in fields(self) if getattr(self, f.name) not in (None, f.default)]
        if used:
            raise ConfigError(used[0], f"{', '.join(used)} only apply to `stage: tspt`, but `stage` is `{stage}`.")

    def validate(
        self,
        model_args: "ModelArguments",
        data_args: "DataArguments",
        training_args: "Seq2SeqTrainingArguments",
        finetuning_args: "FinetuningArguments",
    ) -> None:
        """Everything about a TSPT run that can be wrong, checked at parsing: before any work or write."""
        if not training_args.do_train:
            raise ConfigError("do_train", "`stage: tspt` trains: set `do_train: true`.")
        if training_args.max_steps != -1:
            raise ConfigError(
                "max_steps",
                f"`max_steps: {training_args.max_steps}` cannot be used with `stage: tspt`: each stage's steps "
                "follow from `tspt_stage1_tokens` and `tspt_stage2_tokens`; remove `max_steps`.",
            )
        if training_args.resume_from_checkpoint is not None:
            raise ConfigError(
                "resume_from_checkpoint",
                "`resume_from_checkpoint` cannot be used with `stage: tspt`: run the same command again and each "
                "unfinished stage resumes from its own last checkpoint.",
            )
        if data_args.streaming and training_args.dataloader_num_workers > 0:
            raise ConfigError(
                "dataloader_num_workers",
                "`dataloader_num_workers` must be 0 with `stage: tspt` and `streaming: true`: the token-share "
                "mixture is read in order by the main process (workers would each read the whole stream).",
            )
        if finetuning_args.finetuning_type not in FINETUNING_TYPES:
            raise ConfigError(
                "finetuning_type",
                f"`finetuning_type: {finetuning_args.finetuning_type}` is not supported by `stage: tspt`; "
                f"allowed: {', '.join(FINETUNING_TYPES)}.",
            )
        if data_args.dataset is not None:
            raise ConfigError(
                "dataset",
                "`dataset` is not used by `stage: tspt`: name each stage's datasets in `tspt_stage1_dataset` "
                "and `tspt_stage2_dataset`.",
            )
        if data_args.packing is False:
            raise ConfigError(
                "packing",
                "`packing: false` is not supported by `stage: tspt`: budgets and shares count packed "
                "`cutoff_len`-token blocks; remove `packing`.",
            )
        if data_args.tokenized_path is not None:
            raise ConfigError(
                "tokenized_path",
                "`tokenized_path` is not supported by `stage: tspt`: each stage mixes its own datasets.",
            )
        if data_args.interleave_probs is not None or data_args.mix_strategy != "concat":
            raise ConfigError(
                "mix_strategy",
                "`mix_strategy` and `interleave_probs` are not used by `stage: tspt`: set the token shares with "
                "`tspt_stage1_mix` and `tspt_stage2_mix`.",
            )
        for stage in STAGES:
            key = f"tspt_stage{stage}_dataset"
            names = self.stage_datasets(stage)
            if not names:
                raise ConfigError(key, f"`{key}` is required with `stage: tspt` (comma-separated registry names).")
            reject_repeated(
                names, key, f"name each dataset once and give it its whole share in `tspt_stage{stage}_mix`."
            )
            check_dataset_names(names, data_args.dataset_dir, key=key, cache_dir=model_args.cache_dir)
            self._reject_ranking(names, data_args.dataset_dir, key)
            self.stage_mix(stage)
            self._check_budget(stage, data_args, training_args)
            self._check_overrides(stage)

        if self.tspt_vocab_corpus is not None:
            if model_args.adapter_name_or_path is not None:
                raise ConfigError(
                    "tspt_vocab_corpus",
                    "`tspt_vocab_corpus` cannot start from `adapter_name_or_path`: merge the adapter first "
                    "(`llamafactory-cli export`), then expand the merged model.",
                )
        elif self.tspt_vocab_size is not None or self.tspt_vocab_init != "prepared":
            raise ConfigError(
                "tspt_vocab_size",
                "`tspt_vocab_size` and `tspt_vocab_init` only apply with `tspt_vocab_corpus` (stage 0).",
            )

    def stage_steps(self, stage: int, data_args: "DataArguments", training_args: "Seq2SeqTrainingArguments") -> int:
        """Budget / tokens per optimizer step, rounded up, so a stage trains on at least its budget."""
        return -(-self.stage_tokens(stage) // (data_args.cutoff_len * global_batch(training_args)))

    def _reject_ranking(self, names: list[str], dataset_dir: str, key: str) -> None:
        from llamafactory.data.parser import get_dataset_list

        for name, attr in zip(names, get_dataset_list(names, dataset_dir)):
            if attr.ranking:
                raise ConfigError(key, f"`{key}`: `{name}` is a ranking (preference) dataset; TSPT pretrains on text.")

    def _check_budget(self, stage: int, data_args: "DataArguments", training_args: "Seq2SeqTrainingArguments") -> None:
        """At least one optimizer step; a budget that is not whole steps is rounded up, and the log says so."""
        key, tokens = f"tspt_stage{stage}_tokens", self.stage_tokens(stage)
        step = data_args.cutoff_len * global_batch(training_args)
        per_step = (
            f"{step:,} tokens per optimizer step (cutoff_len {data_args.cutoff_len} x per_device_train_batch_size "
            f"{training_args.per_device_train_batch_size} x gradient_accumulation_steps "
            f"{training_args.gradient_accumulation_steps} x world size {training_args.world_size})"
        )
        if tokens < step:
            raise ConfigError(
                key, f"`{key}: {tokens}` is less than one step at {per_step}: set it to at least {step}."
            )
        steps = self.stage_steps(stage, data_args, training_args)
        if steps * step != tokens:
            logger.warning_rank0(
                f"`{key}: {tokens}` is not a whole number of steps at {per_step}: rounded up, stage {stage} trains "
                f"{steps:,} steps, {steps * step:,} tokens."
            )

    def _check_overrides(self, stage: int) -> None:
        """Per-stage learning rate and warmup, as numbers: they replace LLaMA-Factory's own values as they are."""
        for name, allowed, ok in (
            ("learning_rate", "a number >= 0", lambda x: x >= 0),
            ("warmup_ratio", "a number in [0, 1)", lambda x: 0 <= x < 1),
        ):
            key = f"tspt_stage{stage}_{name}"
            raw = getattr(self, key)
            if raw is None:
                continue
            value = _number(raw)
            if not ok(value):  # False for NaN
                raise ConfigError(key, f"`{key}` must be {allowed}; got `{raw}`.")
            setattr(self, key, value)

    def stage_mix(self, stage: int) -> list[float]:
        key, names = f"tspt_stage{stage}_mix", self.stage_datasets(stage)
        raw = getattr(self, key)
        if raw is None:
            return [1.0 / len(names)] * len(names)
        try:
            shares = [float(x) for x in split(raw)]
        except ValueError:
            raise ConfigError(key, f"`{key}: {raw}` must be comma-separated numbers, one per dataset.") from None
        if len(shares) != len(names):
            raise ConfigError(
                key, f"`{key}` has {len(shares)} shares but `tspt_stage{stage}_dataset` names {len(names)} datasets."
            )
        if any(not s > 0 for s in shares) or abs(sum(shares) - 1.0) > 1e-6:
            raise ConfigError(
                key, f"`{key}: {raw}` must be positive shares that sum to 1 (they sum to {sum(shares):g})."
            )
        return shares

    def stage_tokens(self, stage: int) -> int:
        key = f"tspt_stage{stage}_tokens"
        raw = getattr(self, key)
        tokens = _number(raw)
        if not (math.isfinite(tokens) and tokens >= 1):
            raise ConfigError(key, f"`{key}` must be a positive number of tokens, such as 5.5e9; got `{raw}`.")
        return int(tokens)
