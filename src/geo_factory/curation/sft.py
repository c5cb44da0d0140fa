"""``geo-factory build-sft``: instruction data from fact tables (templates) or documents (a teacher model).

K2 built GeoSignal from structured geoscience knowledge; a teacher model behind any OpenAI-compatible endpoint
turns a user's own documents into grounded question/answer pairs. Every pair keeps where it came from
(``source``: ``file:line``, the line as an editor numbers it, or passage id); the output is alpaca JSON with a ``dataset_info.json`` entry,
deduplicated on the normalised instruction and answer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..endpoint import ChatEndpoint
from ..extras import write_json_atomic
from ..rows import numbered_rows, read_rows


TEMPLATES = {
    "fact": {
        "en": ("What is the {relation} of {entity}?", "The {relation} of {entity} is {value}."),
        "zh": ("{entity}的{relation}是什么？", "{entity}的{relation}是{value}。"),
    },
    "term": {
        "en": ("What does the geoscience term “{term}” mean?", "{definition}"),
        "zh": ("请解释地学术语“{term}”。", "{definition}"),
    },
}
FACT_COLUMNS = ("entity", "relation", "value")
TERM_COLUMNS = ("term", "definition")
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}
TEACHER_PROMPT = (
    "Read the passage and write one question a geoscience student could answer from it alone, and its answer. "
    'Reply with JSON only: {{"question": "...", "answer": "..."}}.\n\nPassage:\n{passage}'
)


def _read_rows(path: Path) -> list[tuple[str, dict[str, str]]]:
    """(line, row) of a fact table, each row named by its line as an editor shows it."""
    if path.suffix in (".csv", ".jsonl"):
        return numbered_rows(path)
    raise ValueError(f"{path}: fact tables are .csv or .jsonl files.")


_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def _written_in(text: str, lang: str) -> bool:
    """Chinese: holds Chinese characters; English: holds Latin letters and no Chinese characters."""
    if lang == "zh":
        return bool(_CJK.search(text))
    return bool(_LATIN.search(text)) and not _CJK.search(text)


def _row_kind(keys: dict[str, str]) -> str | None:
    """``fact`` or ``term``: the row has each column of the kind, plain or as a translation (``entity_zh``)."""
    for kind, columns in (("fact", FACT_COLUMNS), ("term", TERM_COLUMNS)):
        if all(any(k == c or k.startswith(f"{c}_") for k, v in keys.items() if v) for c in columns):
            return kind
    return None


def _in_language(keys: dict[str, str], kind: str, lang: str) -> dict[str, str] | None:
    """The row's texts in ``lang``: its ``<column>_<lang>`` translations, else the columns written in ``lang``;
    None when the row has no text in that language (English is never pasted into the Chinese frame, nor the
    reverse). A fact's value (a number, formula or unit) is used as written, unless it holds Chinese in English."""
    texts = {}
    for column in FACT_COLUMNS if kind == "fact" else TERM_COLUMNS:
        text = keys.get(f"{column}_{lang}") or keys.get(column, "")
        fits = bool(keys.get(f"{column}_{lang}")) or _written_in(text, lang)
        if column == "value":
            fits = bool(text) and (lang == "zh" or not _CJK.search(text) or bool(keys.get(f"value_{lang}")))
        if not fits:
            return None
        texts[column] = text
    return texts


def pairs_from_facts(paths: list[str], languages: tuple[str, ...]) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Entity–relation–value rows or term–definition rows (glossaries), through the en/zh templates: each row in
    each language it has text in. Also the count of rows left out of each language for want of text in it."""
    pairs, missing = [], dict.fromkeys(languages, 0)
    for name in paths:
        path = Path(name)
        for where, row in _read_rows(path):
            line = where.split()[-1]  # `line N`
            keys = {k.strip().lower(): str(v).strip() for k, v in row.items() if k and v is not None}
            kind = _row_kind(keys)
            if kind is None:
                raise ValueError(
                    f"{path}, {where}: needs non-empty columns {', '.join(FACT_COLUMNS)} (facts) or "
                    f"{', '.join(TERM_COLUMNS)} (glossary), or their translations such as entity_zh; has "
                    f"{', '.join(keys) or 'none'}."
                )
            for lang in languages:
                texts = _in_language(keys, kind, lang)
                if texts is None:
                    missing[lang] += 1
                    continue
                question, answer = TEMPLATES[kind][lang]
                pairs.append(
                    {
                        "instruction": question.format(**texts),
                        "input": "",
                        "output": answer.format(**texts),
                        "source": f"{path.name}:{line}" + (f" ({keys['source']})" if keys.get("source") else ""),
                    }
                )
    return pairs, missing


def dedup(pairs: list[dict[str, str]]) -> list[dict[str, str]]:
    seen, out = set(), []
    for pair in pairs:
        key = (" ".join(pair["instruction"].lower().split()), " ".join(pair["output"].lower().split()))
        if key not in seen:
            seen.add(key)
            out.append(pair)
    return out


def passages(paths: list[str], max_chars: int = 2000) -> list[tuple[str, str]]:
    """``(passage id, text)``: paragraphs of .txt files or ``text`` of .jsonl rows, joined up to ``max_chars``."""
    result = []
    for name in paths:
        path = Path(name)
        if path.suffix == ".jsonl":
            docs = [row["text"] for row in read_rows(path)]
        elif path.suffix == ".txt":
            docs = [path.read_text(encoding="utf-8")]
        else:
            raise ValueError(f"{path}: documents are .txt files or .jsonl files with a `text` column.")
        for d, doc in enumerate(docs):
            chunk, k = "", 0
            for para in [p.strip() for p in re.split(r"\n\s*\n", doc) if p.strip()] + [None]:
                if chunk and (para is None or len(chunk) + len(para) > max_chars):
                    result.append((f"{path.name}:{d}:{k}", chunk))
                    chunk, k = "", k + 1
                if para is not None:
                    chunk = f"{chunk}\n\n{para}" if chunk else para
    return result


def parse_reply(reply: str) -> tuple[str, str] | None:
    """The question and answer of a teacher reply, or None when it is not the JSON asked for."""
    match = re.search(r"\{.*\}", reply, re.S)
    try:
        data = json.loads(match.group()) if match else None
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    question, answer = data.get("question"), data.get("answer")
    if isinstance(question, str) and isinstance(answer, str) and question.strip() and answer.strip():
        return question.strip(), answer.strip()
    return None


class Teacher:
    """The teacher model behind an OpenAI-compatible endpoint (:mod:`geo_factory.endpoint`, the judge's client);
    the key is read from the environment variable named, never stored."""

    def __init__(self, api_base: str, model: str, api_key_env: str, timeout: float = 120.0, max_tokens: int = 512):
        self.endpoint = ChatEndpoint(
            api_base,
            model,
            api_key_env,
            role="teacher",
            base_setting="--teacher-api",
            key_setting="--api-key-env",
            timeout=timeout,
        )
        self.max_tokens = max_tokens

    def check(self) -> None:
        """The endpoint is up and accepts the key: checked before any passage is read or asked."""
        self.endpoint.check()

    def complete(self, messages: list[dict[str, str]]) -> str:
        return self.endpoint.complete(messages, temperature=0.7, max_tokens=self.max_tokens)


def pairs_from_teacher(
    docs: list[str], teacher: Teacher, state_file: Path, max_requests: int | None, max_retries: int
) -> dict[str, Any]:
    """One grounded pair per passage; ``state_file`` (JSONL, one line per finished passage) makes it resumable."""
    done = {}
    if state_file.is_file():
        for line in state_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["passage_id"]] = row
    todo = [(pid, text) for pid, text in passages(docs) if pid not in done]
    requests = 0
    with open(state_file, "a", encoding="utf-8") as state:
        for pid, text in tqdm(todo, desc="teacher"):
            messages = [{"role": "user", "content": TEACHER_PROMPT.format(passage=text)}]
            row: dict[str, Any] = {"passage_id": pid, "attempts": 0, "pair": None}
            for _ in range(max_retries + 1):
                if max_requests is not None and requests >= max_requests:
                    break
                reply = teacher.complete(messages)
                requests += 1
                row["attempts"] += 1
                parsed = parse_reply(reply)
                if parsed is not None:
                    row["pair"] = parsed
                    break
                messages = [
                    *messages,
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": 'Reply with JSON only: {"question": "...", "answer": "..."}.'},
                ]
            if row["pair"] is None and row["attempts"] < max_retries + 1:  # the budget ran out mid-passage
                break
            state.write(json.dumps(row, ensure_ascii=False) + "\n")
            state.flush()
            done[pid] = row
    pairs = [
        {"instruction": r["pair"][0], "input": "", "output": r["pair"][1], "source": r["passage_id"]}
        for r in done.values()
        if r["pair"] is not None
    ]
    pending = sum(1 for pid, _ in todo if pid not in done)
    return {
        "pairs": pairs,
        "requests": requests,
        "passages": len(done) + pending,
        "answered": len(pairs),
        "malformed": len(done) - len(pairs),
        "pending": pending,
    }


def build_sft(
    output: str,
    name: str | None,
    facts: list[str],
    docs: list[str],
    languages: tuple[str, ...] = ("en", "zh"),
    teacher: Teacher | None = None,
    max_requests: int | None = None,
    max_retries: int = 2,
) -> dict[str, Any]:
    """Write ``output/<name>.json`` (alpaca, with ``source``), ``dataset_info.json`` and ``build_sft.json``."""
    for lang in languages:
        if lang not in ("en", "zh"):
            raise ValueError(f"--languages: `{lang}` has no templates; allowed: en, zh.")
    if docs and teacher is None:
        raise ValueError("--documents needs --teacher-api and --teacher-model.")
    if not facts and not docs:
        raise ValueError("give --facts (tables or glossaries) and/or --documents (with a teacher).")
    for path in [*facts, *docs]:
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such file.")
    if teacher is not None and docs:
        teacher.check()  # a wrong URL, a server that is down or a refused key stop the run before any work
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    name = name or out.name
    summary: dict[str, Any] = {}
    pairs, missing = pairs_from_facts(facts, languages)
    summary["from_facts"] = len(pairs)
    if facts:
        summary["rows_without_text_in"] = missing  # no pair in that language: the row is not written in it
    if docs:
        result = pairs_from_teacher(docs, teacher, out / "teacher_state.jsonl", max_requests, max_retries)
        pairs += result.pop("pairs")
        summary["teacher"] = result
    unique = dedup(pairs)
    summary.update(pairs=len(unique), duplicates_removed=len(pairs) - len(unique))
    write_json_atomic(out / f"{name}.json", unique)
    write_json_atomic(out / "dataset_info.json", {name: {"file_name": f"{name}.json", "columns": ALPACA_COLUMNS}})
    write_json_atomic(out / "build_sft.json", summary)
    return summary
