"""GeoBench during ``llamafactory-cli train``: the objective tasks in likelihood mode every N steps, and the
general benchmarks (MMLU, CMMLU, C-Eval) beside them, so one run logs geoscience gain and general forgetting.

The metrics go through ``Trainer.log``, the one call that reaches everything watching a run: the
``report_to`` integrations, ``state.log_history`` (trainer_state.json) and LLaMA-Factory's ``LogCallback``
(trainer_log.jsonl, which geo_factory.hooks extends to carry ``geobench_*`` keys). A callback is not
given the trainer, so geo_factory.hooks hands it over after the trainer is built (``set_trainer``, as
transformers does for its own JIT checkpoint callback). Under DDP, FSDP or DeepSpeed each rank scores its own
share of the questions (:mod:`.distributed`) and makes as many forward passes as the busiest rank (one-token passes
make up the difference), so a model sharded with ZeRO-3 or FSDP never waits on a rank that has finished; the counts
are summed over the ranks before ``Trainer.log``, which every rank calls as the Trainer does. The `lm_eval:` tasks'
requests are shared among the ranks too, unless the model is sharded (``GeoBenchCallback._harness_scores``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from llamafactory.extras import logging
from transformers import TrainerCallback

from .distributed import World, current, shares
from .plan import for_training
from .prompts import Budget
from .scoring import Encoded, LikelihoodScorer, PromptEncoder, likelihood_records
from .tasks import AVERAGE, average


if TYPE_CHECKING:
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments

    from ..hparams import GeoBenchTrainArguments


logger = logging.get_logger(f"llamafactory.{__name__}")  # under LLaMA-Factory's logger: its format and verbosity


class GeoBenchCallback(TrainerCallback):
    """Scores the plan's tasks every `geobench_eval_steps` and logs their accuracies through the trainer."""

    def __init__(
        self, geobench_args: GeoBenchTrainArguments, model_args: ModelArguments, data_args: DataArguments
    ) -> None:
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.model import load_tokenizer

        self.args = geobench_args
        self.plan = for_training(geobench_args, model_args.cache_dir, model_args.hf_hub_token)
        self.plan.load()
        # The run's template, resolved as LLaMA-Factory resolves it but on a tokenizer of its own: by the first
        # GeoBench step the training tokenizer's chat template has been rewritten (`empty` cannot be parsed back).
        self.template = get_template_and_fix_tokenizer(load_tokenizer(model_args)["tokenizer"], data_args)
        self.trainer: Trainer | None = None
        self.encoder: PromptEncoder | None = None
        self.prompts: dict[str, list[Encoded]] = {}
        self.shares: dict[str, list[int]] = {}  # this rank's questions of each task
        self.idle = 0  # one-token forward passes that keep this rank in step with the busiest one
        self.max_length = 2048  # the model's positions, for the `lm_eval:` tasks' windows and truncation

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
        self.max_length = positions or self.max_length
        n_shot = self.args.geobench_n_shot
        for task in self.plan.tasks:
            self.prompts[task.name] = task.prompts(self.encoder, lambda _: budget)
            fewer = sum(len(item.group) < n_shot for item in self.prompts[task.name])
            if fewer:
                logger.warning_rank0(
                    f"GeoBench: {fewer} `{task.name}` questions keep fewer than {n_shot} exemplars to fit "
                    f"{budget.source}."
                )
        self._share(kwargs["model"])

    def _share(self, model: Any) -> None:
        """Each rank's questions (:func:`.distributed.shares`), and the idle passes that make every rank's forward
        count the busiest rank's."""
        world = current()
        scorer = LikelihoodScorer(model, self.encoder.tokenizer, self.template, self.args.geobench_batch_size)
        every = {name: shares(prompts, world.size) for name, prompts in self.prompts.items()}
        passes = [
            sum(scorer.forwards([self.prompts[name][i] for i in ranks[rank]]) for name, ranks in every.items())
            for rank in range(world.size)
        ]
        self.shares = {name: ranks[world.rank] for name, ranks in every.items()}
        self.idle = max(passes) - passes[world.rank]
        if world.size > 1:
            scored = sum(map(len, self.shares.values()))
            total = sum(map(len, self.prompts.values()))
            logger.info(
                f"GeoBench: rank {world.rank} of {world.size} scores {scored} of {total} questions in "
                f"{max(passes)} forward passes per evaluation ({self.idle} of them idle)."
            )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.global_step % self.args.geobench_eval_steps == 0:
            should_log = control.should_log  # Trainer.log clears it: keep the step's own loss log
            self.trainer.log(self.evaluate(kwargs["model"]))
            control.should_log = should_log

    def evaluate(self, model: Any) -> dict[str, float]:
        scorer = LikelihoodScorer(model, self.encoder.tokenizer, self.template, self.args.geobench_batch_size)
        counts: list[int] = []  # correct, scored: per task, this rank's share
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self.trainer.autocast_smart_context_manager():
                for task in self.plan.tasks:
                    mine = self.shares[task.name]
                    questions = [task.selected[i] for i in mine]
                    items = [self.prompts[task.name][i] for i in mine]
                    records = [r for batch in likelihood_records(scorer, questions, items) for r in batch]
                    counts += [sum(r["correct"] for r in records), len(records)]
                for _ in range(self.idle):
                    scorer.idle_forward()
                harness = self._harness_scores(model) if self.plan.harness is not None else {}
        finally:
            model.train(was_training)
        counts = current().sum(counts, device=self.trainer.args.device)
        accuracies = {
            task.name: round(100 * correct / scored, 4)
            for task, correct, scored in zip(self.plan.tasks, counts[::2], counts[1::2])
        }
        if average(accuracies) is not None:
            accuracies[AVERAGE] = average(accuracies)
        return {**{metric_key(name): accuracy for name, accuracy in accuracies.items()}, **harness}

    def _harness_scores(self, model: Any) -> dict[str, float]:
        """The `lm_eval:` tasks on the training model, every metric (stderr aside) as
        ``geobench_lm_eval_<task>_<metric>``.

        Every rank runs the harness whole; each answers a share of its requests and receives the others' answers
        (:mod:`.harness`), so the scores are one process's. A sharded model (:meth:`_sharded`) is the exception:
        there every forward pass is a collective, and the harness's requests cannot be kept in step as the native
        questions are (a share's forward passes are known only inside the scorer's clustering, a generation's only
        once generated), so every rank answers every request: the same requests, the same passes in the same order
        (the harness seeds every rank alike, so sampled replies agree too)."""
        from .harness import GeoFactoryLM

        world, sharded = current(), self._sharded()
        lm = GeoFactoryLM(
            model, self.encoder.tokenizer, self.template, self.args.geobench_batch_size, self.max_length,
            world=World() if sharded else world,
        )  # fmt: skip
        scores = {}
        with _training_randomness_kept():
            for name in self.plan.harness.names:
                for task, summary in self.plan.harness.evaluate(name, lm, {"pretrained": "training"}).items():
                    for metric, value in summary["metrics"].items():
                        if "_stderr" not in metric:
                            scores[harness_key(task, metric)] = value
        if world.size > 1:
            logger.info(
                f"GeoBench: rank {world.rank} of {world.size} answered {lm.answered} of {lm.requested} lm_eval "
                f"requests{' (a sharded model: every rank answers every request)' if sharded else ''}."
            )
        return scores

    def _sharded(self) -> bool:
        """Whether the model's forward passes are collectives: FSDP, or DeepSpeed ZeRO-3 (ZeRO-1 and 2 shard the
        optimizer and gradients only; DDP's collective is in its wrapper's forward, and the callback is given the
        module inside it, as the Trainer hands its callbacks ``trainer.model``)."""
        trainer = self.trainer
        return trainer.is_fsdp_enabled or (
            trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
        )


@contextmanager
def _training_randomness_kept() -> Iterator[None]:
    """The harness seeds python's, numpy's and torch's generators for its few-shot draws and sampling; training goes
    on from the state it had (dropout masks, anything else drawn), as if it had not been evaluated."""
    import random

    import numpy as np

    state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []  # this rank's device only
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])


def harness_key(task: str, metric: str) -> str:
    """The logged key of a harness metric: ``geobench_lm_eval_arc_easy_acc`` (the `none` filter left out, another
    filter after the metric: ``geobench_lm_eval_gsm8k_exact_match_strict-match``)."""
    name, _, kept = metric.partition(",")
    return f"geobench_lm_eval_{task.removeprefix('lm_eval:')}_{name}" + ("" if kept == "none" else f"_{kept}")


def metric_key(task: str) -> str:
    """The logged key of a task's accuracy: ``geobench_<task>_acc``, as documented (``geobench_mmlu_test_acc``)."""
    return f"{task}_acc" if task.startswith("geobench_") else f"geobench_{task}_acc"
