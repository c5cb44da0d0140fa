"""geo-factory as an lm-evaluation-harness model: the harness keeps its tasks, prompts, few-shot sampling, filters,
metrics and aggregation; this class answers its requests, all of a run's at once.

``loglikelihood`` (through the harness's own ``TemplateLM`` tokenization: trailing context spaces go to the
continuation, an empty context is the prefix token) and ``loglikelihood_rolling`` are scored by geo-factory's
shared-prefix batched scorer (:meth:`.scoring.LikelihoodScorer.continuations`): the options of one context run its
prefix once. ``generate_until`` runs the batched generator (:mod:`.generation`) with the harness's stop strings and
``max_gen_toks``, greedy or sampled as the task's ``generation_kwargs`` say. Contexts are cut from the left to the
model's length as the harness's Hugging Face backend cuts them, so the same requests meet the same tokens. Under
torchrun the harness gives each rank every world-size-th document and gathers them on rank 0 through
:meth:`all_gather` and :meth:`gather_object`; a document is scored on its own tokens whichever rank scores it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from .distributed import World
from .generation import BatchGenerator
from .scoring import Continuation, LikelihoodScorer


if TYPE_CHECKING:
    from llamafactory.data import Template
    from lm_eval.api.instance import Instance
    from transformers import PreTrainedModel, PreTrainedTokenizer


DEFAULT_MAX_GEN_TOKS = 256  # the harness's Hugging Face default when a task sets none


class GeoFactoryLM(TemplateLM):
    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizer,
        template: Template,
        batch_size: int,
        max_length: int,
        template_name: str | None = None,
        world: World | None = None,
    ) -> None:
        super().__init__()
        self.tokenizer, self.template, self.max_length = tokenizer, template, max_length
        self.template_name = template_name or "default"
        world = world or World()
        self._rank, self._world_size = world.rank, world.size  # the harness gives each rank its share of documents
        self.scorer = LikelihoodScorer(model, tokenizer, template, batch_size)
        self.generator = BatchGenerator(model, tokenizer, batch_size)
        self._device = model.device

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's tensor, concatenated (the harness gathers request counts with it)."""
        if self.world_size == 1:
            return tensor
        import torch.distributed as dist

        tensor = tensor.reshape(1) if tensor.dim() == 0 else tensor
        every = [torch.zeros_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(every, tensor)
        return torch.cat(every)

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        every = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, every, dst=dst)
        return every

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The run's LLaMA-Factory template by name (what the harness records with the results)."""
        return self.template_name if chat_template else None

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """As the harness's Hugging Face backend: the tokenizer's own special tokens, none when the text starts with
        the prefix token already (a chat-templated prompt)."""
        if add_special_tokens is None and string.startswith(self.tokenizer.decode(self.prefix_token_id)):
            add_special_tokens = False
        options = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        return self.tokenizer.encode(string, **options)

    def _loglikelihood_tokens(self, requests: list[Any], disable_tqdm: bool = False, **kwargs: Any):
        """(summed log-probability, greedy) of each ``(strings, context ids, continuation ids)``."""
        items = []
        for _, context, continuation in requests:
            whole = (context + continuation)[-(self.max_length + 1) :]
            items.append(Continuation(whole[: len(whole) - len(continuation)], continuation))
        answers: list[tuple[float, bool] | None] = [None] * len(items)
        with tqdm(total=len(items), desc="loglikelihood", disable=disable_tqdm) as bar:
            for batch in self.scorer.continuations(items):
                for i, logprob, greedy in batch:
                    answers[i] = (logprob, greedy)
                    if requests[i][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[i][0], answers[i])
                bar.update(len(batch))
        return answers

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        """The whole text's log-probability, in the harness's disjoint windows of the model's length."""
        windows, owner = [], []
        for index, (text,) in enumerate(request.args for request in requests):
            for window in get_rolling_token_windows(
                token_list=self.tok_encode(text),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            ):
                windows.append((None, *make_disjoint_window(window)))
                owner.append(index)
        totals = [0.0] * len(requests)
        for index, (logprob, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm)):
            totals[index] += logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Replies, batched over the requests that share generation settings."""
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        eos = self.tokenizer.decode(self.eot_token_id)
        replies: list[str] = [""] * len(requests)
        with tqdm(total=len(requests), desc="generate_until", disable=disable_tqdm) as bar:
            for members in groups.values():
                kwargs = normalize_gen_kwargs(requests[members[0]].args[1], DEFAULT_MAX_GEN_TOKS)
                until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
                max_gen_toks = kwargs.pop("max_gen_toks")
                if not kwargs.get("do_sample"):
                    kwargs.pop("temperature", None)
                room = self.max_length - max_gen_toks
                if room < 1:
                    raise ValueError(
                        f"`max_gen_toks: {max_gen_toks}` leaves no room for a prompt in the model's {self.max_length} "
                        "positions."
                    )
                prompts = [self.tok_encode(requests[i].args[0])[-room:] for i in members]
                texts = self.generator.generate(
                    prompts, stop_ids={self.eot_token_id}, stop_strings=until, max_new_tokens=max_gen_toks, **kwargs
                )
                for i, text in zip(members, texts):
                    replies[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                bar.update(len(members))
        return replies

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The conversation as the run's LLaMA-Factory template writes it (``template`` in the yaml), as text."""
        messages = [m for m in chat_history if m["role"] != "system"]
        system = next((m["content"] for m in chat_history if m["role"] == "system"), None)
        partial = "" if add_generation_prompt else messages.pop()["content"]
        prompt_ids, _ = self.template.encode_oneturn(
            self.tokenizer, [*messages, {"role": "assistant", "content": ""}], system
        )
        return self.tokenizer.decode(prompt_ids) + partial
