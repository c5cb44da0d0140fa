"""The one validation idiom of the argument dataclasses: ``ConfigError(key, message)``, raised by small checks.

``key`` lets a command say where a bad value came from (the yaml file or the command line). The checks know
values only, never domain code: a check that needs GeoBench, a tokenizer or a dataset runs in its domain module
after parsing.
"""

import os
from typing import Any, get_args


class ConfigError(ValueError):
    """A bad value of one key: ``key`` lets the command say where the value came from (yaml or command line)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def split(value: Any) -> list[str]:
    """A comma-separated value (or a yaml list) as its non-empty items."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def check_choice(key: str, value: Any, literal: Any) -> None:
    allowed = get_args(literal)
    if value not in allowed:
        raise ConfigError(key, f"`{key}: {value}` is not supported; allowed: {', '.join(allowed)}.")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(key: str, value: Any, low: int | None = None, optional: bool = False) -> None:
    """An integer (``>= low``); YAML and the command line hand over ``5.0``, ``"5"`` or ``true`` unconverted."""
    if optional and value is None:
        return
    if not is_int(value) or (low is not None and value < low):
        allowed = "an integer" if low is None else f"an integer >= {low}"
        raise ConfigError(key, f"`{key}` must be {allowed}{' (or unset)' if optional else ''}, got {value!r}.")


def check_number(key: str, value: Any, above: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > above:
        raise ConfigError(key, f"`{key}` must be a number > {above:g}, got {value!r}.")


def check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(key, f"`{key}` must be true or false, got {value!r}.")


def check_str(key: str, value: Any, optional: bool = False) -> None:
    if not (isinstance(value, str) or (optional and value is None)):
        raise ConfigError(key, f"`{key}` must be a string, got {value!r}.")


def check_task_dir(key: str, value: str | None) -> None:
    """A GeoBench folder, when given (unset: the hub dataset)."""
    check_str(key, value, optional=True)
    if value is not None and not os.path.isdir(value):
        raise ConfigError(
            key,
            f"`{key}: {value}` is not a folder. Point it to a GeoBench folder (K2 layout: geobench_npee.json, "
            "geobench_apstudy.json; JiuZhou layout: objective_task_*.csv, subjective_task.xlsx), or leave it unset "
            "for the hub dataset `daven3/geobench`.",
        )
