"""Subjective scoring: ROUGE-L / BLEU-4 against reference answers, and an optional judge model.

Reference scores are LLaMA-Factory's own SFT prediction metrics (``ComputeSimilarity``: jieba words for
ROUGE, characters for BLEU-4, both x100), applied to the model's tokens as in ``do_predict``.

The judge is any OpenAI-compatible chat endpoint (``llamafactory-cli api``, vLLM, a hosted API), called
through :mod:`geo_factory.endpoint` (the client the build-sft teacher uses too). It scores each answer on each
criterion with an integer from 1 to 10 and must reply one ``criterion: score`` line per criterion. A reply
missing any score is malformed: the judge is shown its reply and asked again, ``judge_max_retries`` times, then
the answer counts as a judge failure. Network and HTTP errors are not answers: they stop the run (resume
continues it, judging the answers already generated). Before any model loads, :meth:`Judge.check` asks the
endpoint for its models with the key, so a wrong URL, a server that is down or a refused key stop the run before
any work. The API key is read from the environment variable named by ``judge_api_key_env`` and goes nowhere but
the request header.

The default criteria are ``geo_factory.hparams.geobench_args.DEFAULT_CRITERIA`` (the argument's default), described
to the judge by :data:`RUBRIC` (the default rubric); ``judge_criteria`` may name others, which the judge scores on
their plain meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..endpoint import ChatEndpoint, EndpointError


if TYPE_CHECKING:
    from transformers import PreTrainedTokenizer


RUBRIC = {
    "accuracy": "Are the geoscience facts, terms, numbers and reasoning correct? 10: all correct; 5: partly correct "
    "with clear errors; 1: wrong or made up.",
    "completeness": "Does the answer cover what the question asks, and the key points of the reference answer when "
    "one is given? 10: every key point; 5: about half; 1: none.",
    "clarity": "Is the answer precise, well organised and easy to follow for a geoscience student? 10: clear and well "
    "structured; 5: understandable but muddled; 1: incoherent.",
    "relevance": "Does the answer stay on the question? 10: entirely on topic; 1: unrelated.",
    "depth": "Does the answer explain mechanisms and causes rather than list facts? 10: thorough; 1: superficial.",
}

JUDGE_SYSTEM = (
    "You are a strict geoscience examiner. Score the answer on each criterion with an integer from 1 (worst) "
    "to 10 (best)."
)


def reference_scores(tokenizer: PreTrainedTokenizer, prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-L and BLEU-4 (x100) of one answer, by LLaMA-Factory's ``ComputeSimilarity``."""
    import numpy as np
    from llamafactory.train.sft.metric import ComputeSimilarity
    from transformers import EvalPrediction

    def ids(text: str) -> np.ndarray:
        return np.array([tokenizer.encode(text, add_special_tokens=False)], dtype=np.int64).reshape(1, -1)

    scores = ComputeSimilarity(tokenizer=tokenizer)(
        EvalPrediction(predictions=ids(prediction), label_ids=ids(reference))
    )
    return {"rouge-l": scores["rouge-l"], "bleu-4": scores["bleu-4"]}


def judge_messages(question: str, reference: str | None, answer: str, criteria: list[str]) -> list[dict[str, str]]:
    listed = "\n".join(f"- {name}: {RUBRIC.get(name, f'how good the answer is on {name}.')}" for name in criteria)
    parts = [f"Question:\n{question}"]
    if reference is not None:
        parts.append(f"Reference answer:\n{reference}")
    parts += [
        f"Answer to score:\n{answer}",
        f"Criteria:\n{listed}",
        "Reply with one line per criterion, `criterion: score`, and nothing else.",
    ]
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_judge_reply(reply: str, criteria: list[str]) -> dict[str, int] | None:
    """Each criterion's score, or None when any is missing or out of 1-10."""
    scores = {}
    for name in criteria:
        match = re.search(rf"(?im)^\W*{re.escape(name)}\W*[:：=]\s*(\d+)(?:\s*/\s*10)?[\s.,;]*$", reply)
        if match is None or not 1 <= int(match.group(1)) <= 10:
            return None
        scores[name] = int(match.group(1))
    return scores


JudgeError = EndpointError  # the judge's errors are its endpoint's (the name stays importable)


@dataclass
class Judge:
    api_base: str
    model: str
    criteria: list[str]
    api_key_env: str
    max_retries: int = 2
    max_tokens: int = 128
    timeout: float = 120.0
    transport_retries: int = field(default=3, repr=False)
    endpoint: ChatEndpoint = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.endpoint = ChatEndpoint(
            self.api_base,
            self.model,
            self.api_key_env,
            role="judge",
            base_setting="judge_api_base",
            key_setting="judge_api_key_env",
            timeout=self.timeout,
            retries=self.transport_retries,
        )

    def score(self, question: str, reference: str | None, answer: str) -> dict[str, Any]:
        """``{"scores": {criterion: 1-10} | None, "attempts": n}``; None after every retry was malformed."""
        messages = judge_messages(question, reference, answer, self.criteria)
        for attempt in range(1, self.max_retries + 2):
            reply = self.endpoint.complete(messages, temperature=0, max_tokens=self.max_tokens)
            scores = parse_judge_reply(reply, self.criteria)
            if scores is not None:
                return {"scores": scores, "attempts": attempt}
            messages = [
                *messages,
                {"role": "assistant", "content": reply},
                {
                    "role": "user",
                    "content": f"Reply only with `criterion: score` lines for: {', '.join(self.criteria)}.",
                },
            ]
        return {"scores": None, "attempts": self.max_retries + 1, "last_reply": reply[:500]}

    def check(self) -> None:
        """The endpoint is up, speaks the OpenAI API and accepts the key: checked before any model loads."""
        self.endpoint.check()
