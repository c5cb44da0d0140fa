"""GeoBench during ``llamafactory-cli train``: the objective tasks in likelihood mode every N steps, and the
general benchmarks (MMLU, CMMLU, C-Eval) beside them, so one run logs geoscience gain and general forgetting.

The metrics go through ``Trainer.log``, the one call that reaches everything watching a run: the
``report_to`` integrations, ``state.log_history`` (trainer_state.json) and LLaMA-Factory's ``LogCallback``
(trainer_log.jsonl, which geo_factory.hooks extends to carry ``geobench_*`` keys). A callback is not
given the trainer, so geo_factory.hooks hands it over after the trainer is built (``set_trainer``, as
transformers does for its own JIT checkpoint callback). Every rank runs the same evaluation, so models
sharded with DeepSpeed ZeRO-3 or FSDP take part in each forward, and logs like the Trainer does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from llamafactory.extras import logging
from transformers import TrainerCallback

from . import general
from .data import detect_layout, resolve_task_dir
from .prompts import Budget, check_n_shot, subset
from .scoring import Encoded, LikelihoodScorer, PromptEncoder, choice_prompts, likelihood_records
from .tasks import AVERAGE, AVERAGE_OF, expand, families


if TYPE_CHECKING:
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments

    from ..hparams import GeoBenchTrainArguments


logger = logging.get_logger(f"llamafactory.{__name__}")  # under LLaMA-Factory's logger: its format and verbosity


class GeoBenchCallback(TrainerCallback):
    def __init__(
        self, geobench_args: GeoBenchTrainArguments, model_args: ModelArguments, data_args: DataArguments
    ) -> None:
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.model import load_tokenizer

        self.args = args = geobench_args
        geobench_names, general_names = families(args.task_names)
        self.questions: dict[str, list] = {}
        if geobench_names:
            folder = resolve_task_dir(args.geobench_task_dir, model_args.cache_dir, model_args.hf_hub_token)
            layout = detect_layout(folder)
            self.questions = {t.name: t.load(folder, layout) for t in expand(geobench_names, layout, folder)}
            check_n_shot("geobench_n_shot", args.geobench_n_shot, self.questions)
        self.selected = {
            name: subset(questions, args.geobench_max_samples, args.geobench_seed)
            for name, questions in self.questions.items()
        }
        # the general benchmarks: exemplars from each subject's dev split, `geobench_max_samples` per subject
        benchmarks = {name: general.load(Path(args.geobench_general_task_dir), name) for name in general_names}
        general.check_n_shot("geobench_n_shot", args.geobench_n_shot, benchmarks)
        self.samplers = {name: general.DevExemplars(data, args.geobench_n_shot) for name, data in benchmarks.items()}
        for name, data in benchmarks.items():
            self.questions[name] = data.questions
            self.selected[name] = general.select(data, args.geobench_max_samples, args.geobench_seed)
        self.langs = {
            name: args.geobench_lang or (general.BENCHMARKS[name].lang if name in benchmarks else "en")
            for name in self.questions
        }
        # The run's template, resolved as LLaMA-Factory resolves it but on a tokenizer of its own: by the first
        # GeoBench step the training tokenizer's chat template has been rewritten (`empty` cannot be parsed back).
        self.template = get_template_and_fix_tokenizer(load_tokenizer(model_args)["tokenizer"], data_args)
        self.trainer: Trainer | None = None
        self.encoder: PromptEncoder | None = None
        self.prompts: dict[str, list[Encoded]] = {}

    def set_trainer(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Build every prompt once per trainer (a TSPT stage may have expanded the vocabulary), fitted to the model."""
        if self.trainer is None:
            raise RuntimeError(
                "GeoBenchCallback logs through its trainer, which geo_factory.hooks hands over for LLaMA-Factory's "
                "pt and sft trainers only; this trainer was built without it."
            )
        processing_class = kwargs["processing_class"]
        self.encoder = PromptEncoder(getattr(processing_class, "tokenizer", processing_class), self.template)
        positions = getattr(kwargs["model"].config.get_text_config(), "max_position_embeddings", None)
        budget = (
            Budget(positions, f"the model's context (`max_position_embeddings: {positions}`)") if positions else None
        )
        a = self.args
        for name, questions in self.questions.items():
            self.prompts[name] = choice_prompts(
                self.encoder,
                questions,
                self.selected[name],
                a.geobench_n_shot,
                a.geobench_seed,
                self.langs[name],
                budget,
                self.samplers.get(name),
            )
            fewer = sum(len(item.group) < a.geobench_n_shot for item in self.prompts[name])
            if fewer:
                logger.warning_rank0(
                    f"GeoBench: {fewer} `{name}` questions keep fewer than {a.geobench_n_shot} exemplars to fit "
                    f"{budget.source}."
                )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.global_step % self.args.geobench_eval_steps == 0:
            should_log = control.should_log  # Trainer.log clears it: keep the step's own loss log
            self.trainer.log(self.evaluate(kwargs["model"]))
            control.should_log = should_log

    def evaluate(self, model: Any) -> dict[str, float]:
        scorer = LikelihoodScorer(model, self.encoder.tokenizer, self.template, self.args.geobench_batch_size)
        metrics = {}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self.trainer.autocast_smart_context_manager():
                for name, items in self.prompts.items():
                    records = [
                        record for batch in likelihood_records(scorer, self.selected[name], items) for record in batch
                    ]
                    key = f"{name}_acc" if name.startswith("geobench_") else f"geobench_{name}_acc"
                    metrics[key] = round(100 * sum(r["correct"] for r in records) / len(records), 4)
        finally:
            model.train(was_training)
        if all(f"{name}_acc" in metrics for name in AVERAGE_OF):
            metrics[f"{AVERAGE}_acc"] = round(sum(metrics[f"{name}_acc"] for name in AVERAGE_OF) / len(AVERAGE_OF), 4)
        return metrics
