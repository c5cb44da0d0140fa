"""Argument dataclasses, in LLaMA-Factory's ``hparams`` style: one file per group, help text on every field."""

from .finetuning_args import GeoFinetuningArguments
from .geobench_args import GeoBenchArguments, GeoBenchTrainArguments
from .parser import apply_extension_args
from .tspt_args import TsptArguments


__all__ = [
    "GeoBenchArguments",
    "GeoBenchTrainArguments",
    "GeoFinetuningArguments",
    "TsptArguments",
    "apply_extension_args",
]
