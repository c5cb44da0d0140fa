"""geo-factory's train arguments after parsing: what they can check alone, then wired into LLaMA-Factory's.

Checks that need domain code (stage 0's corpus, a finished TSPT run, reading GeoBench) run next, in their own
modules: ``geo_factory.hooks`` calls them. ``hparams`` imports nothing of geo-factory above it.
"""

from typing import TYPE_CHECKING

from ..datasets import check_dataset_names
from .checks import check_task_dir
from .data_args import TOKEN_MIX, check_token_mixture
from .tspt_args import STAGES


if TYPE_CHECKING:
    from llamafactory.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    from .decontamination_args import DecontaminationArguments
    from .geobench_args import GeoBenchTrainArguments
    from .tspt_args import TsptArguments


def apply_extension_args(
    model_args: "ModelArguments",
    data_args: "DataArguments",
    training_args: "Seq2SeqTrainingArguments",
    finetuning_args: "FinetuningArguments",
    generating_args: "GeneratingArguments",
    tspt_args: "TsptArguments",
    geobench_args: "GeoBenchTrainArguments",
    decontamination_args: "DecontaminationArguments",
) -> None:
    """Validate geo-factory's arguments right after parsing, before any model, data or output work; hand them over."""
    if finetuning_args.stage == "tspt":
        tspt_args.validate(model_args, data_args, training_args, finetuning_args)
        # LLaMA-Factory insists on a dataset for training, and on max_steps when streaming: give it TSPT's own.
        data_args.dataset = tspt_args.all_datasets()
        if data_args.streaming:
            training_args.max_steps = sum(tspt_args.stage_steps(s, data_args, training_args) for s in STAGES)
        finetuning_args.stage = "pt"
        finetuning_args.tspt = tspt_args
    else:
        tspt_args.reject_outside_tspt(finetuning_args.stage)
    if data_args.mix_strategy == TOKEN_MIX:
        check_token_mixture(data_args, training_args, finetuning_args)
        finetuning_args.disable_shuffling = True  # the trainer reads the mixture's order: a new one each epoch
        finetuning_args.mixture = list(data_args.dataset)  # its trainer logs each dataset's loss and tokens

    check_dataset_names(data_args.dataset, data_args.dataset_dir, key="dataset", cache_dir=model_args.cache_dir)
    check_dataset_names(
        data_args.eval_dataset, data_args.dataset_dir, key="eval_dataset", cache_dir=model_args.cache_dir
    )
    if geobench_args.geobench_eval_steps:
        finetuning_args.geobench = geobench_args
    if decontamination_args.geobench_decontaminate:
        if decontamination_args.geobench_decontaminate_task_dir is None:  # one GeoBench folder per run
            check_task_dir("geobench_task_dir", geobench_args.geobench_task_dir)
            decontamination_args.geobench_decontaminate_task_dir = geobench_args.geobench_task_dir
        data_args.geobench_decontamination = decontamination_args
