"""Reading the rows of the data files users hand geo-factory (json, jsonl, csv, parquet), with errors that name the
file and the line: the curation commands and the benchmarks of the user's own read them here.

Rows are named as an editor shows them: ``line N``, the file line a row starts on, counted from 1 (in a CSV the
header is line 1; in a .json list, the line its object opens on); a parquet file has no lines: ``row N``, from 1.
Text files are UTF-8, with or without a byte-order mark.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any


SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


def read_rows(path: Path) -> list[Any]:
    """The rows of one .json (a list), .jsonl, .csv (with a header) or .parquet file."""
    return [row for _, row in numbered_rows(path)]


def numbered_rows(path: Path) -> list[tuple[str, Any]]:
    """(where, row) of every row: ``where`` is ``line N`` (``row N`` in parquet) for the messages that name it."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: expected a {', '.join(SUFFIXES[:-1])} or {SUFFIXES[-1]} file.")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(f"row {i}", row) for i, row in enumerate(pq.read_table(path).to_pylist(), start=1)]
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: the encoding must be UTF-8 (with or without a BOM), but byte {err.start} is not UTF-8; save the "
            'file as UTF-8 (a spreadsheet\'s "CSV UTF-8", or an editor\'s "Save with encoding").'
        ) from None
    if suffix == ".csv":
        return _csv_rows(text)
    if suffix == ".json":
        return _json_rows(path, text)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not valid JSON ({err}).") from None
    return rows


def _csv_rows(text: str) -> list[tuple[str, dict[str, Any]]]:
    """As ``csv.DictReader`` reads them (a short row's missing cells None, a long row's extra ones under None), each
    named by the line it starts on (a quoted cell may span lines); blank lines are no rows."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header, rows, end = None, [], 0
    for cells in reader:
        start, end = end + 1, reader.line_num
        if not cells:
            continue
        if header is None:
            header = cells
            continue
        row: dict[Any, Any] = dict(zip(header, cells))
        row.update(dict.fromkeys(header[len(cells) :]))
        if len(cells) > len(header):
            row[None] = cells[len(header) :]
        rows.append((f"line {start}", row))
    return rows


def _json_rows(path: Path, text: str) -> list[tuple[str, Any]]:
    """A list of rows, each named by the line its value opens on."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}).") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: a .json file must hold a list of rows.")
    decoder, skip = json.JSONDecoder(), json.decoder.WHITESPACE.match
    at, numbered = skip(text, skip(text, 0).end() + 1).end(), []  # past "[" and white space
    for row in rows:
        numbered.append((f"line {text.count(chr(10), 0, at) + 1}", row))
        at = skip(text, decoder.raw_decode(text, at)[1]).end()
        at = skip(text, at + 1).end()  # past "," (or the closing "]")
    return numbered
