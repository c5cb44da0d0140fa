"""Loader of an lm-evaluation-harness task folder written by ``geo-factory export-lm-eval``.

Copied into the folder as ``utils.py``; it needs only ``datasets`` (a dependency of the harness), not geo-factory.
"""

import json
from pathlib import Path

import datasets


def load_geobench(data_file: str, **_) -> dict:
    """The task's ready prompts (``context``, ``choices``, ``gold``) from the jsonl file beside this module."""
    with open(Path(__file__).with_name(data_file), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return {"test": datasets.Dataset.from_list(rows)}
