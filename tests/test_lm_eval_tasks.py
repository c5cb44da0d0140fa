"""lm-evaluation-harness tasks (``task: lm_eval:NAME``) through the real ``llamafactory-cli eval`` on the tiny model.

The task yamls and their data are local (tests/fixtures/lm_eval: a multiple-choice task with few-shot examples, a
generated answer behind a regex filter, a perplexity task), read offline. The reference is the harness's own Hugging
Face backend (``lm_eval --model hf``) on the same model, tasks and seeds, run in the test on this machine: every
document's answers and every metric must agree.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import example, read_trainer_log, run_cli, workdir


TASKS = Path(__file__).parent / "fixtures" / "lm_eval"
GEOBENCH = Path(__file__).parent / "fixtures" / "geobench" / "k2"
NAMES = ["geo_rocks_mc", "geo_rocks_letters", "geo_numbers_gen", "geo_text_ppl"]
LIMIT = 6


def _setup(tmp_path: Path, tiny_model: Path, **config) -> Path:
    """A working directory with the task folder where its yamls' relative data paths point."""
    shutil.copytree(TASKS, tmp_path / "lm_eval_tasks")
    config = {
        "model_name_or_path": str(tiny_model), "template": "mistral", "lm_eval_include_path": "lm_eval_tasks",
        "save_dir": "out", **config,
    }  # fmt: skip
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "eval.yaml"


def _harness_reference(tmp_path: Path, model: Path, monkeypatch, limit: int = LIMIT) -> dict:
    """The harness's Hugging Face backend on the same tasks, limit and seeds, in this process."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(tmp_path)
    return simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model), "dtype": "float32"},
        tasks=NAMES,
        device="cpu",
        limit=limit,
        batch_size=1,
        log_samples=True,
        task_manager=TaskManager(include_path="lm_eval_tasks", include_defaults=False),
        random_seed=42,
        numpy_random_seed=42,
        torch_random_seed=42,
        fewshot_random_seed=42,
        bootstrap_iters=0,
    )


def _samples(out: Path, task: str) -> list[dict]:
    path = max(out.glob(f"lm_eval/*/samples_{task}_*.jsonl"))  # the latest (a resumed task writes its own)
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_answers_are_the_harness(results: dict, out: Path, reference: dict, limit: int) -> None:
    """Every metric, and every document's prompts and answers, as the harness's Hugging Face backend gives them."""
    for name in NAMES:
        summary = results["tasks"][f"lm_eval:{name}"]
        assert (summary["kind"], summary["scored"]) == ("lm_eval", limit)
        theirs = reference["results"][name]
        for metric, value in summary["metrics"].items():
            if "_stderr" not in metric:
                assert value == pytest.approx(theirs[metric], rel=1e-4), (name, metric)
        ours = {s["doc_id"]: s for s in _samples(out, name)}
        assert sorted(ours) == list(range(limit))
        for sample in reference["samples"][name]:
            mine = ours[sample["doc_id"]]
            prompts = [mine["arguments"][f"gen_args_{i}"]["arg_0"] for i in range(len(sample["arguments"]))]
            assert prompts == [args[0] for args in sample["arguments"]]  # the same few-shot prompts
            if name == "geo_numbers_gen":  # greedy: the same words, the same filtered answer
                assert mine["resps"] == sample["resps"] and mine["filtered_resps"] == sample["filtered_resps"]
            elif name.startswith("geo_rocks"):  # log-likelihoods up to float rounding, the same greedy flags
                for [[ll, greedy]], [(their_ll, their_greedy)] in zip(mine["resps"], sample["resps"]):
                    assert float(ll) == pytest.approx(their_ll, abs=1e-4) and greedy == str(their_greedy)
                assert all(mine[metric] == sample[metric] for metric in sample["metrics"])
            else:
                assert float(mine["resps"][0][0]) == pytest.approx(sample["resps"][0][0], abs=1e-3)


def test_harness_tasks_beside_native_match_the_harness_and_resume_on_two_ranks(
    tmp_path, tiny_model, cli_env, monkeypatch
) -> None:
    config = _setup(
        tmp_path, tiny_model, task=",".join(["geobench_npee", *(f"lm_eval:{n}" for n in NAMES)]),
        task_dir=str(GEOBENCH), n_shot=1, max_samples=LIMIT, seed=42, log_samples=True,
    )  # fmt: skip
    # n_shot is the harness's --num_fewshot too: the reference reads the same number from a copy of the yamls
    proc = run_cli("eval", config, cwd=tmp_path, env=cli_env)
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert list(results["tasks"]) == ["geobench_npee", *(f"lm_eval:{n}" for n in NAMES)]
    assert results["tasks"]["geobench_npee"]["scored"] == LIMIT
    assert json.loads((out / "run_config.json").read_text())["lm_eval"]["tasks"] == NAMES

    for name in NAMES:  # the yamls' own num_fewshot, except where n_shot overrides it (rolling tasks take none)
        task = yaml.safe_load((tmp_path / "lm_eval_tasks" / f"{name}.yaml").read_text())
        if "num_fewshot" in task:
            task["num_fewshot"] = 1
            (tmp_path / "lm_eval_tasks" / f"{name}.yaml").write_text(yaml.safe_dump(task))
    reference = _harness_reference(tmp_path, tiny_model, monkeypatch)

    _assert_answers_are_the_harness(results, out, reference, LIMIT)
    assert "acc_norm,none" in (out / "results.log").read_text()

    # resume on two processes under torchrun (gloo): a run killed after two harness tasks keeps them; the harness
    # shares the other tasks' documents between the processes, and the answers are one process's
    first = {name: {s["doc_id"]: s for s in _samples(out, name)} for name in NAMES}
    rescored = ["geo_rocks_letters", "geo_numbers_gen"]
    (out / "results.json").unlink()
    for name in rescored:
        (out / "lm_eval_tasks" / f"{name}.json").unlink()
    proc = run_cli("eval", config, cwd=tmp_path, env={**cli_env, "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"})
    assert "already finished in out: geo_rocks_mc, geo_text_ppl." in proc.stdout + proc.stderr
    again = json.loads((out / "results.json").read_text())
    assert again["settings"]["world_size"] == 2 and list(again["tasks"]) == list(results["tasks"])
    for name in NAMES:
        ours, theirs = results["tasks"][f"lm_eval:{name}"], again["tasks"][f"lm_eval:{name}"]
        if name not in rescored:
            assert theirs == ours
            continue
        for metric, value in ours["metrics"].items():
            assert theirs["metrics"][metric] == (value if isinstance(value, str) else pytest.approx(value, rel=1e-4))
        both = {s["doc_id"]: s for s in _samples(out, name)}
        assert both.keys() == first[name].keys()
        for doc, sample in both.items():
            if name == "geo_numbers_gen":
                assert sample["resps"] == first[name][doc]["resps"]
            else:
                lls = [float(r[0][0]) for r in sample["resps"]]
                assert lls == pytest.approx([float(r[0][0]) for r in first[name][doc]["resps"]], abs=1e-4)


@pytest.mark.real_model
def test_on_smollm2_the_answers_are_the_harness(tmp_path, smol_model, cli_env, monkeypatch) -> None:
    """A real ByteLevel tokenizer (SmolLM2's: spaces are part of the next token, not a byte-fallback piece): each
    task's own few-shot setting, batched, against the harness's Hugging Face backend on the same documents."""
    limit = 4
    config = _setup(tmp_path, smol_model, template="smollm2", task=",".join(f"lm_eval:{n}" for n in NAMES),
                    max_samples=limit, seed=42, log_samples=True, batch_size=4)  # fmt: skip
    run_cli("eval", config, cwd=tmp_path, env=cli_env)
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    _assert_answers_are_the_harness(results, out, _harness_reference(tmp_path, smol_model, monkeypatch, limit), limit)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"task": "lm_eval:geo_rocks_mcq"},  # the harness's index of its own tasks and of the folder
            "Unknown lm-evaluation-harness task `lm_eval:geo_rocks_mcq` in `task`: not in the harness or in "
            "`lm_eval_include_path: lm_eval_tasks`. Did you mean: lm_eval:geo_rocks_mc",
        ),
        ({"lm_eval_include_path": "nowhere"}, "`lm_eval_include_path: nowhere` is not a folder of task yamls."),
        ({"fewshot_as_multiturn": True}, "`fewshot_as_multiturn: true` needs `apply_chat_template: true`."),
        (None, "lm-evaluation-harness, which is not installed: pip install 'geo-factory[lm-eval]'."),
    ],
)
def test_bad_harness_input_fails_before_the_model(tmp_path, tiny_model, monkeypatch, config, message) -> None:
    from geo_factory.eval.evaluator import Evaluator

    _setup(tmp_path, tiny_model)
    monkeypatch.chdir(tmp_path)
    if config is None:  # lm-eval absent: its import fails as it would without the extra
        monkeypatch.setitem(sys.modules, "lm_eval.tasks", None)
    args = {
        "model_name_or_path": str(tiny_model), "template": "mistral", "task": "lm_eval:geo_rocks_mc",
        "lm_eval_include_path": "lm_eval_tasks", "save_dir": "out", **(config or {}),
    }  # fmt: skip
    with pytest.raises(ValueError) as err:
        Evaluator(args)
    assert message in str(err.value), str(err.value)
    assert not (tmp_path / "out").exists()


def test_offline_a_group_whose_task_reads_an_uncached_hub_dataset_fails_before_the_model(
    tmp_path, tiny_model, monkeypatch
) -> None:
    """Offline, a hub dataset not in the cache is named with the task that reads it (through the group and the
    group's own `dataset_name`), before a model loads; the folder's local-json tasks in the same group pass."""
    from datasets import config

    from geo_factory.eval.evaluator import Evaluator

    _setup(tmp_path, tiny_model)
    task = yaml.safe_load((TASKS / "geo_rocks_mc.yaml").read_text())
    task.update(task="geo_hub_mc", dataset_path="geo-factory-tests/never-cached")
    del task["dataset_kwargs"]
    (tmp_path / "lm_eval_tasks" / "geo_hub_mc.yaml").write_text(yaml.safe_dump(task))
    group = {"group": "geo_hub_group", "task": ["geo_rocks_mc", {"task": "geo_hub_mc", "dataset_name": "rocks"}]}
    (tmp_path / "lm_eval_tasks" / "geo_hub_group.yaml").write_text(yaml.safe_dump(group))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "HF_HUB_OFFLINE", True)
    args = {
        "model_name_or_path": str(tiny_model), "template": "mistral", "lm_eval_include_path": "lm_eval_tasks",
        "save_dir": "out", "task": "lm_eval:geo_hub_group",
    }  # fmt: skip
    with pytest.raises(ValueError) as err:
        Evaluator(args)
    assert (
        "`lm_eval:geo_hub_group` (its task `geo_hub_mc`) reads the hub dataset geo-factory-tests/never-cached "
        "(config rocks), which is not in the datasets cache"
    ) in str(err.value), str(err.value)
    assert not (tmp_path / "out").exists()


def test_native_generate_batches_give_the_engines_replies(tmp_path, tiny_model) -> None:
    """``eval_mode: generate`` on the Hugging Face engine: batched, left-padded replies are the replies LLaMA-Factory's
    chat engine gives one conversation at a time (greedy)."""
    from geo_factory.eval.evaluator import Evaluator
    from geo_factory.eval.scoring import generate

    evaluator = Evaluator(
        {
            "model_name_or_path": str(tiny_model), "template": "mistral", "task": "geobench_apstudy",
            "task_dir": str(GEOBENCH.parent / "jiuzhou"), "eval_mode": "generate", "n_shot": 2, "max_new_tokens": 12,
            "save_dir": str(tmp_path / "out"),
        }
    )  # fmt: skip
    chats = [chat.messages for chat in evaluator.prompts["geobench_apstudy"][:7]]
    assert len({len(str(chat)) for chat in chats}) > 1  # prompts of several lengths: padded rows
    alone = [evaluator.chat_model.chat(messages)[0].response_text for messages in chats]
    assert any(alone) and generate(evaluator.chat_model, chats, 4) == alone


def test_harness_task_during_training_logs_the_harness_score(tmp_path, tiny_model, cli_env, monkeypatch) -> None:
    """`geobench_tasks: lm_eval:NAME` scores the training model every `geobench_eval_steps` and logs each metric:
    the harness's score of the adapter saved at that step. The harness seeds the random generators, and training
    goes on as without the evaluation: with LoRA dropout, each step's loss is a plain run's."""
    work = workdir(tmp_path, tiny_model)
    shutil.copytree(TASKS, work / "lm_eval_tasks")
    config = yaml.safe_load(example("tiny/tiny_lora_pretrain.yaml").read_text())
    for key in ("val_size", "eval_strategy", "eval_steps", "eval_on_start", "per_device_eval_batch_size"):
        config.pop(key)
    config.update(output_dir="plain", max_steps=4, save_steps=2, plot_loss=False, lora_dropout=0.2)
    (work / "plain.yaml").write_text(yaml.safe_dump(config))
    config.update(
        output_dir="out", geobench_eval_steps=2, geobench_tasks="lm_eval:geo_rocks_letters",
        geobench_lm_eval_include_path="lm_eval_tasks", geobench_max_samples=LIMIT, geobench_seed=42,
    )  # fmt: skip
    (work / "train.yaml").write_text(yaml.safe_dump(config))
    run_cli("train", work / "train.yaml", cwd=work, env=cli_env)
    run_cli("train", work / "plain.yaml", cwd=work, env=cli_env)
    logged = [row for row in read_trainer_log(work / "out") if "geobench_lm_eval_geo_rocks_letters_acc" in row]
    assert [row["current_steps"] for row in logged] == [2, 4]
    losses = {run: [row["loss"] for row in read_trainer_log(work / run) if "loss" in row] for run in ("out", "plain")}
    assert len(losses["out"]) == 4 and losses["out"] == losses["plain"], losses

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(work)
    reference = simple_evaluate(
        model="hf", model_args={"pretrained": str(tiny_model), "peft": "out/checkpoint-2", "dtype": "float32"},
        device="cpu", tasks=["geo_rocks_letters"], limit=LIMIT, batch_size=1, bootstrap_iters=0,
        task_manager=TaskManager(include_path="lm_eval_tasks", include_defaults=False),
        random_seed=42, numpy_random_seed=42, torch_random_seed=42, fewshot_random_seed=42,
    )  # fmt: skip
    their = reference["results"]["geo_rocks_letters"]["acc,none"]
    assert logged[0]["geobench_lm_eval_geo_rocks_letters_acc"] == pytest.approx(their)


def test_training_checks_harness_tasks_at_parsing(tmp_path, tiny_model, monkeypatch) -> None:
    from llamafactory.hparams import get_train_args

    work = workdir(tmp_path, tiny_model)
    config = yaml.safe_load(example("tiny/tiny_lora_pretrain.yaml").read_text())
    config.update(output_dir="out", geobench_eval_steps=2, geobench_tasks="lm_eval:geo_rocks_letters")
    monkeypatch.chdir(work)
    with pytest.raises(ValueError) as err:
        get_train_args({**config, "geobench_lm_eval_include_path": "nowhere"})
    assert "`geobench_lm_eval_include_path: nowhere` is not a folder of task yamls." in str(err.value)
    assert not (work / "out").exists()
