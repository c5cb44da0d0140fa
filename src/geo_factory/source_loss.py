"""Training loss and tokens per source of a mixture: ``loss_<dataset>`` and ``tokens_<dataset>`` at every logging step.

Each row of a mixture carries its dataset (``mix_source``, see :mod:`geo_factory.mixing`). The trainer's
``compute_loss`` hands the meter each micro-batch's logits and labels (see hooks.py); the meter sums, per dataset and
on the device (no synchronisation per step), the cross-entropy of the tokens the loss counts and their number. At
each logging step ``Trainer.log`` adds, summed over processes, the mean loss of each dataset's tokens since the last
logging step (absent for a dataset with no token in that window) and its trained tokens so far: the same row reaches
``log_history``, trainer_log.jsonl and every ``report_to`` integration. The token counts are saved in each
checkpoint's trainer state (an ``ExportableState`` callback), so a resumed run continues them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from llamafactory.extras.constants import IGNORE_INDEX
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .mixing import SOURCE_COLUMN


if TYPE_CHECKING:
    from transformers import Trainer


class SourceMeter(TrainerCallback, ExportableState):
    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.tokens = [0] * len(self.names)  # trained tokens so far, per dataset
        self._loss: torch.Tensor | None = None  # since the last logging step: summed token losses and their count
        self._count: torch.Tensor | None = None

    def state(self) -> dict[str, Any]:
        return {"args": {"names": self.names}, "attributes": {"tokens": self.tokens}}

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        """A resumed run: the counts of the checkpoint it resumes from (its trainer state was just loaded)."""
        saved = state.stateful_callbacks.get(type(self).__name__)
        if isinstance(saved, dict) and saved.get("args", {}).get("names") == self.names:
            self.tokens = [int(n) for n in saved["attributes"]["tokens"]]

    def record(self, source: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None) -> None:
        """One micro-batch: each row's dataset, labels and (when the model returned them) logits."""
        with torch.no_grad():
            labels = labels[:, 1:]
            source = source.to(labels.device)
            if self._count is None:
                self._count = torch.zeros(len(self.names), dtype=torch.long, device=labels.device)
                self._loss = torch.zeros(len(self.names), dtype=torch.float64, device=labels.device)
            self._count.index_add_(0, source, (labels != IGNORE_INDEX).sum(dim=1))
            if logits is None:  # a fused loss kernel returned none: this window has tokens only
                self._loss.fill_(float("nan"))
                return
            losses = torch.stack(  # a row at a time: one row's float32 logits in memory
                [
                    F.cross_entropy(logits[r, :-1].float(), labels[r], ignore_index=IGNORE_INDEX, reduction="sum")
                    for r in range(labels.shape[0])
                ]
            )
            self._loss.index_add_(0, source, losses.double())

    def flush(self, trainer: Trainer) -> dict[str, float | int]:
        """The logging step's keys, summed over processes (every process logs); the window starts again."""
        device = trainer.args.device
        window = torch.zeros(2, len(self.names), dtype=torch.float64, device=device)
        if self._count is not None:
            window[0], window[1] = self._count.to(device), self._loss.to(device)
        count, loss = trainer.accelerator.reduce(window, "sum").tolist()
        self._count = self._loss = None
        logs: dict[str, float | int] = {}
        for j, name in enumerate(self.names):
            self.tokens[j] += int(count[j])
            if count[j] > 0 and loss[j] == loss[j]:  # not NaN
                logs[f"loss_{name}"] = round(loss[j] / count[j], 4)
            logs[f"tokens_{name}"] = self.tokens[j]
        return logs


def meter_of(trainer: Trainer) -> SourceMeter | None:
    return next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SourceMeter)), None)


def attach(trainer: Trainer) -> None:
    """A trainer of a mixture (``finetuning_args.mixture``: its dataset names) gets a meter, first among the
    callbacks."""
    names = getattr(trainer.finetuning_args, "mixture", None)
    if names:
        trainer.callback_handler.callbacks.insert(0, SourceMeter(names))


def compute_loss(original, trainer: Trainer, model, inputs: dict[str, Any], *args, **kwargs):
    """The trainer's own ``compute_loss`` without the rows' dataset, which the meter takes with the logits."""
    source = inputs.pop(SOURCE_COLUMN, None)
    meter = meter_of(trainer) if source is not None else None
    if meter is None or not model.training:
        return original(trainer, model, inputs, *args, **kwargs)
    return_outputs = kwargs.pop("return_outputs", args[0] if args else False)
    labels = inputs["labels"]  # before the loss may pop it from ``inputs``
    result = original(trainer, model, inputs, True, *args[1:], **kwargs)
    loss, outputs = result if isinstance(result, tuple) else (result, None)
    logits = getattr(outputs, "logits", None) if outputs is not None else None
    if logits is None and isinstance(outputs, dict):
        logits = outputs.get("logits")
    meter.record(source, labels, logits)
    return (loss, outputs) if return_outputs else loss


def log(original, trainer: Trainer, logs: dict[str, float], *args, **kwargs) -> None:
    """A training logging step (its row has ``loss``) gets the meter's keys before anyone sees the row."""
    meter = meter_of(trainer) if "loss" in logs else None
    if meter is not None:
        logs.update(meter.flush(trainer))
    return original(trainer, logs, *args, **kwargs)
