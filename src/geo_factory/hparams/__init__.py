"""Argument dataclasses, in LLaMA-Factory's ``hparams`` style: one file per group, help text on every field.

``checks`` (the one validation idiom: ``ConfigError`` and its small checks), ``data_args`` (``mix_strategy:
interleave_tokens``), ``geobench_args`` (``llamafactory-cli eval`` and the in-training evaluation), ``tspt_args``,
``decontamination_args``, ``tools_args``, ``finetuning_args`` (``stage: tspt``), ``parser`` (applies them after
LLaMA-Factory's parsing). As in LLaMA-Factory, this package imports nothing of geo-factory above it: checks that need
domain code run there, called from ``geo_factory.hooks``.
"""

from .data_args import GeoDataArguments
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
    "GeoDataArguments",
    "GeoFinetuningArguments",
    "ToolsArguments",
    "TsptArguments",
    "apply_extension_args",
]
