"""Small helpers shared by the modules, like LLaMA-Factory's ``extras``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, obj: Any) -> None:
    """A SIGKILL leaves the old file or the new one, never half of one: resume logic trusts what it reads."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_pretrained(folder: Path, *objects: Any) -> None:
    """``save_pretrained`` each object into ``folder``, with the modes the user's umask gives.

    safetensors 0.8 writes through a private temporary file, so ``model.safetensors`` comes out 0600 while the
    rest of the folder is 0644: a model built for a group would be unreadable to the group.
    """
    for obj in objects:
        obj.save_pretrained(folder)
    for path in Path(folder).iterdir():
        if path.is_file():
            path.chmod(0o666 & ~current_umask())


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def missing_offline(repo: str, subset: str | None = None, cache_dir: str | None = None) -> Path | None:
    """The ``datasets`` cache that lacks the hub dataset ``repo`` (config ``subset``) when this run is offline, else
    None. Offline, an uncached dataset fails deep inside ``datasets``, after the model has loaded: callers check
    first and name the dataset and the key that asked for it."""
    from datasets import config
    from datasets.naming import camelcase_to_snakecase
    from llamafactory.extras.misc import use_modelscope, use_openmind

    if not config.HF_HUB_OFFLINE or use_modelscope() or use_openmind():  # other hubs keep other caches
        return None
    *namespace, dataset = repo.split("/")
    cache = Path(cache_dir or config.HF_DATASETS_CACHE)
    folder = "___".join(
        [*namespace, camelcase_to_snakecase(dataset)]
    )  # as datasets names it: Skywork___sky_pile-150_b
    return None if (cache / folder / (subset or "")).is_dir() else cache
