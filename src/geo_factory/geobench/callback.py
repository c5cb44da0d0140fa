"""GeoBench during ``llamafactory-cli train``: the objective tasks in likelihood mode every N steps.

The metrics go through ``Trainer.log``, the one call that reaches everything watching a run: the
``report_to`` integrations, ``state.log_history`` (trainer_state.json) and LLaMA-Factory's ``LogCallback``
(trainer_log.jsonl, which geo_factory.hooks extends to carry ``geobench_*`` keys). A callback is not
given the trainer, so geo_factory.hooks hands it over after the trainer is built (``set_trainer``, as
transformers does for its own JIT checkpoint callback). Every rank runs the same evaluation, so models
sharded with DeepSpeed ZeRO-3 or FSDP take part in each forward, and logs like the Trainer does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback

from .data import detect_layout, resolve_task_dir
from .scoring import LikelihoodScorer, likelihood_records
from .tasks import AVERAGE, AVERAGE_OF, expand


if TYPE_CHECKING:
    from llamafactory.data import Template
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments

    from ..hparams import GeoBenchTrainArguments


class GeoBenchCallback(TrainerCallback):
    def __init__(
        self, geobench_args: GeoBenchTrainArguments, model_args: ModelArguments, data_args: DataArguments
    ) -> None:
        self.args, self.data_args = geobench_args, data_args
        folder = resolve_task_dir(geobench_args.geobench_task_dir, model_args.cache_dir, model_args.hf_hub_token)
        layout = detect_layout(folder)
        self.questions = {t.name: t.load(folder, layout) for t in expand(geobench_args.task_names, layout, folder)}
        self.trainer: Trainer | None = None
        self.template: Template | None = None

    def set_trainer(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.trainer is None:
            raise RuntimeError(
                "GeoBenchCallback logs through its trainer, which geo_factory.hooks hands over for LLaMA-Factory's "
                "pt and sft trainers only; this trainer was built without it."
            )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.global_step % self.args.geobench_eval_steps == 0:
            should_log = control.should_log  # Trainer.log clears it: keep the step's own loss log
            self.trainer.log(self.evaluate(kwargs["model"], kwargs["processing_class"]))
            control.should_log = should_log

    def evaluate(self, model: Any, processing_class: Any) -> dict[str, float]:
        from llamafactory.data import get_template_and_fix_tokenizer

        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        if self.template is None:  # the training run's template (its tokenizer is fixed already)
            self.template = get_template_and_fix_tokenizer(tokenizer, self.data_args)
        scorer = LikelihoodScorer(model, tokenizer, self.template, self.args.geobench_batch_size)
        limit, metrics = self.args.geobench_max_samples, {}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self.trainer.autocast_smart_context_manager():
                for name, questions in self.questions.items():
                    todo = questions[:limit] if limit else questions
                    records = [
                        record
                        for batch in likelihood_records(
                            scorer,
                            questions,
                            todo,
                            self.args.geobench_n_shot,
                            self.args.geobench_seed,
                            self.args.geobench_lang,
                        )
                        for record in batch
                    ]
                    metrics[f"{name}_acc"] = round(100 * sum(r["correct"] for r in records) / len(records), 4)
        finally:
            model.train(was_training)
        if all(f"{name}_acc" in metrics for name in AVERAGE_OF):
            metrics[f"{AVERAGE}_acc"] = round(sum(metrics[f"{name}_acc"] for name in AVERAGE_OF) / len(AVERAGE_OF), 4)
        return metrics
