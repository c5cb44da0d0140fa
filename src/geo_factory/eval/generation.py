"""Batched generation on a Hugging Face model: the one generator behind ``eval_mode: generate`` with
``infer_backend: huggingface`` and lm-evaluation-harness's ``generate_until`` requests.

Prompts are token ids, sorted by their tokens and cut into clusters that share a prefix (a few-shot prompt's
exemplars; :func:`.scoring._clusters`, the likelihood scorer's rule): a cluster's prefix runs once and its cache
starts every batch of the cluster. After the prefix a batch is left-padded and sorted by length: pads are masked out
and positions count real tokens only, so a row generates what it would alone, up to float rounding. A row is cut
after its first stop token, as a lone generation ends there, and its text at the first stop string.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from .scoring import _clusters, _common_prefix, _plain_cache, expanded, run_prefix


if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizer


class BatchGenerator:
    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizer, batch_size: int) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.pad_id = next(i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if i is not None)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.prefix_cache_ok = _plain_cache(base.config)

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
        order = sorted(range(len(prompts)), key=lambda i: prompts[i])
        clusters = _clusters([tuple(prompts[i]) for i in order]) if self.prefix_cache_ok else [list(range(len(order)))]
        for cluster in clusters:
            members = sorted((order[j] for j in cluster), key=lambda i: -len(prompts[i]))
            prefix, cache = self._prefix([prompts[i] for i in members]) if len(members) > 1 else (0, None)
            for start in range(0, len(members), self.batch_size):
                batch = members[start : start + self.batch_size]
                rows = self._generate([prompts[i] for i in batch], prefix, cache, stops, kwargs)
                for i, tokens in zip(batch, rows):
                    end = next((n + 1 for n, token in enumerate(tokens) if token in stop_ids), len(tokens))
                    text = self.tokenizer.decode(tokens[:end], **(decode or {"skip_special_tokens": True}))
                    for stop in stops:
                        text = text.split(stop)[0]
                    replies[i] = text
        return replies

    def _prefix(self, prompts: list[list[int]]) -> tuple[int, Any]:
        """Run the prefix the prompts share (each keeps one token of its own) once; (its length, its cache)."""
        length = min(_common_prefix(prompts), min(map(len, prompts)) - 1)
        cache = run_prefix(self.model, prompts[0][:length]) if length >= 1 else None
        if cache is None:
            self.prefix_cache_ok = self.prefix_cache_ok and length < 1
            return 0, None
        return length, cache

    def _generate(
        self, prompts: list[list[int]], prefix: int, cache: Any, stops: list[str], kwargs: dict[str, Any]
    ) -> list[list[int]]:
        """The new tokens of each prompt: the shared prefix from ``cache``, then each row's rest, left-padded."""
        rows, device = len(prompts), self.model.device
        width = max(len(prompt) for prompt in prompts) - prefix
        input_ids = torch.full((rows, prefix + width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((rows, prefix + width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, :prefix] = torch.tensor(prompt[:prefix])
            input_ids[row, prefix + width - (len(prompt) - prefix) :] = torch.tensor(prompt[prefix:])
            attention_mask[row, :prefix] = 1
            attention_mask[row, prefix + width - (len(prompt) - prefix) :] = 1
        extra = {"stop_strings": stops, "tokenizer": self.tokenizer} if stops else {}
        if cache is not None:
            extra["past_key_values"] = expanded(cache, rows)
        output = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            pad_token_id=self.pad_id,
            **extra,
            **kwargs,
        )
        return output[:, prefix + width :].tolist()
