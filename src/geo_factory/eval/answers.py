"""Answers the model writes in free text: extraction, matching, the majority vote and the judge's verdict, shared by
every family that scores generated answers (tasks of ``eval_info.json`` with ``answer_type``, FormationEval's
generative protocol, EarthSE, ClimaQA).

An answer type says what a reply's answer is and when it is right:

``letter``   an option letter, extracted as FormationEval's authors do: the first character when it is a letter
             (and not a word's first), then "correct answer / answer is / Answer:" and similar patterns, then the
             last standalone letter.
``number``   by default the last number in the reply (lm-evaluation-harness's gsm8k ``flexible-extract``); right
             within ``tolerance`` (relative) or ``abs_tolerance`` of the reference, exact when both are 0.
``text``     the reply (stripped); right when equal to the reference, or with ``fold`` after folding case, white
             space and punctuation.
``phrases``  a comma-separated set of phrases, right when the folded sets are equal (order free).
``judge``    the reply, right when the judge endpoint says so against the reference.

Reasoning blocks (``<think>...</think>``) are removed before extraction; an ``extract`` regex, when given, is
searched first and its first group is the answer. A reply with no answer in it has the prediction None: it is
wrong, and counted and listed as an extraction failure. With ``num_samples`` > 1 the question is sampled that many
times and the answer given most often (by the type's own equality; ties to the first given) is the prediction.
"""

from __future__ import annotations

import math
import re
import statistics
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .data import EvalDataError
from .tasks import Task


if TYPE_CHECKING:
    from .families.base import BoundTask
    from .scoring import Chat
    from .subjective import Judge


ANSWER_TYPES = ("letter", "number", "text", "phrases", "judge")
SAMPLING_KEYS = ("temperature", "top_p", "top_k")


@dataclass(frozen=True)
class AnswerSpec:
    """How a task's generated answers are read and matched (one per task)."""

    type: str
    tolerance: float = 0.0  # number: relative to the reference
    abs_tolerance: float = 0.0  # number: absolute
    fold: bool = False  # text: compare after folding case, white space and punctuation
    extract: str | None = None  # a regex; its first group is the answer
    letters: str = "ABCD"  # letter: the letters an answer may be
    num_samples: int = 1
    sampling: tuple[tuple[str, float], ...] = ()  # temperature, top_p, top_k for the samples
    verdict: str = "correct"  # judge: the verdict asked for (:data:`VERDICTS`)
    also: tuple[str, ...] = ()  # other matches scored beside the headline (``folded``, ``phrases``)
    overlap: bool = False  # ROUGE-L and BLEU-4 of the reply against the reference, beside the verdict

    def generation_kwargs(self) -> dict[str, Any]:
        """What LLaMA-Factory's engine takes for these samples: greedy for one sample unless settings are given."""
        kwargs: dict[str, Any] = dict(self.sampling)
        if self.num_samples > 1 or kwargs:
            kwargs["do_sample"] = True
        return kwargs

    def fingerprint(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ((), None)}


def spec_from_entry(entry: dict[str, Any], where: str) -> AnswerSpec:
    """The answer spec of an ``eval_info.json`` entry, every key checked (``where`` names the entry)."""
    kind = entry["answer_type"]
    if kind not in ANSWER_TYPES:
        raise EvalDataError(f"{where}: `answer_type` must be one of {', '.join(ANSWER_TYPES)}, got {kind!r}.")
    own = {"number": ("tolerance", "abs_tolerance"), "text": ("fold",), "letter": ("letters",)}
    for key in ("tolerance", "abs_tolerance", "fold", "letters"):
        if key in entry and key not in own.get(kind, ()):
            raise EvalDataError(f"{where}: `{key}` applies to `answer_type: {_owner(key)}`, not {kind}.")
    for key in ("tolerance", "abs_tolerance", *SAMPLING_KEYS):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise EvalDataError(f"{where}: `{key}` must be a number >= 0, got {value!r}.")
    if not isinstance(entry.get("fold", False), bool):
        raise EvalDataError(f"{where}: `fold` must be true or false, got {entry['fold']!r}.")
    samples = entry.get("num_samples", 1)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise EvalDataError(f"{where}: `num_samples` must be an integer >= 1, got {samples!r}.")
    letters = entry.get("letters", "ABCD")
    if not isinstance(letters, str) or not re.fullmatch(r"[A-Z]{2,26}", letters) or len(set(letters)) < len(letters):
        raise EvalDataError(f'{where}: `letters` must be 2 to 26 distinct capital letters ("ABCD"), got {letters!r}.')
    pattern = entry.get("extract")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise EvalDataError(f"{where}: `extract` must be a regular expression, got {pattern!r}.")
        try:
            groups = re.compile(pattern).groups
        except re.error as err:
            raise EvalDataError(f"{where}: `extract` is not a valid regular expression: {err}.") from None
        if groups < 1:
            raise EvalDataError(f"{where}: `extract` needs a group, `(...)`: its first group is the answer.")
    sampling = tuple((key, entry[key]) for key in SAMPLING_KEYS if key in entry)
    return AnswerSpec(
        kind,
        tolerance=float(entry.get("tolerance", 0)),
        abs_tolerance=float(entry.get("abs_tolerance", 0)),
        fold=entry.get("fold", False),
        extract=pattern,
        letters=letters,
        num_samples=samples,
        sampling=sampling,
    )


ENTRY_KEYS = {
    "file_name", "dev_file_name", "columns", "lang", "description", "answer_type", "tolerance", "abs_tolerance",
    "fold", "extract", "letters", "num_samples", *SAMPLING_KEYS,
}  # fmt: skip
COLUMN_KEYS = {"question", "answer", "subject"}


def answer_task(name: str, entry: dict[str, Any], where: str, layout: str) -> Task:
    """The registry task of an ``eval_info.json`` entry with ``answer_type`` (family ``answers``), checked whole."""
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise EvalDataError(
            f"{where}: unknown key `{unknown[0]}`; allowed with `answer_type`: {', '.join(sorted(ENTRY_KEYS))}."
        )
    spec_from_entry(entry, where)
    if not (isinstance(entry.get("file_name"), str) and entry["file_name"].strip()):
        raise EvalDataError(f"{where}: `file_name` is required: the file of questions and reference answers.")
    columns = entry.get("columns")
    if not isinstance(columns, dict) or not {"question", "answer"} <= set(columns):
        raise EvalDataError(
            f"{where}: `columns` must map question and answer (and optionally subject) to the file's columns."
        )
    unknown = sorted(set(columns) - COLUMN_KEYS)
    if unknown:
        raise EvalDataError(
            f"{where}: unknown column role `{unknown[0]}` with `answer_type`; allowed: {', '.join(sorted(COLUMN_KEYS))}."
        )
    if not all(isinstance(column, str) for column in columns.values()):
        raise EvalDataError(f"{where}: each of `columns` must name one column.")
    description = entry.get("description", f"{name} (eval_info.json, {entry['answer_type']} answers)")
    return Task(name, "answers", description, "answer", {layout: entry["file_name"]}, config=entry)


def _owner(key: str) -> str:
    return {"tolerance": "number", "abs_tolerance": "number", "fold": "text", "letters": "letter"}[key]


# ---------------------------------------------------------------------------------------------
# Extraction


def strip_reasoning(text: str) -> str:
    """The reply without its reasoning: ``<think>...</think>`` blocks, the part before a lone ``</think>`` (a
    template that opens the block in the prompt) and an unclosed block at the end."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
    text = text.rsplit("</think>", 1)[-1]
    return text.split("<think>", 1)[0].strip()


_NUMBER = re.compile(r"[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-−]?\.\d+")


def parse_number(text: str) -> float | None:
    """A number as written (``1,234.5``, ``-3e5``, ``−2``), or None."""
    match = _NUMBER.fullmatch(text.strip().rstrip("."))
    return float(match.group().replace(",", "").replace("−", "-")) if match else None


def extract_letter(text: str, letters: str = "ABCD") -> str | None:
    """FormationEval's extraction (upper-cased, markdown emphasis removed): the first character, then explicit
    patterns from the most to the least specific, then the last standalone letter. The first character counts only
    when no letter follows it (the authors take the A of "Answer: B")."""
    text = " ".join(re.sub(rf"\*+([{letters}])\*+", r"\1", text.upper()).split())
    if not text:
        return None
    if re.match(rf"[{letters}](?![A-Z])", text):  # "B", "B." -- not the A of "ANSWER: B"
        return text[0]
    one = f"[{letters}]"
    patterns = (
        rf"CORRECT\s+ANSWER[:\s]+({one})",
        rf"ANSWER\s+IS[:\s]+({one})",
        rf"ANSWER[:\s]+({one})",
        rf"CHOOSE\s+({one})",
        rf"CHOICE\s+IS[:\s]+({one})",
        rf"OPTION\s+({one})",
        rf"SELECT\s+({one})",
        rf"GO\s+WITH\s+({one})",
        rf"\(({one})\)",
        rf"\b({one})\)",
        rf"\b({one})\.",
        rf"\b({one}),",
        rf"\b({one})\s*$",
        rf"\bIS\s+({one})\b",
        rf"\b({one})\b(?!.*\b{one}\b)",
    )
    for pattern in patterns:
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    return None


def extract(reply: str, spec: AnswerSpec) -> str | None:
    """The answer in ``reply``, or None when there is none."""
    text = strip_reasoning(reply)
    if spec.extract is not None:
        match = re.search(spec.extract, text)
        text = (match.group(1) or "").strip() if match else ""
        if not text:
            return None
    if spec.type == "letter":
        return extract_letter(text, spec.letters)
    if spec.type == "number":
        numbers = _NUMBER.findall(text)
        return str(parse_number(numbers[-1])) if numbers else None
    return text or None


# ---------------------------------------------------------------------------------------------
# Matching and the vote


def fold(text: str) -> str:
    """Case, white space and punctuation folded away: ``"  Plate-Tectonics. "`` -> ``"plate tectonics"``."""
    kept = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text.casefold())
    return " ".join(kept.split())


def phrases(text: str) -> frozenset[str]:
    """The folded set of comma-separated phrases (either comma, Latin or Chinese)."""
    return frozenset(filter(None, (fold(part) for part in re.split(r"[,，;；]", text))))


def _key(answer: str, spec: AnswerSpec, how: str | None = None) -> Any:
    """What two answers must share to be the same answer, by ``how`` (the spec's own by default)."""
    how = how or {"text": "folded" if spec.fold else "exact"}.get(spec.type, spec.type)
    if how == "number":
        return parse_number(answer)
    if how == "folded":
        return fold(answer)
    if how == "phrases":
        return phrases(answer)
    return answer


def matches(prediction: str | None, gold: str, spec: AnswerSpec, how: str | None = None) -> bool:
    """Whether ``prediction`` is the reference answer ``gold`` (``how``: another match than the spec's own)."""
    if prediction is None:
        return False
    if (how or spec.type) == "number":
        value, reference = parse_number(prediction), parse_number(gold)
        if value is None or reference is None:
            return False
        allowed = max(spec.abs_tolerance, spec.tolerance * abs(reference))
        return math.isclose(value, reference, rel_tol=0, abs_tol=allowed) if allowed else value == reference
    return _key(prediction, spec, how) == _key(gold, spec, how)


def majority(predictions: list[str | None], spec: AnswerSpec) -> str | None:
    """The answer given most often (None when no sample had one); a tie goes to the one given first."""
    counts: dict[Any, list[str]] = {}
    for prediction in predictions:
        if prediction is not None:
            counts.setdefault(_key(prediction, spec), []).append(prediction)
    if not counts:
        return None
    return max(counts.values(), key=len)[0]  # max keeps the first of equal counts: dicts keep insertion order


# ---------------------------------------------------------------------------------------------
# The judge's verdict


VERDICTS = {
    # the project's: is the answer the reference's?
    "correct": (
        "You are a strict examiner. Compare the answer with the reference answer.",
        "Question:\n{question}\n\nReference answer:\n{reference}\n\nAnswer to check:\n{answer}\n\nDoes the answer "
        "give the same answer as the reference? Reply with one word: CORRECT or INCORRECT.",
        {"CORRECT": True, "INCORRECT": False},
    ),
    # EarthSE's win rate: which of two answers is better, the reference (A) or the model's (B)
    "win_rate": (
        "You are a helpful assistant.",
        "Please act as an expert evaluator and determine which of the following two answers is better.\n\n"
        "**Evaluation Criteria:**\n1. Assess how well each answer addresses the original question. Closer alignment "
        "is better.\n2. Evaluate the scientific accuracy and logical coherence of each answer. More rigorous and "
        "professional reasoning is preferred.\n3. Consider the relevance and depth of detail. More relevant and "
        "well-supported details indicate a better answer.\n4. It is not the case that the longer the answer, the "
        "better. If the answer is long but does not meet the above requirements, it is not a good answer.\n\n"
        "**Instructions:**\n1. Do **not** generate a new answer to the original question. Your task is only to "
        "evaluate the two provided answers.\n2. Based on the criteria above, choose which answer is better.\n3. "
        "Your response must be **only** one letter: `A` or `B`.\n4. Do **not** provide explanations, commentary, or "
        "corrections, even if there are errors in the inputs.\n5. This is purely an evaluation task.\n\n"
        "**[Question Start]**\n{question}\n**[Question End]**\n\n**[Answer A Start]**\n{reference}\n"
        "**[Answer A Start]**\n\n**[Answer B Start]**\n{answer}\n**[Answer B Start]**\n\n**The better answer is:**",
        {"A": False, "B": True},
    ),
    # ClimaQA's free-form check: does the reference support the answer or refute it
    "supports": (
        "You are a climate scientist checking answers against a reference.",
        "Question:\n{question}\n\nReference answer:\n{reference}\n\nAnswer to check:\n{answer}\n\nDoes the reference "
        "answer support the answer to check, or refute it? Reply with one word: SUPPORTS or REFUTES.",
        {"SUPPORTS": True, "REFUTES": False},
    ),
}


def verdict(judge: Judge, kind: str, question: str, reference: str, answer: str) -> dict[str, Any]:
    """``{"verdict": bool | None, "attempts": n}`` (and the last reply when every attempt was malformed): the judge
    is asked again, ``judge_max_retries`` times, when its reply is none of the verdict's words."""
    system, user, words = VERDICTS[kind]
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": user.format(question=question, reference=reference, answer=answer)},
    ]
    for attempt in range(1, judge.max_retries + 2):
        reply = judge.endpoint.complete(messages, temperature=0, max_tokens=judge.max_tokens)
        word = re.sub(r"[^A-Za-z]", "", reply.strip().split()[0]).upper() if reply.strip() else ""
        if word in words:
            return {"verdict": words[word], "attempts": attempt}
        messages = [
            *messages,
            {"role": "assistant", "content": reply},
            {"role": "user", "content": f"Reply with one word: {' or '.join(words)}."},
        ]
    return {"verdict": None, "attempts": judge.max_retries + 1, "last_reply": reply[:500]}


# ---------------------------------------------------------------------------------------------
# Records and summaries


@dataclass(frozen=True)
class AnswerQuestion:
    """A question answered in free text: its prompt text, reference answer and the values it is reported by."""

    task: str
    id: int
    question: str
    answer: str
    subject: str | None = None
    dims: dict[str, Any] = field(default_factory=dict, compare=False)  # e.g. difficulty, sphere, complexity

    @property
    def stem(self) -> str:  # what the exemplar draw compares (a question is never its own exemplar)
        return self.question


def answer_records(
    task: BoundTask,
    replies: Callable[[list[list[dict[str, str]]], dict[str, Any]], list[str]],
    judge: Judge | None,
    tokenizer: Any,
    todo: list[AnswerQuestion],
    chats: list[Chat],
    batch_size: int,
) -> Iterator[list[dict[str, Any]]]:
    """``todo``'s records, batch by batch: ``replies(conversations, generation kwargs)`` writes the answers."""
    from .subjective import reference_scores

    spec: AnswerSpec = task.answer_spec
    n = spec.num_samples
    for start in range(0, len(todo), batch_size):
        batch, prompts = todo[start : start + batch_size], chats[start : start + batch_size]
        texts = replies([chat.messages for chat in prompts for _ in range(n)], spec.generation_kwargs())
        records = []
        for i, (question, chat) in enumerate(zip(batch, prompts)):
            mine = texts[i * n : (i + 1) * n]
            extracted = [extract(text, spec) for text in mine]
            prediction = majority(extracted, spec)
            response = mine[extracted.index(prediction)] if prediction is not None else mine[0]
            record: dict[str, Any] = {
                "task": question.task,
                "id": question.id,
                **({} if question.subject is None else {"subject": question.subject}),
                **question.dims,
                "gold": question.answer,
                "response": response,
                "prediction": prediction,
                "shots": chat.shots,
            }
            record["correct"] = spec.type != "judge" and matches(prediction, question.answer, spec)
            for how in spec.also:
                record[f"correct_{how}"] = matches(prediction, question.answer, spec, how)
            if spec.overlap:
                record["scores"] = reference_scores(tokenizer, prediction or "", question.answer)
            if n > 1:
                record["samples"] = [{"response": t, "prediction": p} for t, p in zip(mine, extracted)]
            records.append(record)
        if spec.type == "judge":  # the batch's verdicts, asked concurrently as the judge of subjective tasks is
            asked = [(q, r) for q, r in zip(batch, records) if r["prediction"] is not None]
            with ThreadPoolExecutor(max_workers=max(1, len(asked))) as pool:
                verdicts = pool.map(
                    lambda qr: verdict(judge, spec.verdict, qr[0].question, qr[0].answer, qr[1]["prediction"]), asked
                )
                for (_, record), found in zip(asked, verdicts):
                    record["correct"] = bool(found.pop("verdict"))
                    record["judge_failed"] = "last_reply" in found
                    record.update({f"judge_{key}": value for key, value in found.items()})
        yield records


def _share(records: list[dict[str, Any]], key: str = "correct") -> dict[str, Any]:
    right = sum(bool(r.get(key)) for r in records)
    return {"accuracy": round(100 * right / len(records), 4) if records else None, "correct": right}


def summarize_answers(task: BoundTask, records: list[dict[str, Any]]) -> dict[str, Any]:
    """An answer task's summary: accuracy, the extraction failures (counted and listed), the other matches, the
    judge's failures, ROUGE-L / BLEU-4 where scored, and the accuracy by each of the benchmark's dimensions."""
    spec: AnswerSpec = task.answer_spec
    failed = [r["id"] for r in records if r["prediction"] is None]
    summary: dict[str, Any] = {
        "kind": "objective",
        "family": task.family,
        "description": task.description,
        "metric": "accuracy",
        **_share(records),
        "scored": len(records),
        "total": len(task.questions),
        "chance": None,
        "answer_type": spec.type,
        "extraction_failures": len(failed),
        "extraction_failed_ids": failed,
        "source": task.source,
    }
    if spec.num_samples > 1:
        summary["num_samples"] = spec.num_samples
    for how in spec.also:
        summary[how] = _share(records, f"correct_{how}")
    if spec.type == "judge":
        summary["judge_failures"] = sum(bool(r.get("judge_failed")) for r in records)
    if spec.overlap:
        for metric in ("rouge-l", "bleu-4"):
            summary[metric] = round(statistics.fmean(r["scores"][metric] for r in records), 4) if records else None
    return summary


def by_dimensions(records: list[dict[str, Any]], dims: tuple[str, ...], also: tuple[str, ...] = ()) -> dict[str, Any]:
    """Accuracy by each value of each dimension (a list-valued one, such as FormationEval's domains, counts a
    question under each of its values)."""
    out: dict[str, Any] = {}
    for dim in dims:
        groups: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            values = record.get(dim)
            for value in values if isinstance(values, list) else [values]:
                groups.setdefault(str(value), []).append(record)
        out[dim] = {
            value: {
                **_share(mine),
                "scored": len(mine),
                **{how: _share(mine, f"correct_{how}")["accuracy"] for how in also},
            }
            for value, mine in sorted(groups.items())
        }
    return {"by": out} if out else {}
