from dataclasses import dataclass, field
from typing import Literal

from llamafactory.hparams import FinetuningArguments


@dataclass
class GeoFinetuningArguments(FinetuningArguments):
    """LLaMA-Factory's finetuning arguments with ``tspt`` added to the stage choices.

    After parsing, a TSPT run has ``stage == "pt"`` (every LLaMA-Factory check then treats it as the
    pretraining it is) and its :class:`TsptArguments` in ``tspt``.
    """

    stage: Literal["pt", "sft", "rm", "ppo", "dpo", "kto", "tspt"] = field(
        default="sft",
        metadata={"help": "Which stage will be performed in training (`tspt`: geo-factory's two-stage pretraining)."},
    )
    # Set by geo_factory.hparams.parser after parsing; plain attributes, not dataclass fields.
    tspt = None
    geobench = None
    mixture = None  # the dataset names of a token-share mixture, whose trainer logs each one's loss and tokens
