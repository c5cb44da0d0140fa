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

from .extras import missing_offline


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


def user_registry(dataset_dir: str) -> Path | None:
    """The user's own ``dataset_info.json`` in ``dataset_dir``; None when there is none, or it is geo-factory's
    (``dataset_dir: data`` inside a clone of geo-factory)."""
    user_file = Path(dataset_dir).absolute() / DATA_CONFIG
    if not user_file.is_file() or user_file.resolve() == (registry_dir() / DATA_CONFIG).resolve():
        return None
    return user_file


def merged_registry(dataset_dir: str) -> tuple[dict[str, Any], dict[str, Path]]:
    """All entries visible from ``dataset_dir``, and the file each one comes from."""
    info = dict(_geo_registry())
    origin = dict.fromkeys(info, registry_dir() / DATA_CONFIG)
    user_file = user_registry(dataset_dir)
    if user_file is not None:
        user = _read_registry(user_file)
        info.update(user)
        origin.update(dict.fromkeys(user, user_file))
    return info, origin


def _is_passthrough(dataset_dir: str | dict) -> bool:
    return isinstance(dataset_dir, dict) or dataset_dir == "ONLINE" or dataset_dir.startswith("REMOTE:")


def check_dataset_names(
    names: list[str] | str | None,
    dataset_dir: str | dict,
    key: str,
    cache_dir: str | None = None,
    offline_check: bool = True,
) -> None:
    """Fail with the close names when a dataset is unknown, or with file and key when its entry is malformed.

    With ``offline_check``, also when the run is offline and a hub dataset is not in ``cache_dir`` (the one
    LLaMA-Factory will load it with; unset: datasets' own cache).
    """
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
                f"Unknown dataset `{name}` in `{key}`.{hint} Searched {_searched(dataset_dir)}; "
                f"`geo-factory datasets --dataset-dir {dataset_dir}` lists all {len(info)} names."
            )
        _check_entry(name, info[name], origin[name], dataset_dir)
        if offline_check:
            _check_reachable(name, info[name], key, dataset_dir, cache_dir)


def reject_repeated(names: list[str], key: str, fix: str) -> None:
    """A name twice in a list whose members are each read once (a mixture, a vocabulary corpus) is a slip."""
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"`{key}` names {', '.join(f'`{name}`' for name in twice)} more than once: {fix}")


def _check_reachable(name: str, entry: dict[str, Any], key: str, dataset_dir: str, cache_dir: str | None) -> None:
    """Offline, a hub dataset never cached fails deep inside ``datasets``: say which one it is and what to do."""
    repo, subset = entry.get("hf_hub_url"), entry.get("subset")
    cache = missing_offline(repo, subset, cache_dir) if repo is not None else None
    if cache is None:
        return
    raise ValueError(
        f"`{name}` in `{key}` is the hub dataset `{repo}`{f' (subset `{subset}`)' if subset else ''}, and this run is "
        f"offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) with no copy of it in the cache ({cache}). "
        f"Run once with network access to cache it, or register a local copy under the name `{name}` in "
        f"{Path(dataset_dir).absolute() / DATA_CONFIG} (your entries win over geo-factory's)."
    )


def _searched(dataset_dir: str) -> str:
    """The registry files a name was looked up in, each once."""
    geo, user_file = registry_dir() / DATA_CONFIG, Path(dataset_dir).absolute() / DATA_CONFIG
    if user_registry(dataset_dir) is not None:
        return f"{user_file} (your registry) and {geo} (geo-factory's)"
    if user_file.is_file():  # dataset_dir is geo-factory's own data/
        return f"{geo} (geo-factory's)"
    return f"{geo} (geo-factory's); your `dataset_dir` has no {DATA_CONFIG} ({user_file})"


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
    check_dataset_names(dataset_names, dataset_dir, key="dataset", offline_check=False)  # parsing did, with cache_dir
    info, _ = merged_registry(dataset_dir)
    return get_dataset_list(dataset_names, info)


def describe(dataset_dir: str = "data") -> list[tuple[str, str, Path]]:
    """(name, source, registry file) of every dataset name visible from ``dataset_dir``, for ``geo-factory datasets``."""
    info, origin = merged_registry(dataset_dir)
    rows = []
    for name, entry in info.items():
        source = next((entry[k] for k in _SOURCES if k in entry), "?") if isinstance(entry, dict) else "?"
        if isinstance(entry, dict) and "file_name" in entry:  # relative to its registry's folder, as written there
            source = os.path.relpath(origin[name].parent / source, origin[name].parent)
        rows.append((name, str(source), origin[name]))
    return rows
