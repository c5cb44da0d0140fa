"""Batched generation on a Hugging Face model: the one generator behind ``eval_mode: generate`` with
``infer_backend: huggingface`` and lm-evaluation-harness's ``generate_until`` requests.

Prompts are token ids; a batch is left-padded (pads masked out, so a row generates what it would alone, up to
float rounding) and sorted by length so that rows of one batch carry little padding. A row is cut after its
first stop token, as a lone generation ends there, and its text at the first stop string.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch


if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizer


class BatchGenerator:
    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizer, batch_size: int) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.pad_id = next(i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if i is not None)

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[list[int]],
        stop_ids: Iterable[int] = (),
        stop_strings: list[str] | None = None,
        decode: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """The reply to each prompt, in order. ``kwargs`` go to ``model.generate`` (``generation_config`` or its
        fields); ``decode`` to ``tokenizer.decode``."""
        stops = [text for text in stop_strings or [] if text]
        stop_ids = set(stop_ids)
        replies: list[str] = [""] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        device = self.model.device
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(prompts[i]) for i in batch)
            input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
                attention_mask[row, width - len(prompts[i]) :] = 1
            extra = {"stop_strings": stops, "tokenizer": self.tokenizer} if stops else {}
            output = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                pad_token_id=self.pad_id,
                **extra,
                **kwargs,
            )
            for row, i in enumerate(batch):
                tokens = output[row, width:].tolist()
                end = next((n + 1 for n, token in enumerate(tokens) if token in stop_ids), len(tokens))
                text = self.tokenizer.decode(tokens[:end], **(decode or {"skip_special_tokens": True}))
                for stop in stops:
                    text = text.split(stop)[0]
                replies[i] = text
        return replies
