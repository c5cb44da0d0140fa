from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from ..datasets import check_dataset_names


if TYPE_CHECKING:
    from llamafactory.hparams import DataArguments, FinetuningArguments


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in str(value).split(",") if item.strip()] if value is not None else []


@dataclass
class TsptArguments:
    """Two-stage pre-adaptation pretraining (JiuZhou / PreparedLLM), for ``stage: tspt``.

    Stage 1 adapts the model on a general-heavy mixture, stage 2 specializes it on geoscience
    text with some general replay. Everything not listed here keeps its LLaMA-Factory meaning.
    """

    tspt_stage1_dataset: str | None = field(
        default=None, metadata={"help": "Stage 1 datasets: comma-separated registry names."}
    )
    tspt_stage2_dataset: str | None = field(
        default=None, metadata={"help": "Stage 2 datasets: comma-separated registry names."}
    )
    tspt_stage1_mix: str | None = field(
        default=None,
        metadata={"help": "Stage 1 token shares, comma-separated, one per dataset, summing to 1 (default: equal)."},
    )
    tspt_stage2_mix: str | None = field(
        default=None,
        metadata={"help": "Stage 2 token shares, comma-separated, one per dataset, summing to 1 (default: equal)."},
    )
    tspt_stage1_tokens: str | None = field(
        default=None, metadata={"help": "Token budget of stage 1 (packed training tokens; accepts `5.5e9`)."}
    )
    tspt_stage2_tokens: str | None = field(
        default=None, metadata={"help": "Token budget of stage 2 (packed training tokens; accepts `5.5e9`)."}
    )
    tspt_stage1_learning_rate: float | None = field(
        default=None, metadata={"help": "Stage 1 peak learning rate (default: `learning_rate`)."}
    )
    tspt_stage2_learning_rate: float | None = field(
        default=None, metadata={"help": "Stage 2 peak learning rate (default: `learning_rate`)."}
    )
    tspt_stage1_warmup_ratio: float | None = field(
        default=None, metadata={"help": "Stage 1 warmup ratio (default: `warmup_ratio`)."}
    )
    tspt_stage2_warmup_ratio: float | None = field(
        default=None, metadata={"help": "Stage 2 warmup ratio (default: `warmup_ratio`)."}
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
        return _split(getattr(self, f"tspt_stage{stage}_dataset"))

    def all_datasets(self) -> list[str]:
        return list(dict.fromkeys(self.stage_datasets(1) + self.stage_datasets(2)))

    def reject_outside_tspt(self, stage: str) -> None:
        used = [f.name for f in fields(self) if getattr(self, f.name) not in (None, f.default)]
        if used:
            raise ValueError(f"{', '.join(used)} only apply to `stage: tspt`, but `stage` is `{stage}`.")

    def validate(self, data_args: "DataArguments", finetuning_args: "FinetuningArguments") -> None:
        if finetuning_args.finetuning_type not in ("lora", "full", "freeze"):
            raise ValueError(
                f"`finetuning_type: {finetuning_args.finetuning_type}` is not supported by `stage: tspt`; "
                "allowed: lora, full, freeze."
            )
        for stage in (1, 2):
            key = f"tspt_stage{stage}_dataset"
            names = self.stage_datasets(stage)
            if not names:
                raise ValueError(f"`{key}` is required with `stage: tspt` (comma-separated registry names).")
            check_dataset_names(names, data_args.dataset_dir, key=key)
            self.stage_mix(stage)
            self.stage_tokens(stage)

    def stage_mix(self, stage: int) -> list[float]:
        key, names = f"tspt_stage{stage}_mix", self.stage_datasets(stage)
        raw = getattr(self, key)
        if raw is None:
            return [1.0 / len(names)] * len(names)
        try:
            shares = [float(x) for x in _split(raw)]
        except ValueError:
            raise ValueError(f"`{key}: {raw}` must be comma-separated numbers, one per dataset.") from None
        if len(shares) != len(names):
            raise ValueError(
                f"`{key}` has {len(shares)} shares but `tspt_stage{stage}_dataset` names {len(names)} datasets."
            )
        if any(s <= 0 for s in shares) or abs(sum(shares) - 1.0) > 1e-6:
            raise ValueError(f"`{key}: {raw}` must be positive shares that sum to 1 (they sum to {sum(shares):g}).")
        return shares

    def stage_tokens(self, stage: int) -> int:
        key = f"tspt_stage{stage}_tokens"
        raw = getattr(self, key)
        try:
            tokens = int(float(str(raw)))
        except ValueError:
            raise ValueError(f"`{key}` must be a positive number of tokens, such as 5.5e9; got `{raw}`.") from None
        if tokens <= 0:
            raise ValueError(f"`{key}` must be a positive number of tokens, such as 5.5e9; got `{raw}`.")
        return tokens
