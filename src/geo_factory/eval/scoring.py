"""Objective scoring: option likelihood (K2's method, batched) and generation with answer extraction.

Likelihood: the probability of each option's first token right after the prompt, normalised over the
options. Why batching never changes an answer: a question is scored on exactly the tokens and positions it
would have alone. Prompts are grouped by their exemplars; the longest token prefix a group shares is run
once and its key/value cache is given to every batch of the group. The rest of each prompt is left-padded:
pads are masked out of the attention, positions continue from the prefix counting real tokens only
(``attention_mask.cumsum - 1``), and with the causal mask a real token never sees a later one, so each row
computes what it would compute alone, up to float rounding. Left padding puts every prompt's last token in
the last column, so only that column's logits are computed (``logits_to_keep=1``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .data import ChoiceQuestion, OpenQuestion
from .prompts import (
    WORDING,
    Budget,
    ExemplarSampler,
    answer_text,
    choice_messages,
    fit_exemplars,
    is_true_false,
    open_messages,
)


if TYPE_CHECKING:
    from llamafactory.chat import ChatModel
    from llamafactory.data import Template
    from transformers import PreTrainedModel, PreTrainedTokenizer


@dataclass(frozen=True)
class Encoded:
    """One question ready to score: prompt token ids and the first token id of each option's answer."""

    ids: list[int]
    candidates: list[int]
    group: tuple[int, ...]  # its exemplars; questions with the same exemplars share a prompt prefix


@dataclass(frozen=True)
class Continuation:
    """One log-likelihood request as tokens (lm-evaluation-harness's): the summed log-probability of ``target``
    after ``context``."""

    context: list[int]
    target: list[int]

    @property
    def row(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The tokens it is scored on, as (context, target less its last token): requests of one row share a pass,
        as the options of a question whose answers are one token each do."""
        return tuple(self.context), tuple(self.target[:-1])


@dataclass(frozen=True)
class Chat:
    """One question ready to generate for: its conversation and how many exemplars it holds."""

    messages: list[dict[str, str]]
    shots: int


def is_plain(template: Template) -> bool:
    """Whether the template writes turns as bare text (base models): then the prompts separate them."""
    return template.format_user.apply(content="x") == ["x"] and template.format_assistant.apply(content="x") == ["x"]


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(map(len, seqs))
    for i in range(n):
        token = seqs[0][i]
        if any(seq[i] != token for seq in seqs):
            return i
    return n


class PromptEncoder:
    """Prompts as token ids, by the run's template and tokenizer: built (and measured) before a model loads."""

    def __init__(self, tokenizer: PreTrainedTokenizer, template: Template) -> None:
        self.tokenizer, self.template = tokenizer, template
        self.plain = is_plain(template)
        self._answers: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}

    def answer_tokens(self, answers: tuple[str, ...]) -> tuple[list[int], list[int]]:
        """(tokens all answers start with, first token where each answer differs), as the template encodes them."""
        if answers not in self._answers:
            encoded = [
                self.template.encode_oneturn(
                    self.tokenizer, [{"role": "user", "content": ""}, {"role": "assistant", "content": answer}]
                )[1]
                for answer in answers
            ]
            common = _common_prefix(encoded)
            if any(len(ids) == common for ids in encoded) or len({ids[common] for ids in encoded}) != len(answers):
                raise ValueError(f"The answers {answers} cannot be told apart by one token with this tokenizer.")
            self._answers[answers] = (encoded[0][:common], [ids[common] for ids in encoded])
        return self._answers[answers]

    def encode(self, messages: list[dict[str, str]], answers: tuple[str, ...], group: tuple[int, ...]) -> Encoded:
        common, candidates = self.answer_tokens(answers)
        prompt_ids, _ = self.template.encode_oneturn(
            self.tokenizer, [*messages, {"role": "assistant", "content": answers[0]}]
        )
        return Encoded(prompt_ids + common, candidates, group)

    def prompt_length(self, messages: list[dict[str, str]]) -> int:
        """Tokens of a generation prompt, encoded as LLaMA-Factory's inference engines encode it."""
        system, messages = split_system(messages)
        paired = [*messages, {"role": "assistant", "content": ""}]
        return len(self.template.encode_oneturn(self.tokenizer, paired, system)[0])


def split_system(messages: list[dict[str, str]]) -> tuple[str | None, list[dict[str, str]]]:
    """(system prompt, the turns): a conversation may open with a system message (a benchmark's own prompt), which
    LLaMA-Factory's templates and engines take apart from the turns."""
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return None, messages


class LikelihoodScorer(PromptEncoder):
    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizer, template: Template, batch_size: int
    ) -> None:
        super().__init__(tokenizer, template)
        self.model, self.batch_size = model, batch_size
        self.pad_id = next(i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if i is not None)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.keep_last = {"logits_to_keep": 1} if getattr(base, "_supports_logits_to_keep", bool)() else {}
        # known before the first forward, so every rank can count the forwards of every rank (see `forwards`)
        self.prefix_cache_ok = _plain_cache(base.config)

    def _groups(self, items: list[Encoded]) -> Iterator[list[int]]:
        """Indices of ``items`` by exemplar group, longest prompt first."""
        order = sorted(range(len(items)), key=lambda i: (items[i].group, -len(items[i].ids)))
        for _, members in itertools.groupby(order, key=lambda i: items[i].group):
            yield list(members)

    def _prefix_len(self, seqs: list[list[int]]) -> int:
        """The prefix the sequences share and each keeps one token of its own after; 0: no prefix pass."""
        return min(_common_prefix(seqs), min(map(len, seqs)) - 1) if self.prefix_cache_ok else 0

    def forwards(self, items: list[Encoded]) -> int:
        """How many forward passes :meth:`score` makes for ``items``."""
        return sum(
            (self._prefix_len([items[i].ids for i in members]) >= 1) + -(-len(members) // self.batch_size)
            for members in self._groups(items)
        )

    @torch.no_grad()
    def idle_forward(self) -> None:
        """A forward pass on one token: a rank with fewer questions keeps step with a sharded model's collectives."""
        self.model(input_ids=torch.tensor([[self.pad_id]], device=self.model.device), **self.keep_last)

    @torch.no_grad()
    def score(self, items: list[Encoded]) -> Iterator[list[tuple[int, list[float]]]]:
        """Per batch, (index in ``items``, log-probability of each candidate token)."""
        for members in self._groups(items):
            prefix_len, cache = self._prefix([items[i].ids for i in members])
            for start in range(0, len(members), self.batch_size):
                batch = members[start : start + self.batch_size]
                logprobs = self._last_logprobs([items[i].ids for i in batch], prefix_len, cache)
                yield [(i, logprobs[row, items[i].candidates].tolist()) for row, i in enumerate(batch)]

    @torch.no_grad()
    def continuations(self, items: list[Continuation]) -> Iterator[list[tuple[int, float, bool]]]:
        """Per batch, (index in ``items``, summed log-probability of its target, whether greedy decoding gives the
        target), every distinct row run once.

        Rows are sorted by their tokens, so rows that share a prefix (the options of one context, the questions of
        one few-shot prompt) are neighbours, and cut into clusters (:func:`_clusters`): a cluster's shared prefix runs
        once and its cache serves every batch of the cluster. The prefix stops before each context's last token, so
        every target position is in the batch's own pass; left padding makes a row's targets its last columns.
        """
        rows: dict[tuple[tuple[int, ...], tuple[int, ...]], list[int]] = {}
        for i, item in enumerate(items):
            rows.setdefault(item.row, []).append(i)
        keys = sorted(rows)
        for cluster in _clusters([key[0] for key in keys]):
            members = sorted((keys[j] for j in cluster), key=lambda key: -len(key[0]) - len(key[1]))
            prefix_len, cache = self._prefix([list(key[0]) for key in members]) if len(members) > 1 else (0, None)
            for start in range(0, len(members), self.batch_size):
                batch = members[start : start + self.batch_size]
                keep = max(len(key[1]) + 1 for key in batch)
                logprobs = self._last_logprobs([[*key[0], *key[1]] for key in batch], prefix_len, cache, keep)
                scored = []
                for row, key in enumerate(batch):
                    positions = logprobs[row, keep - len(key[1]) - 1 :]
                    for i in rows[key]:
                        target = torch.tensor(items[i].target)
                        total = positions.gather(-1, target[:, None]).sum().item()
                        scored.append((i, total, bool((positions.argmax(-1) == target).all())))
                yield scored

    def _prefix(self, seqs: list[list[int]]) -> tuple[int, Any]:
        """Run the prefix the sequences share (each keeps one token of its own) once, and keep its cache."""
        prefix_len = self._prefix_len(seqs)
        if prefix_len < 1:
            return 0, None
        cache = run_prefix(self.model, seqs[0][:prefix_len], **self.keep_last)
        if cache is None:
            self.prefix_cache_ok = False
            return 0, None
        return prefix_len, cache

    def _last_logprobs(
        self, seqs: list[list[int]], prefix_len: int, prefix_cache: Any, keep: int | None = None
    ) -> torch.Tensor:
        """Log-probabilities at the last position of each (left-padded) row, [rows, vocab]; with ``keep``, at the last
        ``keep`` positions, [rows, keep, vocab]."""
        device, rows = self.model.device, len(seqs)
        width = max(len(seq) for seq in seqs) - prefix_len
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((rows, prefix_len + width), dtype=torch.long)
        attention_mask[:, :prefix_len] = 1
        for row, seq in enumerate(seqs):
            suffix = seq[prefix_len:]
            input_ids[row, width - len(suffix) :] = torch.tensor(suffix)
            attention_mask[row, prefix_len + width - len(suffix) :] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, prefix_len:]

        kwargs: dict[str, Any] = {"use_cache": False}
        if prefix_cache is not None:
            kwargs = {"use_cache": True, "past_key_values": expanded(prefix_cache, rows)}
        logits = self.model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            **kwargs,
            **({"logits_to_keep": keep or 1} if self.keep_last else {}),
        ).logits
        return (logits[:, -1] if keep is None else logits[:, -keep:]).float().log_softmax(-1).cpu()


def _clusters(contexts: list[tuple[int, ...]]) -> list[list[int]]:
    """Sorted contexts (indices) cut where sharing a prefix pass stops paying: a cluster of n rows sharing L tokens
    computes L + sum(len - L) tokens; the next row joins when the prefix it leaves (L') keeps n * L' >= (n - 1) * L,
    i.e. when joining costs no more tokens than starting a new cluster. Rows alone are pooled without a prefix pass,
    so they still fill batches."""
    clusters: list[list[int]] = []
    alone: list[int] = []

    def close(cluster: list[int]) -> None:
        if len(cluster) > 1:
            clusters.append(cluster)
        else:
            alone.extend(cluster)

    current: list[int] = []
    shared = 0
    for j, context in enumerate(contexts):
        common = min(shared, _common_prefix([contexts[current[-1]], context])) if current else 0
        if common > 0 and len(current) * common >= (len(current) - 1) * shared:
            current.append(j)
            shared = common
            continue
        close(current)
        current, shared = [j], len(context)
    close(current)
    return [*clusters, *([alone] if alone else [])]


def run_prefix(model: PreTrainedModel, ids: list[int], **kwargs: Any) -> Any:
    """The key/value cache of ``ids`` run once, or None when it is not plain layers a batch can share (a
    sliding-window or hybrid cache met at run time)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True, **kwargs).past_key_values
    if not isinstance(cache, DynamicCache) or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    return cache


def expanded(cache: Any, rows: int) -> Any:
    """A prefix's cache as the first positions of ``rows`` rows (views: each row's new positions are its own)."""
    from transformers import DynamicCache

    return DynamicCache(
        ddp_cache_data=[
            (layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1)) for layer in cache.layers
        ]
    )


def _plain_cache(config: Any) -> bool:
    """Whether the model caches every position in plain layers, which a prefix cache can be expanded from (not
    sliding-window or hybrid layers); a cache of another kind met at run time turns the prefix cache off too."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    try:
        layers = DynamicCache(config=config).layers
    except (AttributeError, TypeError, ValueError):
        return True
    return all(type(layer) is DynamicLayer for layer in layers)


def normalize(logprobs: list[float]) -> list[float]:
    """Option probabilities normalised over the options (K2's ``normalized``)."""
    return torch.tensor(logprobs, dtype=torch.float64).softmax(-1).tolist()


# ---------------------------------------------------------------------------------------------
# Generation, then answer extraction


_TF_WORDS = {"true": "True", "false": "False", "正确": "True", "错误": "False", "对": "True", "错": "False"}


def extract_answer(text: str, question: ChoiceQuestion, lang: str) -> str | None:
    """The option a generated reply commits to, or None (counted as an extraction failure).

    Accepted: an explicit "answer is X" / "Answer: X" / "答案：X" anywhere, else a reply that starts with the
    option itself and then punctuation or a line break ("B", "(B)", "B.", "True\n"); "A rock ..." is a word,
    and a reply that only mentions letters is not guessed at.
    """
    text = text.strip()
    if is_true_false(question):
        words = sorted({*_TF_WORDS, *(w.lower() for w in WORDING[lang].tf_words.values())}, key=len, reverse=True)
        options = "|".join(map(re.escape, words))
        flags = re.IGNORECASE
    else:
        options = "|".join(map(re.escape, question.labels))
        flags = 0
    explicit = re.search(
        rf"(?i:answer is|answer\s*[:：]|答案(?:是|为)?\s*[:：]?)\s*[(（]?\s*({options})(?![A-Za-z])", text, flags
    )
    leading = re.match(rf"^[(（]?\s*({options})(?:[.)）．、:：,，\n]|$)", text, flags)
    match = explicit or leading
    if match is None:
        return None
    answer = match.group(1)
    return _TF_WORDS.get(answer.lower(), answer) if is_true_false(question) else answer


def generate(
    chat_model: ChatModel,
    conversations: list[list[dict[str, str]]],
    concurrency: int,
    sampling: dict[str, Any] | None = None,
) -> list[str]:
    """Replies from LLaMA-Factory's inference engine: the Hugging Face engine's model in batches of ``concurrency``
    (:mod:`.generation`), another engine ``concurrency`` requests at a time (vLLM batches them). ``sampling``
    (``do_sample``, ``temperature``, ``top_p``, ``top_k``) overrides the run's generation settings, as the engine's
    ``chat`` takes them."""
    from llamafactory.chat.hf_engine import HuggingfaceEngine

    engine = chat_model.engine
    if isinstance(engine, HuggingfaceEngine):
        return _hf_replies(engine, conversations, concurrency, sampling or {})

    def reply(conversation: list[dict[str, str]]) -> str:
        system, messages = split_system(conversation)
        return chat_model.chat(messages, system, **(sampling or {}))[0].response_text

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        responses = pool.map(reply, conversations)
        return list(responses)


def _hf_replies(
    engine: Any, conversations: list[list[dict[str, str]]], batch_size: int, sampling: dict[str, Any]
) -> list[str]:
    """The replies the engine's ``chat`` gives one conversation at a time, generated in batches: each prompt and the
    generation config come from the engine's own ``_process_args``; a row ends at the template's first stop token
    and is decoded as the engine decodes it."""
    from .generation import BatchGenerator

    prompts, config = [], None
    for conversation in conversations:
        system, messages = split_system(conversation)
        kwargs, _ = engine._process_args(
            engine.model,
            engine.tokenizer,
            engine.processor,
            engine.template,
            engine.generating_args,
            messages,
            system,
            input_kwargs=dict(sampling),  # popped from
        )
        prompts.append(kwargs["input_ids" if "input_ids" in kwargs else "inputs"][0].tolist())
        config = kwargs["generation_config"]
    if not prompts:
        return []
    stops = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    decode = {
        "skip_special_tokens": getattr(config, "skip_special_tokens", True),
        "clean_up_tokenization_spaces": True,
    }
    generator = BatchGenerator(engine.model, engine.tokenizer, batch_size)
    return generator.generate(prompts, stop_ids=stops, decode=decode, generation_config=config)


# ---------------------------------------------------------------------------------------------
# Objective tasks, batch by batch, as predictions.jsonl records


def _answers(question: ChoiceQuestion, lang: str) -> tuple[str, ...]:
    return tuple(answer_text(question, label, lang) for label in question.labels)


def _messages(sampler: Any, question: ChoiceQuestion, shots: tuple[int, ...], lang: str, plain: bool):
    exemplars = [sampler.pool[i] for i in shots]
    return choice_messages(question, exemplars, lang, plain, sampler.intro(question, lang))


def choice_prompts(
    encoder: PromptEncoder,
    questions: list[ChoiceQuestion],
    todo: list[ChoiceQuestion],
    n_shot: int,
    seed: int,
    lang: str,
    budget: Budget | None,
    sampler: Any = None,
) -> list[Encoded]:
    """The likelihood prompt of each of ``todo``, fitted to ``budget``.

    Exemplars and intro come from ``sampler`` (``pool``, ``exemplars(question)``, ``intro(question, lang)``): by
    default GeoBench's draw from all of ``questions``; a general benchmark passes its dev split's.
    """
    sampler = sampler or ExemplarSampler(questions, n_shot, seed)

    def build(question: ChoiceQuestion, shots: tuple[int, ...]) -> tuple[Encoded, int]:
        messages = _messages(sampler, question, shots, lang, encoder.plain)
        encoded = encoder.encode(messages, _answers(question, lang), shots)
        return encoded, len(encoded.ids)

    return [fit_exemplars(q, sampler.exemplars(q), lambda shots, q=q: build(q, shots), budget) for q in todo]


def chat_prompts(
    encoder: PromptEncoder,
    questions: list[ChoiceQuestion | OpenQuestion],
    todo: list[ChoiceQuestion | OpenQuestion],
    n_shot: int,
    seed: int,
    lang: str,
    budget: Budget | None,
    sampler: Any = None,
) -> list[Chat]:
    """The conversation to generate from for each of ``todo`` (open questions have no exemplars), fitted to ``budget``;
    ``sampler`` as for :func:`choice_prompts`."""
    sampler = sampler or ExemplarSampler(questions, n_shot, seed)

    def build(question: ChoiceQuestion | OpenQuestion, shots: tuple[int, ...]) -> tuple[Chat, int]:
        if isinstance(question, OpenQuestion):
            messages = open_messages(question, lang)
        else:
            messages = _messages(sampler, question, shots, lang, encoder.plain)
        return Chat(messages, len(shots)), encoder.prompt_length(messages)

    return [
        fit_exemplars(
            q, () if isinstance(q, OpenQuestion) else sampler.exemplars(q), lambda shots, q=q: build(q, shots), budget
        )
        for q in todo
    ]


def likelihood_records(
    scorer: LikelihoodScorer, todo: list[ChoiceQuestion], items: list[Encoded]
) -> Iterator[list[dict[str, Any]]]:
    """Score ``todo`` from their prompts ``items``; yield each batch's records."""
    for batch in scorer.score(items):
        records = []
        for i, logprobs in batch:
            question = todo[i]
            probs = dict(zip(question.labels, normalize(logprobs)))
            prediction = max(probs, key=probs.get)
            records.append(_record(question, prediction, shots=len(items[i].group), probs=probs))
        yield records


def generate_records(
    chat_model: ChatModel, todo: list[ChoiceQuestion], chats: list[Chat], lang: str, batch_size: int
) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(todo), batch_size):
        batch, prompts = todo[start : start + batch_size], chats[start : start + batch_size]
        replies = generate(chat_model, [chat.messages for chat in prompts], batch_size)
        yield [
            _record(q, extract_answer(reply, q, lang), shots=chat.shots, response=reply)
            for q, chat, reply in zip(batch, prompts, replies)
        ]


def _record(question: ChoiceQuestion, prediction: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "task": question.task,
        "id": question.id,
        **({} if question.subject is None else {"subject": question.subject}),
        "gold": question.answer,
        "prediction": prediction,
        "correct": prediction == question.answer,
        **extra,
    }
