"""geo-factory as an lm-evaluation-harness model: the harness keeps its tasks, prompts, few-shot sampling, filters,
metrics and aggregation; this class answers its requests, all of a run's at once.

``loglikelihood`` (through the harness's own ``TemplateLM`` tokenization: trailing context spaces go to the
continuation, an empty context is the prefix token) and ``loglikelihood_rolling`` are scored by geo-factory's
shared-prefix batched scorer (:meth:`.scoring.LikelihoodScorer.continuations`): the options of one context run its
prefix once. ``generate_until`` runs the batched generator (:mod:`.generation`) with the harness's stop strings and
``max_gen_toks``, greedy or sampled as the task's ``generation_kwargs`` say. Contexts are cut from the left to the
model's length as the harness's Hugging Face backend cuts them, so the same requests meet the same tokens.

Under torchrun every process runs the harness whole, as one process would (the harness's few-shot draws follow one
random sequence over the documents in order, so splitting the documents would change the prompts), and the
*requests* are shared: each process answers a contiguous share of them in the scorer's order (distinct rows sorted
by their tokens, so a shared prefix stays on one process; generations by length) and every process receives every
answer. A request is answered on its own tokens whichever process answers it, so the answers are one process's.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from .distributed import World, shares
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
        self.world = world or World()  # the harness itself sees one process: see the module's docstring
        self.answered = self.requested = 0  # requests this process answered, of those the harness sent (all ranks')
        self.scorer = LikelihoodScorer(model, tokenizer, template, batch_size)
        self.generator = BatchGenerator(model, tokenizer, batch_size)
        self._device = model.device

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
        rows = sorted({item.row for item in items})
        mine = {rows[i] for i in shares(rows, self.world.size)[self.world.rank]}
        share = [i for i, item in enumerate(items) if item.row in mine]
        answers: dict[int, tuple[float, bool]] = {}
        with tqdm(total=len(share), desc="loglikelihood", disable=disable_tqdm or not self.world.main) as bar:
            for batch in self.scorer.continuations([items[i] for i in share]):
                for j, logprob, greedy in batch:
                    answers[share[j]] = (logprob, greedy)
                bar.update(len(batch))
        self.answered, self.requested = self.answered + len(share), self.requested + len(items)
        answers = self._everyone(answers)
        for i, (strings, _, _) in enumerate(requests):
            if strings is not None:
                self.cache_hook.add_partial("loglikelihood", strings, answers[i])
        return [answers[i] for i in range(len(items))]

    def _everyone(self, answers: dict[int, Any]) -> dict[int, Any]:
        """Every process's answers, on every process."""
        if self.world.size == 1:
            return answers
        import torch.distributed as dist

        every: list[dict[int, Any] | None] = [None] * self.world.size
        dist.all_gather_object(every, answers)
        return {i: answer for part in every for i, answer in part.items()}

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
                prompts = {i: self.tok_encode(requests[i].args[0])[-room:] for i in members}
                by_length = sorted(members, key=lambda i: -len(prompts[i]))
                share = [by_length[j] for j in shares(by_length, self.world.size)[self.world.rank]]
                texts = self.generator.generate(
                    [prompts[i] for i in share],
                    stop_ids={self.eot_token_id},
                    stop_strings=until,
                    max_new_tokens=max_gen_toks,
                    **kwargs,
                )
                self.answered, self.requested = self.answered + len(share), self.requested + len(members)
                for i, text in self._everyone(dict(zip(share, texts))).items():
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
