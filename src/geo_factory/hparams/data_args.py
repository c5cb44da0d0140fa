from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from llamafactory.hparams import DataArguments

from ..datasets import reject_repeated
from .checks import ConfigError, split


if TYPE_CHECKING:
    from llamafactory.hparams import FinetuningArguments
    from transformers import Seq2SeqTrainingArguments


TOKEN_MIX = "interleave_tokens"
TOKEN_MIX_STAGES = ("pt", "sft")


@dataclass
class GeoDataArguments(DataArguments):
    """LLaMA-Factory's data arguments with ``interleave_tokens`` added to the mixing strategies.

    With it, ``interleave_probs`` are token shares: each dataset's share of the tokens the model trains on (in
    ``sft`` the supervised ones), built by :mod:`geo_factory.mixing`. Its shares are checked here, before
    LLaMA-Factory reads them, so that a bad value is one line naming the key.
    """

    mix_strategy: Literal["concat", "interleave_under", "interleave_over", "interleave_once", "interleave_tokens"] = (
        field(
            default="concat",
            metadata={
                "help": "Strategy to use in dataset mixing (concat/interleave) (undersampling/oversampling/sampling "
                "w.o. replacement); `interleave_tokens` (geo-factory): `interleave_probs` are token shares of the "
                "trained tokens, with a new order each epoch and the loss and tokens of each dataset logged."
            },
        )
    )

    def __post_init__(self) -> None:
        if self.mix_strategy != TOKEN_MIX:
            return super().__post_init__()
        self.interleave_probs = ",".join(map(str, token_shares(split(self.dataset), self.interleave_probs)))
        # Held-out sets are evaluated each on its own (`eval_<name>_loss`): any number of them, where LLaMA-Factory
        # wants one per share for its example-level interleaving.
        eval_dataset, self.eval_dataset = self.eval_dataset, None
        super().__post_init__()
        self.eval_dataset = split(eval_dataset) or None


def token_shares(names: list[str], raw: object) -> list[float]:
    """``interleave_probs`` as token shares: one positive number per dataset, summing to 1; unset: equal shares."""
    if not names:
        raise ConfigError("dataset", f"`mix_strategy: {TOKEN_MIX}` mixes the datasets named in `dataset`: name them.")
    reject_repeated(names, "dataset", "name each dataset once and give it its whole share in `interleave_probs`.")
    if raw is None:
        return [1.0 / len(names)] * len(names)
    items = split(raw)
    try:
        shares = [float(x) for x in items]
    except ValueError:
        raise ConfigError(
            "interleave_probs", f"`interleave_probs: {raw}` must be comma-separated numbers, one per dataset."
        ) from None
    if len(shares) != len(names):
        raise ConfigError(
            "interleave_probs",
            f"`interleave_probs` has {len(shares)} shares but `dataset` names {len(names)} datasets "
            f"({', '.join(names)}): give one token share per dataset.",
        )
    if any(not s > 0 for s in shares) or abs(sum(shares) - 1.0) > 1e-6:
        raise ConfigError(
            "interleave_probs",
            f"`interleave_probs: {raw}` must be positive token shares that sum to 1 (they sum to {sum(shares):g}).",
        )
    return shares


def check_token_mixture(
    data_args: DataArguments, training_args: "Seq2SeqTrainingArguments", finetuning_args: "FinetuningArguments"
) -> None:
    """What ``interleave_tokens`` cannot work with, at parsing: the shares were checked when the arguments were built."""
    if finetuning_args.stage not in TOKEN_MIX_STAGES:
        raise ConfigError(
            "mix_strategy",
            f"`mix_strategy: {TOKEN_MIX}` is supported in `stage: pt` and `stage: sft`, not `{finetuning_args.stage}`; "
            "use `concat` or another `interleave_*` strategy.",
        )
    if data_args.streaming:
        raise ConfigError(
            "streaming",
            f"`streaming: true` cannot be used with `mix_strategy: {TOKEN_MIX}`: a stream's length is unknown, so "
            "its tokens cannot be counted and shared; turn streaming off (or pretrain with `stage: tspt`, which "
            "streams a token-share mixture of packed blocks).",
        )
    for key, value, why in (
        ("val_size", data_args.val_size > 1e-6, "name held-out sets in `eval_dataset` (one per dataset)"),
        ("tokenized_path", data_args.tokenized_path is not None, "each dataset is tokenized and counted on its own"),
        (
            "dataloader_persistent_workers",
            training_args.dataloader_persistent_workers and training_args.dataloader_num_workers > 0,
            "persistent workers would keep the first epoch's order",
        ),
    ):
        if value:
            raise ConfigError(key, f"`{key}` cannot be used with `mix_strategy: {TOKEN_MIX}`: {why}.")
