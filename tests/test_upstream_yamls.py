"""JiuZhou's published LLaMA-Factory yamls, run unchanged from an empty directory (issue 13).

They name LLaMA-Factory's demo datasets (``c4_demo``, ``identity``, ``alpaca_en_demo``), which live in
LLaMA-Factory's git repository, not in its pip package: geo-factory resolves them to the hub copy
``llamafactory/demo_data``. These runs are offline, so a name must end in the clear hub error, never in
"Unknown dataset"; with the names pointed at local stand-ins in the user's ``dataset_info.json`` (which wins),
the yamls train, merge and chat.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import chat, example, greedy_reference, run_cli, run_geo_factory, workdir


pytestmark = pytest.mark.slow

# JiuZhou's examples/{train_lora,merge_lora,inference}/JiuZhou_lora_*.yaml, keys and values as published
# (github.com/THU-ESIS/JiuZhou), with the model swapped for the tiny one.
PRETRAIN = """\
### model
model_name_or_path: models/tiny-mistral

### method
stage: pt
do_train: true
finetuning_type: lora
lora_target: all

### dataset
dataset: c4_demo
cutoff_len: 2048
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16

### output
output_dir: saves/JiuZhou/lora/pretrain
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000

### eval
val_size: 0.1
per_device_eval_batch_size: 1
eval_strategy: steps
eval_steps: 500
"""
SFT = (
    PRETRAIN.replace("stage: pt", "stage: sft")
    .replace("dataset: c4_demo", "dataset: identity,alpaca_en_demo,geosignal\ntemplate: mistral")
    .replace("saves/JiuZhou/lora/pretrain", "saves/JiuZhou/lora/sft")
)
MERGE = """\
### Note: DO NOT use quantized model or quantization_bit when merging lora adapters

### model
model_name_or_path: models/tiny-mistral
adapter_name_or_path: saves/JiuZhou/lora/sft
template: mistral
finetuning_type: lora

### export
export_dir: models/JiuZhou_lora_sft
export_size: 2
export_device: cpu
export_legacy_format: false
"""
INFERENCE = """\
model_name_or_path: models/tiny-mistral
adapter_name_or_path: saves/JiuZhou/lora/sft
template: mistral
finetuning_type: lora
infer_backend: huggingface  # choices: [huggingface, vllm]
"""
# What a CPU needs (no bf16), and a short run; everything else stays as published.
CPU_SHORT = ("bf16=false", "max_steps=4", "eval_steps=4", "cutoff_len=128", "preprocessing_num_workers=2")


def _jiuzhou(work: Path) -> dict[str, Path]:
    paths = {}
    for name, text in {"pretrain": PRETRAIN, "sft": SFT, "merge": MERGE, "inference": INFERENCE}.items():
        paths[name] = work / f"JiuZhou_lora_{name}.yaml"
        paths[name].write_text(text)
    return paths


def _assert_hub_error(message: str, name: str) -> None:
    """Offline, a demo name ends in the clear hub error naming it, never in "Unknown dataset"."""
    assert "Unknown dataset" not in message, message[-3000:]
    assert f"`{name}`" in message and "offline" in message, message[-3000:]
    hub = "daven3/geosignal" if name == "geosignal" else "llamafactory/demo_data"
    assert hub in message and "dataset_info.json" in message, message[-3000:]


def test_offline_the_demo_names_end_in_the_hub_error_not_unknown_dataset(
    tiny_model: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    work = workdir(tmp_path, tiny_model)
    proc = run_cli("train", _jiuzhou(work)["pretrain"], *CPU_SHORT, cwd=work, env=cli_env, check=False)
    assert proc.returncode != 0
    _assert_hub_error(proc.stderr, "c4_demo")
    assert not (work / "saves").exists(), "an output was written before the dataset was found"


def test_offline_the_sft_yamls_first_demo_name_is_the_one_named(tiny_model: Path, tmp_path: Path, parse_train) -> None:
    """The same check at parsing (in this process) on the SFT yaml, whose `identity` comes before `geosignal`."""
    work = workdir(tmp_path, tiny_model)
    with pytest.raises(ValueError) as err:
        parse_train(_jiuzhou(work)["sft"], *CPU_SHORT, cwd=work)
    _assert_hub_error(str(err.value), "identity")
    assert not (work / "saves").exists()


def _stand_ins(work: Path) -> None:
    """The user's own small copies, registered under the upstream names in ``data/dataset_info.json``."""
    data = work / "data"
    data.mkdir()
    rocks = ["Basalt is a fine-grained volcanic rock.", "Granite is a coarse-grained plutonic rock."] * 20
    (data / "c4_local.jsonl").write_text("".join(json.dumps({"text": t * 8}) + "\n" for t in rocks))
    pairs = [{"instruction": f"Describe rock {i}.", "input": "", "output": rocks[i]} for i in range(len(rocks))]
    (data / "pairs.json").write_text(json.dumps(pairs))
    mine = [{"instruction": "Who are you?", "input": "", "output": "I am a geoscience aide built by my lab."}] * 20
    (data / "identity_mine.json").write_text(json.dumps(mine))
    registry = {
        "c4_demo": {"file_name": "c4_local.jsonl", "columns": {"prompt": "text"}},
        "identity": {"file_name": "identity_mine.json"},
        "alpaca_en_demo": {"file_name": "pairs.json"},
        "geosignal": {"file_name": "pairs.json"},
    }
    (data / "dataset_info.json").write_text(json.dumps(registry))


def test_with_local_stand_ins_the_yamls_train_merge_and_chat(
    tiny_model: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    work = workdir(tmp_path, tiny_model)
    _stand_ins(work)
    yamls = _jiuzhou(work)
    run_cli("train", yamls["pretrain"], *CPU_SHORT, cwd=work, env=cli_env)
    proc = run_cli("train", yamls["sft"], *CPU_SHORT, cwd=work, env=cli_env)
    assert "I am a geoscience aide built by my lab." in proc.stdout, "the user's own `identity` entry did not win"
    for run in ("pretrain", "sft"):
        results = json.loads((work / f"saves/JiuZhou/lora/{run}/train_results.json").read_text())
        assert 0 < results["train_loss"] < 20, results
        assert (work / f"saves/JiuZhou/lora/{run}/adapter_model.safetensors").is_file()
    run_cli("export", yamls["merge"], cwd=work, env=cli_env)
    assert list((work / "models/JiuZhou_lora_sft").glob("*.safetensors"))
    greedy = (
        "do_sample=false",
        "max_new_tokens=32",
    )  # sampling can end at once on the tiny model; 1,024 tokens by default
    answer = chat(yamls["inference"], "What is basalt?", *greedy, cwd=work, env=cli_env)
    reference = greedy_reference(
        work / "models/tiny-mistral",
        "What is basalt?",
        template="mistral",
        max_new_tokens=32,
        adapter=work / "saves/JiuZhou/lora/sft",
    )
    assert answer == reference, (answer, reference)


def test_geo_factory_datasets_lists_the_upstream_demo_names_with_their_source(tmp_path: Path, cli_env) -> None:
    proc = run_geo_factory("datasets", cwd=tmp_path, env=cli_env)
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:] if line.strip()}
    for name in ("identity", "alpaca_en_demo", "alpaca_zh_demo", "c4_demo", "wiki_demo", "glaive_toolcall_en_demo"):
        assert "llamafactory/demo_data" in rows[name], proc.stdout


@pytest.mark.parametrize(
    ("name", "folder"), [("c4_demo", "llamafactory___demo_data/c4_demo"), ("skypile_zh", "Skywork___sky_pile-150_b")]
)
def test_offline_a_cached_hub_dataset_is_found_where_datasets_keeps_it(
    name: str, folder: str, tiny_model: Path, tmp_path: Path, parse_train
) -> None:
    """The offline check (at parsing, in this process) looks in the folder `datasets` itself caches to
    (`Skywork/SkyPile-150B` -> `sky_pile-150_b`) and in the yaml's own `cache_dir`: a cached copy passes it; an
    empty cache does not."""
    work = workdir(tmp_path, tiny_model)
    args = (example("tiny/tiny_lora_pretrain.yaml"), f"dataset={name}", f"cache_dir={work / 'cache'}")
    with pytest.raises(ValueError, match="with no copy of it in the cache"):
        parse_train(*args, cwd=work)
    (work / "cache" / folder).mkdir(parents=True)
    parse_train(*args, cwd=work)
