"""Stand-in hub datasets for FormationEval, Earth-Iron and ClimaQA Gold, written as an online ``load_dataset`` leaves
them: the files in the hub cache's snapshot layout and the ``datasets`` cache its JSON, Parquet and CSV builders
prepare from them, which is what ``load_dataset(..., cache_dir=...)`` reads offline. Used by test_new_benchmarks.py
(a few invented rows) and benchmarks/bench_hub_families.py (many)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


REVISION = "5e0c3d1a2b4f6a8c9d0e1f2a3b4c5d6e7f8a9b0c"  # any commit hash: the stand-ins' revision


def write(
    hf_home: Path, cache_dir: Path, formationeval: list[dict], earth: dict[str, list[dict]], clima: dict[str, str]
) -> None:
    """``formationeval``: rows of the JSON array; ``earth``: rows by split; ``clima``: CSV text by split. Run in a
    child process, as ``datasets`` reads HF_HOME when first imported."""
    code = f"""
import json, sys
from pathlib import Path
import datasets, huggingface_hub
from datasets.data_files import DataFilesDict
from datasets.load import configure_builder_class
from datasets.packaged_modules.csv.csv import Csv, CsvConfig
from datasets.packaged_modules.json.json import Json, JsonConfig
from datasets.packaged_modules.parquet.parquet import Parquet, ParquetConfig

def write(repo_id, config, files, builder, builder_config):
    repo = Path(huggingface_hub.constants.HF_HUB_CACHE) / ("datasets--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text({REVISION!r})
    paths = {{}}
    for split, (name, write_file) in files.items():
        path = repo / "snapshots" / {REVISION!r} / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path)
        paths[split] = [str(path)]
    cfg = builder_config(name=config, data_files=DataFilesDict.from_patterns(paths))
    name = repo_id.split("/")[1]
    cls = configure_builder_class(builder, builder_configs=[cfg], default_config_name=None, dataset_name=name)
    cls(config_name=config, dataset_name=name, repo_id=repo_id, hash={REVISION!r}, cache_dir={str(cache_dir)!r}).download_and_prepare()

data = json.load(sys.stdin)
write("AlmazErmilov/FormationEval", "default",
      {{"test": ("formationeval_v0.1.json", lambda p: p.write_text(json.dumps(data["fe"])))}}, Json, JsonConfig)
def parquet(rows):
    return lambda p: datasets.Dataset.from_list(rows).to_parquet(str(p))
earth = {{split: (f"data/{{split}}-00000-of-00001.parquet", parquet(rows)) for split, rows in data["earth"].items()}}
write("ai-earth/Earth-Iron", "default", earth, Parquet, ParquetConfig)
clima = {{split: (f"climaqa_gold/{{split}}/{{split}}_benchmark.csv", lambda p, t=text: p.write_text(t))
          for split, text in data["clima"].items()}}
write("UCSD-GENIE/ClimaQA", "Gold", clima, Csv, CsvConfig)
"""
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_HUB_CACHE", None)
    env.pop("HF_DATASETS_CACHE", None)
    data = json.dumps({"fe": formationeval, "earth": earth, "clima": clima})
    proc = subprocess.run([sys.executable, "-c", code], env=env, input=data, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
