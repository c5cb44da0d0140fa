"""``mix_strategy: interleave_tokens`` as a user runs it: ``llamafactory-cli train`` on the tiny model, ``pt`` and
``sft``, packed and not; the realized shares are computed from the token counts the run logs.

Every run starts in a fresh directory with no ``data/`` of its own (the demo datasets resolve through geo-factory's
registry) and ``models/tiny-mistral`` linked in. Runs are a few steps of four rows.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from conftest import example, kill_when, read_trainer_log, run_cli, workdir


SFT_SOURCES = ("geosignal_demo", "general_sft_demo")
PT_SOURCES = ("geo_corpus_demo", "general_corpus_demo")


def _config(stage: str, **overrides: object) -> dict:
    """The shipped tiny yaml (sft, shares 0.6 / 0.4, 6 steps), as ``pt`` on the two demo corpora if asked."""
    config = {**yaml.safe_load(example("tiny/tiny_mix_sft.yaml").read_text()), "output_dir": "out"}
    if stage == "pt":
        config.pop("template")
        config.update(stage="pt", dataset=",".join(PT_SOURCES))
    return {**config, **overrides}


def _train(work: Path, config: dict, env: dict[str, str]) -> tuple[list[dict], str]:
    path = work / f"{config['output_dir']}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = run_cli("train", path.name, cwd=work, env=env)
    return [row for row in read_trainer_log(work / config["output_dir"]) if "loss" in row], proc.stdout + proc.stderr


def _increments(rows: list[dict], name: str) -> list[int]:
    """Tokens ``name`` contributed at each logged step."""
    totals = [0] + [row[f"tokens_{name}"] for row in rows]
    return [b - a for a, b in pairwise(totals)]


def _assert_mixture(rows: list[dict], names: tuple[str, ...], shares: list[float]) -> None:
    """Every logging step has each dataset's tokens so far, and its loss when it trained on any of its tokens then;
    at the end each dataset's share of the trained tokens is its configured one, within one row (a row holds at
    most one step's tokens of its dataset)."""
    assert [row["current_steps"] for row in rows] == list(range(1, len(rows) + 1))
    steps = {name: _increments(rows, name) for name in names}
    for i, row in enumerate(rows):
        for name in names:
            assert steps[name][i] >= 0
            assert (f"loss_{name}" in row) == (steps[name][i] > 0), (name, row)
            if steps[name][i]:
                assert 0 < row[f"loss_{name}"] < 20
    assert all(sum(steps[name]) > 0 for name in names)
    total = sum(rows[-1][f"tokens_{name}"] for name in names)
    row_bound = max(max(steps[name]) for name in names) / total
    for name, share in zip(names, shares):
        realized = rows[-1][f"tokens_{name}"] / total
        assert abs(realized - share) <= row_bound, (name, realized, share, row_bound)


def _assert_llamaboard_plots_each_dataset(output_dir: Path, names: tuple[str, ...]) -> None:
    """LlamaBoard's Train tab refreshes its loss plot through ``get_trainer_info`` (patched): one curve per dataset
    beside the run's loss."""
    import matplotlib.pyplot as plt
    from llamafactory.webui.control import get_trainer_info

    _, _, info = get_trainer_info("en", str(output_dir), True)
    assert info["loss_viewer"].value["type"] == "matplotlib"
    assert plt.gcf().axes[0].get_legend_handles_labels()[1] == ["all datasets", *names]


@pytest.mark.parametrize(
    ("stage", "packing"), [("pt", True), ("pt", False), ("sft", True)], ids=["pt-packed", "pt-whole", "sft-packed"]
)
def test_token_shares_are_realized_and_each_source_logs_its_loss(
    tmp_path, tiny_model, cli_env, stage, packing
) -> None:
    work = workdir(tmp_path, tiny_model)
    names = SFT_SOURCES if stage == "sft" else PT_SOURCES
    cutoff = 128 if packing else 512  # whole documents: the corpora's lengths vary
    held_out = {  # sft: a held-out set per dataset, each evaluated on its own at the last step
        "eval_dataset": ",".join(names),
        "max_samples": 24,
        "eval_strategy": "steps",
        "eval_steps": 6,
        "per_device_eval_batch_size": 8,
    }
    config = _config(stage, packing=packing, cutoff_len=cutoff, **(held_out if stage == "sft" else {}))
    rows, log = _train(work, config, cli_env)
    assert len(rows) == 6
    if stage == "sft":
        evals = {k: v for row in read_trainer_log(work / "out") for k, v in row.items() if k.startswith("eval_")}
        assert all(0 < evals[f"eval_{name}_loss"] < 20 for name in names), evals
    _assert_mixture(rows, names, [0.6, 0.4])
    if packing and stage == "pt":  # equal blocks: each step's 4 rows split 0.6 / 0.4 within one block
        for name, share in zip(names, (0.6, 0.4)):
            assert all(abs(n / (4 * 127) - share) <= 0.25 for n in _increments(rows, name))
        _assert_llamaboard_plots_each_dataset(work / "out", names)
    for name in names:
        assert f"Token mixture: `{name}` (share " in log


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory, tiny_model, cli_env) -> tuple[Path, dict, list[dict], str]:
    """``sft`` on whole examples, two epochs of 16 examples of each dataset (8 steps each), uninterrupted."""
    work = workdir(tmp_path_factory.mktemp("mix_epochs"), tiny_model)
    config = _config("sft", interleave_probs="0.5,0.5", max_samples=16, max_steps=-1, num_train_epochs=2)
    rows, log = _train(work, config, cli_env)
    return work, config, rows, log


def test_whole_examples_get_their_shares_and_each_epoch_a_new_order(two_epochs) -> None:
    _, _, rows, log = two_epochs
    assert len(rows) == 16
    _assert_mixture(rows, SFT_SOURCES, [0.5, 0.5])
    for name in SFT_SOURCES:
        steps = _increments(rows, name)
        assert steps[:8] != steps[8:], f"epoch 2 repeated epoch 1's order of {name}"
    # general_sft_demo's answers are short: half the tokens needs it several times an epoch, and the log says so
    assert "Token mixture: `general_sft_demo` (share 0.5) has " in log
    assert "It is too small for its share: it is repeated." in log.split("`general_sft_demo`")[1].split("\n")[0]


def test_a_killed_run_resumes_the_same_stream(two_epochs, tmp_path, tiny_model, cli_env) -> None:
    """Killed in epoch 2, after its checkpoint at step 12; the same command resumes it: every later step trains on
    the same rows to the same losses, and the adapter is the uninterrupted run's, bit for bit."""
    _, config, reference, _ = two_epochs
    work = workdir(tmp_path, tiny_model)
    config = {**config, "save_steps": 12}
    (work / "out.yaml").write_text(yaml.safe_dump(config))
    kill_when(
        ["train", "out.yaml"], work, cli_env, work / "out/checkpoint-12/trainer_state.json", tmp_path / "kill.log"
    )
    assert not (work / "out" / "adapter_model.safetensors").exists(), "the run finished before it was killed"

    rows, log = _train(work, config, cli_env)
    assert "Resuming training from out/checkpoint-12" in log
    resumed = {row["current_steps"]: row for row in rows}  # the resumed run's rows come last
    keys = ("loss", *(f"{kind}_{name}" for kind in ("loss", "tokens") for name in SFT_SOURCES))
    for row in reference[12:]:
        assert {k: resumed[row["current_steps"]].get(k) for k in keys} == {k: row.get(k) for k in keys}
    before, after = (load_file(p / "adapter_model.safetensors") for p in (two_epochs[0] / "out", work / "out"))
    assert before.keys() == after.keys() and all(before[k].equal(after[k]) for k in before)


INVALID = {  # overrides: the error they must raise, before any model or data is read
    "interleave_probs=0.6,0.3": "`interleave_probs: 0.6,0.3` must be positive token shares that sum to 1 (they "
    "sum to 0.9)",
    "interleave_probs=0.5,0.3,0.2": "`interleave_probs` has 3 shares but `dataset` names 2 datasets (geosignal_demo, "
    "general_sft_demo): give one token share per dataset",
    "interleave_probs=0.5,half": "`interleave_probs: 0.5,half` must be comma-separated numbers, one per dataset",
    "interleave_probs=1.2,-0.2": "must be positive token shares that sum to 1",
    "dataset=geosignal_demo,geosignal_demo": "`dataset` names `geosignal_demo` more than once",
    "streaming=true max_steps=6": "`streaming: true` cannot be used with `mix_strategy: interleave_tokens`: a "
    "stream's length is unknown",
    "val_size=0.1": "`val_size` cannot be used with `mix_strategy: interleave_tokens`",
    "tokenized_path=tok": "`tokenized_path` cannot be used with `mix_strategy: interleave_tokens`",
    "dataloader_num_workers=2 dataloader_persistent_workers=true": "`dataloader_persistent_workers` cannot be used "
    "with `mix_strategy: interleave_tokens`: persistent workers would keep the first epoch's order",
    "stage=dpo": "`mix_strategy: interleave_tokens` is supported in `stage: pt` and `stage: sft`, not `dpo`",
}


@pytest.mark.parametrize("override", INVALID)
def test_bad_mixtures_stop_at_parsing(tmp_path, tiny_model, parse_train, override) -> None:
    work = workdir(tmp_path, tiny_model)
    (work / "mix.yaml").write_text(yaml.safe_dump(_config("sft")))
    with pytest.raises(ValueError) as err:
        parse_train("mix.yaml", *override.split(), cwd=work)
    assert INVALID[override] in str(err.value)
    assert "\n" not in str(err.value)
    assert not (work / "out").exists()


@pytest.mark.parametrize(
    ("recipe", "datasets", "shares"),
    [
        ("JiuZhou_lora_pretrain_replay.yaml", "geo_corpus_demo,general_corpus_demo,geosignal_demo", [0.8, 0.1, 0.1]),
        ("JiuZhou_lora_sft_replay.yaml", "geosignal_demo,general_sft_demo,geo_tools_sft", [0.6, 0.2, 0.2]),
    ],
)
def test_the_jiuzhou_replay_recipes_parse_as_token_mixtures(
    tmp_path, tiny_model, parse_train, recipe, datasets, shares
) -> None:
    """The GPU recipes with the tiny model and demo names in place of the hub's (offline, nothing is read)."""
    work = workdir(tmp_path, tiny_model)
    small = ("model_name_or_path=models/tiny-mistral", f"dataset={datasets}", "bf16=false", "output_dir=out")
    _, data_args, _, finetuning_args, _ = parse_train(example(f"train_lora/{recipe}"), *small, cwd=work)
    assert (data_args.mix_strategy, data_args.interleave_probs) == ("interleave_tokens", shares)
    assert finetuning_args.mixture == datasets.split(",") and finetuning_args.disable_shuffling
