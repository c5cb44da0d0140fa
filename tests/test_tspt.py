"""TSPT (``stage: tspt``) as a user runs it: the shipped tiny yamls through ``llamafactory-cli``.

Every run starts in a fresh directory with no ``data/`` of its own (dataset names resolve through
geo-factory's registry) and ``models/tiny-mistral`` linked in. Budgets are a few dozen steps.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import chat, example, greedy_reference, kill_when, read_trainer_log, run_cli, workdir
from geo_factory.datasets import registry_dir
from geo_factory.hparams import DecontaminationArguments, GeoBenchTrainArguments, TsptArguments
from geo_factory.vocab import RECORD


STAGES = ("stage1", "stage2")


def _report(output_dir: Path) -> dict:
    return json.loads((output_dir / "tspt_report.json").read_text())


def _assert_shares(report: dict, config: dict) -> None:
    """Each dataset's share of the packed tokens a stage trained on is its configured share, within 2%."""
    for n, stage in enumerate(STAGES, 1):
        names = config[f"tspt_stage{n}_dataset"].split(",")
        shares = [float(s) for s in str(config[f"tspt_stage{n}_mix"]).split(",")]
        datasets = report["stages"][stage]["datasets"]
        assert list(datasets) == names
        for name, share in zip(names, shares):
            assert abs(datasets[name]["realized_share"] - share) <= 0.02, (stage, name, datasets[name])


def _outputs(output_dir: Path) -> dict[str, set[str]]:
    """File names at the top of output_dir and of each stage folder, checkpoint folders left out."""
    return {
        where: {p.name for p in (output_dir / where).iterdir() if not p.name.startswith("checkpoint-")}
        for where in ("", *STAGES)
    }


def _lrs(stage_dir: Path) -> list[float]:
    return [row["lr"] for row in read_trainer_log(stage_dir) if "loss" in row]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model, cli_env) -> tuple[Path, Path, dict]:
    """The shipped tiny LoRA TSPT yaml, as is (plus the token counter, to check budgets independently)."""
    work = workdir(tmp_path_factory.mktemp("tspt_lora"), tiny_model)
    config = yaml.safe_load(example("tiny/tiny_tspt_lora.yaml").read_text())
    run_cli("train", example("tiny/tiny_tspt_lora.yaml"), "include_num_input_tokens_seen=true", cwd=work, env=cli_env)
    return work, work / config["output_dir"], config


def test_tspt_writes_both_stages_the_result_and_the_report(lora_run) -> None:
    _, out, config = lora_run
    outputs = _outputs(out)
    assert {"adapter_model.safetensors", "adapter_config.json", "tspt_report.json", "training_loss.png"} <= outputs[""]
    for stage in STAGES:
        assert {"adapter_model.safetensors", "trainer_log.jsonl", "trainer_state.json", "tspt_stage.json"} <= outputs[
            stage
        ]
        assert (out / stage / "checkpoint-10").is_dir()
    assert (out / "training_loss.png").stat().st_size > 0

    report = _report(out)
    assert report["finished"] and report["world_size"] == 1
    for n, stage in enumerate(STAGES, 1):
        summary, log = report["stages"][stage], read_trainer_log(out / stage)
        budget = int(float(config[f"tspt_stage{n}_tokens"]))
        steps = budget // (config["cutoff_len"] * config["per_device_train_batch_size"])
        assert summary["steps"] == summary["max_steps"] == steps == log[-1]["current_steps"]
        # what the trainer itself counted (include_num_input_tokens_seen) is the budget
        assert summary["consumed_tokens"] == summary["planned_tokens"] == budget == log[-1]["total_tokens"]
        losses = [row["loss"] for row in log if "loss" in row]
        assert (summary["first_loss"], summary["last_loss"]) == (losses[0], losses[-1])
        for name in config[f"tspt_stage{n}_dataset"].split(","):  # each dataset's tokens, as every mixture logs
            counts = [row[f"tokens_{name}"] for row in log if "loss" in row]
            assert len(counts) == len(losses) and 0 < counts[0] <= counts[-1]
        assert summary["wall_time_s"] > 0 and summary["resumed_from"] is None
        for entry in summary["datasets"].values():
            assert entry["consumed_tokens"] == entry["planned_tokens"] > 0
            assert 0 < entry["passes"] < 1  # the demo corpora are larger than these budgets: subsampled
    _assert_shares(report, config)


def test_stage2_has_its_own_schedule_and_a_fresh_optimizer(lora_run) -> None:
    _, out, config = lora_run
    lr1, lr2 = _lrs(out / "stage1"), _lrs(out / "stage2")
    assert max(lr1) == pytest.approx(config["tspt_stage1_learning_rate"])
    assert max(lr2) == pytest.approx(config["tspt_stage2_learning_rate"])
    assert lr1[-1] < 0.05 * max(lr1)  # stage 1 decayed to the end of its cosine ...
    assert lr2[0] == 0.0 and lr2.index(max(lr2)) < lr1.index(max(lr1))  # ... stage 2 warms up again, shorter
    for stage in STAGES:  # Adam's step count restarts: stage 2 did not inherit stage 1's optimizer state
        optimizer = torch.load(out / stage / "checkpoint-10" / "optimizer.pt", weights_only=False)
        assert {int(state["step"]) for state in optimizer["state"].values()} == {10}


def test_final_adapter_is_stage2s_on_the_base_model(lora_run) -> None:
    _, out, _ = lora_run
    final, stage1, stage2 = (load_file(p / "adapter_model.safetensors") for p in (out, out / "stage1", out / "stage2"))
    assert final.keys() == stage2.keys() == stage1.keys()
    assert all(final[k].equal(stage2[k]) for k in final)
    assert any(not stage1[k].equal(stage2[k]) for k in stage1), "stage 2 did not train"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "models/tiny-mistral"


def test_export_merges_and_chat_answers_with_the_result(lora_run, cli_env) -> None:
    work, out, _ = lora_run
    merged = work / "saves/tiny/tspt_merged"
    run_cli(
        "export",
        example("tiny/tiny_lora_merge.yaml"),
        f"adapter_name_or_path={out.relative_to(work)}",
        f"export_dir={merged.relative_to(work)}",
        cwd=work,
        env=cli_env,
    )
    base, weights = load_file(work / "models/tiny-mistral/model.safetensors"), load_file(merged / "model.safetensors")
    assert base.keys() == weights.keys()
    changed = [k for k in base if not base[k].equal(weights[k])]
    assert changed and all("proj" in k for k in changed), "the merge left the LoRA targets as they were"

    answer = chat(
        example("tiny/tiny_chat.yaml"),
        "What is basalt?",
        "model_name_or_path=models/tiny-mistral",
        f"adapter_name_or_path={out.relative_to(work)}",
        cwd=work,
        env=cli_env,
    )
    reference = greedy_reference(
        work / "models/tiny-mistral", "What is basalt?", template="mistral", max_new_tokens=32, adapter=out
    )
    assert answer == reference, (answer, reference)


def _assert_stage2_saved_stage1s_weights(out: Path, weights: str) -> None:
    """With stage 2's learning rate at 0 it saves exactly the weights it started from: stage 1's last ones."""
    stage1, stage2 = load_file(out / "stage1" / weights), load_file(out / "stage2" / weights)
    assert stage1.keys() == stage2.keys()
    assert all(stage1[k].equal(stage2[k]) for k in stage1)


def test_stage2_starts_from_stage1s_last_weights_in_full_finetuning(tmp_path, tiny_model, cli_env) -> None:
    work = workdir(tmp_path, tiny_model)
    config = yaml.safe_load(example("tiny/tiny_tspt_full.yaml").read_text())
    budgets = ("tspt_stage1_tokens=2560", "tspt_stage2_tokens=2560", "tspt_stage2_learning_rate=0")
    run_cli("train", example("tiny/tiny_tspt_full.yaml"), *budgets, cwd=work, env=cli_env)
    out = work / config["output_dir"]
    _assert_stage2_saved_stage1s_weights(out, "model.safetensors")
    base, stage1 = load_file(tiny_model / "model.safetensors"), load_file(out / "stage1" / "model.safetensors")
    assert any(not base[k].equal(stage1[k]) for k in base)
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()


def test_streaming_mixes_by_tokens_without_materializing_and_repeats_a_short_dataset(
    tmp_path, tiny_model, cli_env
) -> None:
    work = workdir(tmp_path, tiny_model)
    (work / "data").mkdir()  # a user registry with a short corpus, merged over geo-factory's
    lines = (registry_dir() / "demo" / "geo_corpus.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    (work / "data" / "geo_snippets.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    registry = {"geo_snippets": {"file_name": "geo_snippets.jsonl", "columns": {"prompt": "text"}}}
    (work / "data" / "dataset_info.json").write_text(json.dumps(registry), encoding="utf-8")
    cache = tmp_path / "datasets_cache"
    overrides = {"tspt_stage2_dataset": "geo_snippets,general_corpus_demo"}
    proc = run_cli(
        "train",
        example("tiny/tiny_tspt_lora.yaml"),
        "streaming=true",
        "buffer_size=64",
        *(f"{k}={v}" for k, v in overrides.items()),
        cwd=work,
        env={**cli_env, "HF_DATASETS_CACHE": str(cache)},
    )
    config = {**yaml.safe_load(example("tiny/tiny_tspt_lora.yaml").read_text()), **overrides}
    report = _report(work / config["output_dir"])
    assert report["streaming"] is True
    _assert_shares(report, config)
    short = report["stages"]["stage2"]["datasets"]["geo_snippets"]
    assert short["passes"] > 2, short
    assert short["consumed_tokens"] == short["planned_tokens"]
    assert f"it is repeated, {short['passes']:.2f} passes" in proc.stdout + proc.stderr
    assert not list(cache.rglob("*.arrow")), "the streamed corpora were converted to Arrow"


def _newest_checkpoint(stage_dir: Path) -> int:
    return max(
        int(p.name.split("-")[1]) for p in stage_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()
    )


def test_kill_and_resume_in_each_stage(tmp_path, tiny_model, cli_env, parse_train) -> None:
    work = workdir(tmp_path, tiny_model)
    args = [
        "train",
        str(example("tiny/tiny_tspt_lora.yaml")),
        "tspt_stage1_tokens=15360",  # 30 steps a stage
        "tspt_stage2_tokens=15360",
        "save_steps=5",
    ]
    out = work / yaml.safe_load(example("tiny/tiny_tspt_lora.yaml").read_text())["output_dir"]
    stage1, stage2 = out / "stage1", out / "stage2"

    # killed in stage 1, after its first checkpoints: it resumes stage 1 from the newest complete one
    kill_when(args, work, cli_env, stage1 / "checkpoint-10" / "trainer_state.json", tmp_path / "run1.log")
    assert not (stage1 / "tspt_stage.json").exists() and not stage2.exists()
    resume1, lines1 = _newest_checkpoint(stage1), len(read_trainer_log(stage1))

    kill_when(args, work, cli_env, stage2 / "checkpoint-10" / "trainer_state.json", tmp_path / "run2.log")
    log1 = read_trainer_log(stage1)
    assert log1[lines1]["current_steps"] == resume1 + 1  # steps 1..resume1 were not trained again
    assert [row["current_steps"] for row in log1].count(1) == 1
    assert _report(out)["stages"]["stage1"]["resumed_from"] == f"checkpoint-{resume1}"
    assert not (stage2 / "tspt_stage.json").exists()

    # a finished stage is only reused for the same configuration (checked at parsing: here, in this process)
    with pytest.raises(ValueError, match="was finished with other tokens than configured now"):
        parse_train(*args[1:], "tspt_stage1_tokens=10240", cwd=work)

    # killed in stage 2: the re-run skips stage 1 and resumes stage 2 from its newest complete checkpoint
    stage1_files = {p.name: p.read_bytes() for p in stage1.iterdir() if p.is_file()}
    resume2, lines2 = _newest_checkpoint(stage2), len(read_trainer_log(stage2))
    rerun = run_cli(*args, cwd=work, env=cli_env)
    assert "TSPT stage 1 finished earlier" in rerun.stdout
    assert {p.name: p.read_bytes() for p in stage1.iterdir() if p.is_file()} == stage1_files
    assert read_trainer_log(stage2)[lines2]["current_steps"] == resume2 + 1
    report = _report(out)
    assert report["finished"]
    assert report["stages"]["stage2"]["resumed_from"] == f"checkpoint-{resume2}"
    assert report["stages"]["stage2"]["steps"] == 30
    assert (out / "adapter_model.safetensors").is_file()

    # and once finished, the same command stops at parsing with status 0 (its message: see the short run's re-run)
    with pytest.raises(SystemExit) as stop:
        parse_train(*args[1:], cwd=work)
    assert stop.value.code == 0


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, tiny_model, cli_env) -> tuple[Path, list[str], str]:
    """Two steps in stage 1, a budget of no whole number of steps in stage 2 at learning rate 0, on the tiny model
    with 64 positions."""
    work = workdir(tmp_path_factory.mktemp("tspt_short"), tiny_model)
    short = work / "models" / "short-mistral"
    short.mkdir()
    for path in tiny_model.iterdir():
        if path.name != "config.json":
            (short / path.name).symlink_to(path)
    config = json.loads((tiny_model / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 64}))
    args = [
        "train",
        str(example("tiny/tiny_tspt_lora.yaml")),
        "model_name_or_path=models/short-mistral",
        "tspt_stage1_dataset=[general_corpus_demo,geo_corpus_demo]",  # a YAML list, as LLaMA-Factory's `dataset` takes
        "tspt_stage1_tokens=1024",
        "tspt_stage2_tokens=1000",
        "tspt_stage2_learning_rate=0",
        "plot_loss=false",
        "output_dir=out",
    ]
    proc = run_cli(*args, cwd=work, env=cli_env)
    return work, args, proc.stdout + proc.stderr


def test_a_budget_of_no_whole_number_of_steps_is_rounded_up_and_logged(short_run) -> None:
    work, _, log = short_run
    assert (
        "`tspt_stage2_tokens: 1000` is not a whole number of steps at 512 tokens per optimizer step (cutoff_len 128 x "
        "per_device_train_batch_size 4 x gradient_accumulation_steps 1 x world size 1): rounded up, stage 2 trains 2 "
        "steps, 1,024 tokens." in log
    ), log[-3000:]
    assert "`tspt_stage1_tokens: 1024` is not" not in log  # exactly two steps: nothing to say
    stages = _report(work / "out")["stages"]
    assert (stages["stage1"]["steps"], stages["stage1"]["planned_tokens"]) == (2, 1024)
    assert (stages["stage2"]["steps"], stages["stage2"]["planned_tokens"]) == (2, 1024)
    assert list(stages["stage1"]["datasets"]) == ["general_corpus_demo", "geo_corpus_demo"]


def test_cutoff_len_past_the_models_positions_is_a_warning(short_run) -> None:
    _, _, log = short_run
    assert "TSPT: `cutoff_len: 128` is above the model's max_position_embeddings (64)" in log, log[-3000:]


def test_rerun_of_a_finished_run_says_where_and_overwrite_starts_over(short_run, cli_env) -> None:
    work, args, _ = short_run
    out = work / "out"
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    rerun = run_cli(*args, cwd=work, env=cli_env)
    assert "TSPT run already finished: the result is in out (report: out/tspt_report.json)" in rerun.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files, "the finished run was touched"

    again = run_cli(*args, "overwrite_output_dir=true", cwd=work, env=cli_env)
    assert "already finished" not in again.stdout
    for stage in STAGES:  # trained anew from step 1, not appended to nor resumed
        assert [row["current_steps"] for row in read_trainer_log(out / stage) if "loss" in row] == list(
            range(1, _report(out)["stages"][stage]["steps"] + 1)
        )
        assert (out / stage / "tspt_stage.json").stat().st_mtime_ns > files[out / stage / "tspt_stage.json"]
    assert (out / "adapter_model.safetensors").stat().st_mtime_ns > files[out / "adapter_model.safetensors"]


def test_stage2_starts_from_stage1s_last_adapter(short_run) -> None:
    work, _, _ = short_run
    _assert_stage2_saved_stage1s_weights(work / "out", "adapter_model.safetensors")
    stage1 = load_file(work / "out" / "stage1" / "adapter_model.safetensors")  # and stage 1 trained: a fresh
    assert any(stage1[k].abs().sum() > 0 for k in stage1 if "lora_B" in k)  # adapter has all lora_B at zero


@pytest.mark.parametrize("streaming", [False, True])
def test_a_corpus_without_one_block_fails_before_stage1_naming_it(tmp_path, tiny_model, cli_env, streaming) -> None:
    registry = {"geo_snippets": {"file_name": "geo_snippets.jsonl", "columns": {"prompt": "text"}}}
    work = workdir(tmp_path, tiny_model, registry)
    texts = ["Basalt is a mafic volcanic rock.", "Granite is a felsic plutonic rock."]
    (work / "data" / "geo_snippets.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    proc = run_cli(
        "train",
        example("tiny/tiny_tspt_lora.yaml"),
        "tspt_stage2_dataset=geo_snippets,general_corpus_demo",
        f"streaming={str(streaming).lower()}",
        "output_dir=out",
        cwd=work,
        env=cli_env,
        check=False,
    )
    assert proc.returncode != 0
    assert "`geo_snippets` (in `tspt_stage2_dataset`) has no complete 128-token block: it holds" in proc.stderr
    assert not (work / "out").exists(), "stage 1 ran before the check"


INVALID = {  # overrides (space-separated): the error they must raise
    "tspt_stage1_dataset=general_corpus_demo,geo_corpus": "Unknown dataset `geo_corpus` in `tspt_stage1_dataset`",
    "tspt_stage1_dataset=geo_corpus_demo,geo_corpus_demo": "`tspt_stage1_dataset` names `geo_corpus_demo` more than "
    "once: name each dataset once and give it its whole share in `tspt_stage1_mix`",
    "tspt_stage1_mix=0.6,0.3": "`tspt_stage1_mix: 0.6,0.3` must be positive shares that sum to 1",
    "tspt_stage1_mix=0.7,lots": "`tspt_stage1_mix: 0.7,lots` must be comma-separated numbers, one per dataset",
    "tspt_stage2_mix=0.5,0.3,0.2": "`tspt_stage2_mix` has 3 shares but `tspt_stage2_dataset` names 2 datasets",
    "tspt_stage2_tokens=0": "`tspt_stage2_tokens` must be a positive number of tokens",
    "tspt_stage1_tokens=many": "`tspt_stage1_tokens` must be a positive number of tokens, such as 5.5e9; got `many`",
    "tspt_stage1_tokens=100": "`tspt_stage1_tokens: 100` is less than one step at 512 tokens per optimizer step "
    "(cutoff_len 128 x per_device_train_batch_size 4 x gradient_accumulation_steps 1 x world size 1): set it to at "
    "least 512.",
    "tspt_stage2_tokens=1000 gradient_accumulation_steps=2": "`tspt_stage2_tokens: 1000` is less than one step at "
    "1,024 tokens per optimizer step (cutoff_len 128 x per_device_train_batch_size 4 x gradient_accumulation_steps 2 "
    "x world size 1): set it to at least 1024.",
    "tspt_stage1_learning_rate=fast": "`tspt_stage1_learning_rate` must be a number >= 0; got `fast`",
    "tspt_stage2_warmup_ratio=1.5": "`tspt_stage2_warmup_ratio` must be a number in [0, 1); got `1.5`",
    "tspt_vocab_corpus=geo_corpus_demo tspt_vocab_size=300 tspt_vocab_init=zeros": "`tspt_vocab_init: zeros` is not "
    "supported; allowed: prepared, mean, random",
    "tspt_vocab_corpus=geo_corpus_demo,geo_corpus_demo tspt_vocab_size=300": "`tspt_vocab_corpus` names "
    "`geo_corpus_demo` more than once: name each corpus once.",
    "finetuning_type=oft": "`finetuning_type: oft` is not supported by `stage: tspt`; allowed: lora, full, freeze",
    "max_steps=5": "`max_steps: 5` cannot be used with `stage: tspt`",
}


@pytest.mark.parametrize("override", INVALID)
def test_invalid_configuration_fails_at_parsing(tmp_path, tiny_model, parse_train, override) -> None:
    work = workdir(tmp_path, tiny_model)
    with pytest.raises(ValueError) as err:
        parse_train(example("tiny/tiny_tspt_lora.yaml"), *override.split(), "output_dir=out", cwd=work)
    assert INVALID[override] in str(err.value)
    assert not (work / "out").exists()


def test_invalid_configuration_stops_the_command_before_writing(tmp_path, tiny_model, cli_env) -> None:
    """The parsing above, through ``llamafactory-cli train``: the user reads the message, and nothing is written."""
    work = workdir(tmp_path, tiny_model)
    override = "tspt_stage1_mix=0.6,0.3"
    proc = run_cli(
        "train", example("tiny/tiny_tspt_lora.yaml"), override, "output_dir=out", cwd=work, env=cli_env, check=False
    )
    assert proc.returncode != 0
    assert INVALID[override] in proc.stderr, proc.stderr[-3000:]
    assert not (work / "out").exists()


def test_help_states_each_default_of_geo_factory_once(tmp_path, parse_train, capsys) -> None:
    """``train -h``: argparse appends `(default: ...)` itself: a help text that says its own default too reads it
    twice."""
    with pytest.raises(SystemExit):
        parse_train("-h", cwd=tmp_path)
    text = capsys.readouterr().out
    blocks = re.split(r"\n  (?=--)", text)
    options = [" ".join(block.split()) for block in blocks if block.startswith(("--tspt_", "--geobench_"))]
    ours = (TsptArguments, GeoBenchTrainArguments, DecontaminationArguments)
    assert len(options) == sum(len(fields(cls)) for cls in ours), options
    for option in options:
        assert option.count("default:") == 1, option


def test_two_cpu_workers_under_torchrun_share_stage0_and_split_each_budget(
    lora_run, tmp_path, tiny_model, cli_env
) -> None:
    """The vocabulary yaml under torchrun: both workers run with the hooks (``stage: tspt`` and the registry's names
    exist only through them), wait for one stage 0, and split each stage's token budget between them."""
    work = workdir(tmp_path, tiny_model)
    _, single_out, config = lora_run
    proc = run_cli(
        "train",
        example("tiny/tiny_tspt_vocab.yaml"),
        "include_num_input_tokens_seen=true",
        "output_dir=out",
        cwd=work,
        env={**cli_env, "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"},
    )
    log = proc.stdout + proc.stderr
    assert "Process rank: 0, world size: 2" in log and "Process rank: 1, world size: 2" in log, log[-3000:]
    out = work / "out"
    outputs, single = _outputs(out), _outputs(single_out)
    assert outputs == {**single, "": single[""] | {"stage0"}}
    assert json.loads((out / "stage0" / RECORD).read_text())["added"] == 300
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [], "a temporary stage-0 folder was left"
    report = _report(out)
    assert report["finished"] and report["world_size"] == 2
    for n, stage in enumerate(STAGES, 1):
        budget = int(float(config[f"tspt_stage{n}_tokens"]))
        assert report["stages"][stage]["steps"] == budget // (
            config["cutoff_len"] * config["per_device_train_batch_size"] * 2
        )
        assert (
            report["stages"][stage]["consumed_tokens"] == read_trainer_log(out / stage)[-1]["total_tokens"] == budget
        )
    _assert_shares(report, config)
