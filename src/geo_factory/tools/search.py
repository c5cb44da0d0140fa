"""``corpus_search``: BM25 passages from a dataset of the registry, each with the id to cite.

The dataset is named as in a training yaml (``geo_corpus_demo``, or one of your ``data/dataset_info.json``);
only local files are read (JSON or JSON lines; no network). The index (``bm25s``) is built on first use and kept
for the process. Words are lower-cased ASCII letters and digits; Chinese is indexed by character bigrams, so it
needs no segmenter.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from .registry import Tool, register


PASSAGE_CHARS = 400
MAX_DOCUMENTS = 200_000
_WORD = re.compile(r"[a-z0-9]+|[\u3400-\u9fff]+")
_TEXT_COLUMNS = ("prompt", "query", "response")  # LLaMA-Factory's alpaca columns, in order
_DEFAULT_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}


def tokenize(text: str) -> list[str]:
    tokens = []
    for word in _WORD.findall(text.lower()):
        if word[0].isascii():
            tokens.append(word)
        else:  # a run of CJK characters: its bigrams (the character itself when alone)
            tokens.extend([word[i : i + 2] for i in range(len(word) - 1)] or [word])
    return tokens


def _documents(dataset: str, dataset_dir: str) -> list[tuple[str, str]]:
    from ..datasets import merged_registry

    info, origin = merged_registry(dataset_dir)
    if dataset not in info:
        local = sorted(name for name, entry in info.items() if isinstance(entry, dict) and "file_name" in entry)
        raise ValueError(f"unknown dataset `{dataset}`; local datasets: {', '.join(local)}.")
    entry = info[dataset]
    if "file_name" not in entry:
        raise ValueError(f"`{dataset}` is not a local file (corpus_search reads no network).")
    path = Path(origin[dataset]).parent / entry["file_name"]  # an absolute file_name wins in the join
    if path.is_dir() or path.suffix not in (".json", ".jsonl"):
        raise ValueError(f"`{dataset}`: corpus_search reads one .json or .jsonl file, not {path.name}.")
    with open(path, encoding="utf-8") as f:
        rows = json.load(f) if path.suffix == ".json" else [json.loads(line) for line in f if line.strip()]
    columns = entry.get("columns") or {}
    if entry.get("formatting") == "sharegpt":
        key = columns.get("messages", "conversations")
        text_of = lambda row: "\n".join(str(m.get("value", m.get("content", ""))) for m in row.get(key) or [])  # noqa: E731
    else:
        keys = [columns.get(c, _DEFAULT_COLUMNS[c]) for c in _TEXT_COLUMNS if c in columns] or ["text", "instruction"]
        keys += [k for k in ("input", "output") if not columns and k not in keys]
        text_of = lambda row: "\n".join(str(row[k]) for k in keys if row.get(k))  # noqa: E731
    return [(str(row.get("id", f"{dataset}:{i}")), text_of(row)) for i, row in enumerate(rows[:MAX_DOCUMENTS])]


@cache
def _index(dataset: str, dataset_dir: str) -> tuple[Any, list[tuple[str, str]]]:
    import bm25s

    documents = _documents(dataset, dataset_dir)
    retriever = bm25s.BM25()
    retriever.index([tokenize(text) or ["<empty>"] for _, text in documents], show_progress=False)
    return retriever, documents


def corpus_search(query: str, dataset: str = "geo_corpus_demo", top_k: int = 3, dataset_dir: str = "data") -> dict:
    retriever, documents = _index(dataset, str(Path(dataset_dir).absolute()))
    tokens = tokenize(query)
    if not tokens:
        raise ValueError("the query has no searchable words.")
    ids, scores = retriever.retrieve([tokens], k=min(top_k, len(documents)), show_progress=False)
    hits = []
    for i, score in zip(ids[0].tolist(), scores[0].tolist()):
        if score > 0:
            doc_id, text = documents[i]
            passage = text if len(text) <= PASSAGE_CHARS else text[:PASSAGE_CHARS].rsplit(" ", 1)[0] + " …"
            hits.append({"id": doc_id, "score": round(score, 4), "passage": passage})
    return {"dataset": dataset, "query": query, "hits": hits}


register(
    Tool(
        name="corpus_search",
        description="Search a registered text corpus (a dataset name, default geo_corpus_demo) with BM25; returns "
        "the best passages, each with its document id to cite.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 500, "description": "What to look for"},
                "dataset": {"type": "string", "minLength": 1, "description": "Dataset name, as in training yamls"},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 5, "description": "Passages to return (1-5)"},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        function=corpus_search,
        sources=("Robertson & Zaragoza (2009), The probabilistic relevance framework: BM25 and beyond; bm25s",),
    )
)
