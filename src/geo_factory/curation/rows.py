"""Reading the rows of the JSON and JSONL files the curation commands take, with errors that name file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_rows(path: Path) -> list[Any]:
    """The rows of one .json (a list) or .jsonl file; a row that is not JSON is named by its line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err}).") from None
        if not isinstance(rows, list):
            raise ValueError(f"{path}: a .json file must hold a list of rows.")
        return rows
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not valid JSON ({err}).") from None
    return rows
