"""Argument dataclasses, in LLaMA-Factory's ``hparams`` style: one file per group, help text on every field."""

from .decontamination_args import DecontaminationArguments
from .finetuning_args import GeoFinetuningArguments
from .geobench_args import EvalArguments, GeoBenchArguments, GeoBenchTrainArguments
from .parser import apply_extension_args
from .tools_args import ToolsArguments
from .tspt_args import TsptArguments


__all__ = [
    "DecontaminationArguments",
    "EvalArguments",
    "GeoBenchArguments",
    "GeoBenchTrainArguments",
    "GeoFinetuningArguments",
    "ToolsArguments",
    "TsptArguments",
    "apply_extension_args",
]
