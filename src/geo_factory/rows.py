"""Reading the rows of the data files users hand geo-factory (json, jsonl, csv, parquet), with errors that name the
file and the line: the curation commands and the benchmarks of the user's own read them here."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


def read_rows(path: Path) -> list[Any]:
    """The rows of one .json (a list), .jsonl, .csv (with a header) or .parquet file; a JSON row that is not JSON
    is named by its line."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: expected a {', '.join(SUFFIXES[:-1])} or {SUFFIXES[-1]} file.")
    if suffix == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as f:
            return list(csv.DictReader(f))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
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
