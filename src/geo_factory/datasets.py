"""geo-factory's dataset registry, merged under the user's own ``dataset_info.json``.

LLaMA-Factory resolves dataset names in ``<dataset_dir>/dataset_info.json`` only, which ties a yaml
to the directory it runs from. geo-factory ships its own registry (``data/dataset_info.json``) and
resolves names against both; the user's entry wins on a name clash. Bad names and malformed entries
fail here, before any tokenizer, model or output is touched.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any


DATA_CONFIG = "dataset_info.json"  # LLaMA-Factory's own file name
_SOURCES = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "file_name")
_KEYS = {
    *_SOURCES,
    "file_sha1",
    "formatting",
    "ranking",
    "subset",
    "split",
    "folder",
    "num_samples",
    "columns",
    "tags",
}
_FORMATTINGS = ("alpaca", "sharegpt", "openai")


def registry_dir() -> Path:
    """The folder of geo-factory's ``dataset_info.json``: inside the wheel, or the checkout's ``data/``."""
    packaged = Path(__file__).parent / "data"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "data"


@cache
def _geo_registry() -> dict[str, dict[str, Any]]:
    base = registry_dir()
    info = _read_registry(base / DATA_CONFIG)
    for entry in info.values():  # make local files absolute so they load from any working directory
        if isinstance(entry, dict) and "file_name" in entry:
            entry["file_name"] = str(base / entry["file_name"])
    return info


def _read_registry(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}.") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path} must hold a JSON object mapping dataset names to entries.")
    return info


def merged_registry(dataset_dir: str) -> tuple[dict[str, Any], dict[str, Path]]:
    """All entries visible from ``dataset_dir``, and the file each one comes from."""
    info = dict(_geo_registry())
    origin = dict.fromkeys(info, registry_dir() / DATA_CONFIG)
    user_file = Path(dataset_dir).absolute() / DATA_CONFIG
    if user_file.is_file():
        user = _read_registry(user_file)
        info.update(user)
        origin.update(dict.fromkeys(user, user_file))
    return info, origin


def _is_passthrough(dataset_dir: str | dict) -> bool:
    return isinstance(dataset_dir, dict) or dataset_dir == "ONLINE" or dataset_dir.startswith("REMOTE:")


def check_dataset_names(names: list[str] | str | None, dataset_dir: str | dict, key: str) -> None:
    """Fail with the close names when a dataset is unknown, or with file and key when its entry is malformed."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names or _is_passthrough(dataset_dir):
        return
    info, origin = merged_registry(dataset_dir)
    for name in names:
        if name not in info:
            close = difflib.get_close_matches(name, list(info), n=5, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(
                f"Unknown dataset `{name}` in `{key}`.{hint} Searched {Path(dataset_dir).absolute() / DATA_CONFIG} "
                f"(your registry) and {registry_dir() / DATA_CONFIG} (geo-factory's); "
                f"`geo-factory datasets` lists all {len(info)} names."
            )
        _check_entry(name, info[name], origin[name], dataset_dir)


def _check_entry(name: str, entry: Any, path: Path, dataset_dir: str) -> None:
    where = f"{path}, entry `{name}`"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be a JSON object, got {type(entry).__name__}.")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key `{unknown[0]}`; allowed: {', '.join(sorted(_KEYS))}.")
    sources = [k for k in _SOURCES if k in entry]
    if not sources:
        raise ValueError(f"{where}: needs one of {', '.join(_SOURCES)}.")
    if entry.get("formatting", "alpaca") not in _FORMATTINGS:
        raise ValueError(f"{where}: key `formatting` is `{entry['formatting']}`; allowed: {', '.join(_FORMATTINGS)}.")
    for sub in ("columns", "tags"):
        if sub in entry and not isinstance(entry[sub], dict):
            raise ValueError(f"{where}: key `{sub}` must be a JSON object.")
    if sources == ["file_name"]:
        local = Path(dataset_dir).absolute() / entry["file_name"]  # an absolute file_name wins in the join
        if not local.exists():
            raise ValueError(f"{where}: key `file_name` points to {local}, which does not exist.")


def registry_get_dataset_list(
    get_dataset_list: Callable[[list[str] | None, str | dict], list[Any]],
    dataset_names: list[str] | None,
    dataset_dir: str | dict,
) -> list[Any]:
    """LLaMA-Factory's ``get_dataset_list`` over the merged registry."""
    if _is_passthrough(dataset_dir):
        return get_dataset_list(dataset_names, dataset_dir)
    check_dataset_names(dataset_names, dataset_dir, key="dataset")
    info, _ = merged_registry(dataset_dir)
    return get_dataset_list(dataset_names, info)


def describe() -> list[tuple[str, str]]:
    """(name, source) for every dataset geo-factory registers, for ``geo-factory datasets``."""
    rows = []
    for name, entry in _geo_registry().items():
        source = next((entry[k] for k in _SOURCES if k in entry), "?")
        if "file_name" in entry:
            source = os.path.relpath(source, registry_dir())
        rows.append((name, str(source)))
    return rows
