"""The general benchmarks (MMLU, CMMLU, C-Eval) through ``llamafactory-cli eval`` and the in-training hook.

The published archives are read in place from ../shared/general_eval (skipped when absent); the other tests
write small benchmarks of their own in the same layout (LLaMA-Factory's: ``NAME/NAME.zip`` + ``mapping.json``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import CLI, REPO, example, run_cli, workdir


SHARED_GENERAL = REPO.parent / "shared" / "general_eval"
GEOBENCH_FIXTURES = Path(__file__).parent / "fixtures" / "geobench"
CATEGORIES = ("STEM", "Social Sciences", "Humanities", "Other")
SUBJECTS = {
    "mmlu": {
        "astronomy": ("astronomy", "STEM"),
        "marketing": ("marketing", "Other"),
        "philosophy": ("philosophy", "Humanities"),
    },
    "cmmlu": {"agronomy": ("农学", "Other"), "arts": ("艺术学", "Humanities")},
    "ceval": {"advanced_mathematics": ("高等数学", "STEM"), "law": ("法学", "Humanities")},
}
TASK_OF = {"mmlu": "mmlu_test", "cmmlu": "cmmlu_test", "ceval": "ceval_validation"}


# ---------------------------------------------------------------------------------------------
# Benchmarks of our own, in LLaMA-Factory's layout


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _row(bench: str, subject: str, split: str, i: int) -> list[str]:
    answer = "ABCD"[(i * 7 + len(subject)) % 4]
    options = [f"{subject} {split} option {label} of {i}" for label in "ABCD"]
    return [f"Question {i} of {split} in {subject}: which option is right?", *options, answer]


def write_benchmarks(folder: Path, n_test: int, bad: tuple[str, int, list[str]] | None = None) -> Path:
    """mmlu/, cmmlu/, ceval/ with a few subjects each: 5 dev rows and ``n_test`` scored rows per subject.

    ``bad``: (benchmark, scored row index, replacement row) to plant a malformed row.
    """
    for bench, subjects in SUBJECTS.items():
        (folder / bench).mkdir(parents=True)
        mapping = {key: {"name": name, "category": category} for key, (name, category) in subjects.items()}
        (folder / bench / "mapping.json").write_text(json.dumps(mapping, ensure_ascii=False))
        scored = {"mmlu": "test", "cmmlu": "test", "ceval": "val"}[bench]
        with zipfile.ZipFile(folder / bench / f"{bench}.zip", "w") as archive:
            for subject in subjects:
                for split, n in (("dev", 5), (scored, n_test)):
                    rows = [_row(bench, subject, split, i) for i in range(n)]
                    if bad and bad[0] == bench and split == scored:
                        rows[bad[1]] = bad[2]
                    if bench == "mmlu":
                        member, table = f"data/{split}/{subject}_{split}.csv", rows
                    elif bench == "cmmlu":
                        member = f"{split}/{subject}.csv"
                        table = [
                            ["", "Question", "A", "B", "C", "D", "Answer"],
                            *([str(i), *r] for i, r in enumerate(rows)),
                        ]
                    else:
                        member = f"{split}/{subject}_{split}.csv"
                        header = ["id", "question", "A", "B", "C", "D", "answer"] + (
                            ["explanation"] if split == "dev" else []
                        )
                        table = [
                            header,
                            *([str(i), *r, *(["because"] if split == "dev" else [])] for i, r in enumerate(rows)),
                        ]
                    archive.writestr(member, _csv(table))
    return folder


# ---------------------------------------------------------------------------------------------
# Checking a finished save_dir


def outputs(save_dir: Path) -> tuple[dict, list[dict]]:
    """results.json and predictions.jsonl, every general number recomputed from the predictions."""
    results = json.loads((save_dir / "results.json").read_text())
    predictions = [json.loads(line) for line in (save_dir / "predictions.jsonl").read_text().splitlines()]
    assert len({(p["task"], p["id"]) for p in predictions}) == len(predictions), "a question was scored twice"
    table = (save_dir / "results.log").read_text()
    assert (save_dir / "geobench.png").stat().st_size > 10_000
    for name, summary in results["tasks"].items():
        if "categories" not in summary:
            continue
        mine = [p for p in predictions if p["task"] == name]
        assert summary["scored"] == len(mine) and summary["correct"] == sum(p["correct"] for p in mine)
        assert summary["accuracy"] == pytest.approx(100 * summary["correct"] / len(mine), abs=1e-3)
        assert summary["chance"] == 25.0
        assert summary["fewer_shots"] == sum(p["shots"] < summary["n_shot"] for p in mine)
        assert sum(s["total"] for s in summary["subjects"].values()) == summary["total"]
        for key, part in summary["subjects"].items():
            of = [p for p in mine if p["subject"] == key]
            assert part["scored"] == len(of) and part["correct"] == sum(p["correct"] for p in of)
        for category, part in summary["categories"].items():
            of = [p for p in mine if summary["subjects"][p["subject"]]["category"] == category]
            assert part["scored"] == len(of) and part["correct"] == sum(p["correct"] for p in of)
            # question-weighted, as LLaMA-Factory's evaluator: every question counts once
            assert part["accuracy"] == pytest.approx(100 * part["correct"] / len(of), abs=1e-3)
            row = [line for line in table.splitlines() if line.split()[:1] == [name] and f" {category} " in line]
            assert len(row) == 1 and f"{part['accuracy']:.2f}" in row[0], table
        assert set(summary["categories"]) <= set(CATEGORIES)
    return results, predictions


# ---------------------------------------------------------------------------------------------
# The published archives


@pytest.mark.skipif(not SHARED_GENERAL.is_dir(), reason=f"the published archives ({SHARED_GENERAL}) are absent")
def test_published_benchmarks_every_question_counted(tmp_path, tiny_model, cli_env) -> None:
    """All three archives read in full (every row of every split parsed, strictly); one question per subject scored
    (0-shot here, for time: the exemplars are tested on the benchmarks below)."""
    work = workdir(tmp_path, tiny_model)
    config = {
        "model_name_or_path": "models/tiny-mistral", "task": "mmlu_test,cmmlu_test,ceval_validation",
        "task_dir": str(SHARED_GENERAL), "n_shot": 0, "max_samples": 1, "batch_size": 64, "save_dir": "out",
    }  # fmt: skip
    (work / "eval.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli("eval", work / "eval.yaml", cwd=work, env=cli_env)
    results, predictions = outputs(work / "out")
    tasks = results["tasks"]
    assert {name: tasks[name]["total"] for name in tasks} == {
        "mmlu_test": 14042, "cmmlu_test": 11582, "ceval_validation": 1346,
    }  # fmt: skip
    assert {name: len(tasks[name]["subjects"]) for name in tasks} == {
        "mmlu_test": 57, "cmmlu_test": 67, "ceval_validation": 52,
    }  # fmt: skip
    assert all(part["scored"] == 1 for summary in tasks.values() for part in summary["subjects"].values())
    assert len(predictions) == 57 + 67 + 52
    assert "General benchmarks: tiny-mistral (objective: likelihood, 0-shot, seed 42)" in proc.stdout
    # without `lang`, each benchmark keeps its own wording: C-Eval and CMMLU Chinese, MMLU English
    assert {name: tasks[name]["lang"] for name in tasks} == {
        "mmlu_test": "en",
        "cmmlu_test": "zh",
        "ceval_validation": "zh",
    }
    assert results["settings"]["lang"] == "en,zh"  # what ran, not `lang`'s default


# ---------------------------------------------------------------------------------------------
# JiuZhou's yaml unchanged: killed and resumed; then JiuZhou's table at another batch size


JIUZHOU_N_TEST = 60  # scored questions per MMLU subject (3 subjects): a kill after 20, then the rest


@pytest.fixture(scope="module")
def jiuzhou_runs(tmp_path_factory, tiny_model, cli_env) -> Path:
    """examples/eval/mmlu_jiuzhou.yaml (batch 4, `template: fewshot`, a LoRA adapter) SIGKILLed mid-run, then rerun;
    then `task: jiuzhou` at batch 64 drawn beside it (`compare_with`)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    work = workdir(tmp_path_factory.mktemp("general_jiuzhou"), tiny_model)
    write_benchmarks(work / "evaluation", n_test=JIUZHOU_N_TEST)
    adapter = work / "saves" / "JiuZhou" / "lora" / "sft"
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # random B: it matters
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), lora).save_pretrained(adapter)
    model = ("model_name_or_path=models/tiny-mistral",)

    save_dir = work / "saves" / "JiuZhou" / "lora" / "eval_mmlu"
    predictions = save_dir / "predictions.jsonl"
    with open(work / "killed.log", "w") as log:
        proc = subprocess.Popen(
            [CLI, "eval", str(example("eval/mmlu_jiuzhou.yaml")), *model],
            cwd=work, env=cli_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.time() + 300
        while not (predictions.exists() and predictions.read_text().count("\n") >= 20):
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"the run ended before it could be killed:\n{(work / 'killed.log').read_text()[-3000:]}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    killed = predictions.read_text().count("\n")
    assert 20 <= killed < 3 * JIUZHOU_N_TEST and not (save_dir / "results.json").exists()
    (work / "killed_at").write_text(str(killed))
    resumed = run_cli("eval", example("eval/mmlu_jiuzhou.yaml"), *model, cwd=work, env=cli_env)
    (work / "resumed.log").write_text(resumed.stdout + resumed.stderr)

    table = run_cli(
        "eval", example("eval/mmlu_jiuzhou.yaml"), *model, "task=jiuzhou", "batch_size=64",
        f"geobench_task_dir={GEOBENCH_FIXTURES / 'k2'}", "save_dir=saves/jiuzhou_table",
        f"compare_with=[{save_dir / 'results.json'}]",
        cwd=work, env=cli_env,
    )  # fmt: skip
    (work / "table.log").write_text(table.stdout)
    return work


def test_jiuzhou_yaml_runs_unchanged_and_resumes_after_a_kill(jiuzhou_runs) -> None:
    work = jiuzhou_runs
    results, predictions = outputs(work / "saves" / "JiuZhou" / "lora" / "eval_mmlu")
    summary = results["tasks"]["mmlu_test"]
    assert summary["scored"] == summary["total"] == 3 * JIUZHOU_N_TEST and summary["n_shot"] == 5
    assert sorted(p["id"] for p in predictions) == list(range(3 * JIUZHOU_N_TEST))
    assert {s: part["total"] for s, part in summary["subjects"].items()} == dict.fromkeys(
        SUBJECTS["mmlu"], JIUZHOU_N_TEST
    )
    assert set(summary["categories"]) == {"STEM", "Other", "Humanities"}
    assert results["model"]["name"] == "tiny-mistral + sft" and results["model"]["template"] == "fewshot"
    killed = int((work / "killed_at").read_text())
    log = (work / "resumed.log").read_text()
    assert f"{killed} predictions found." in log and f"| {killed}/{3 * JIUZHOU_N_TEST} " in log
    assert any("first `n_shot` questions of its subject's dev split" in note for note in results["notes"])


def test_jiuzhou_table_in_one_command(jiuzhou_runs) -> None:
    work = jiuzhou_runs
    results, _ = outputs(work / "saves" / "jiuzhou_table")
    assert list(results["tasks"]) == [
        "geobench_npee", "geobench_apstudy", "geobench_average", "ceval_validation", "cmmlu_test", "mmlu_test",
    ]  # fmt: skip
    table = (work / "saves" / "jiuzhou_table" / "results.log").read_text()
    assert table.startswith("GeoBench and general benchmarks: tiny-mistral + sft")
    assert table in (work / "table.log").read_text()  # the table printed at the end
    assert f"; GeoBench: {GEOBENCH_FIXTURES / 'k2'} (k2 layout)" in table
    assert [line.split()[0] for line in table.splitlines() if line.split()[1:2] == ["accuracy"]] == list(
        results["tasks"]
    )
    # `lang: en` given in the yaml: every benchmark in English, as LLaMA-Factory did
    assert {summary.get("lang") for summary in results["tasks"].values()} == {"en", None}


def test_batch_size_never_changes_an_answer(jiuzhou_runs) -> None:
    work = jiuzhou_runs
    one = {p["id"]: p for p in outputs(work / "saves" / "JiuZhou" / "lora" / "eval_mmlu")[1]}
    results, predictions = outputs(work / "saves" / "jiuzhou_table")
    batched = {p["id"]: p for p in predictions if p["task"] == "mmlu_test"}
    assert batched.keys() == one.keys()
    for i, p in one.items():
        assert batched[i]["prediction"] == p["prediction"], (i, p["probs"], batched[i]["probs"])
        assert batched[i]["probs"] == pytest.approx(p["probs"], abs=1e-5)
    assert results["compared_on_other_questions"] == []


# ---------------------------------------------------------------------------------------------
# Mistakes: named, before a model loads or a file is written


MALFORMED = [
    (
        "mmlu",
        2,
        ["q", "a", "b", "c", "d", "E"],
        "mmlu/mmlu.zip, member data/test/astronomy_test.csv, row 3: the answer",
    ),
    (
        "cmmlu",
        4,
        ["q", "a", "b", "c", "A"],
        "cmmlu/cmmlu.zip, member test/agronomy.csv, row 6: 7 fields expected, got 6",
    ),
]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"task": "mmlu_tst"}, "Unknown evaluation task `mmlu_tst` in `task`. Did you mean: mmlu_test"),
        ({"task": "cmmlu_test", "task_dir": "ONLY_MMLU"}, "has no cmmlu/cmmlu.zip, which `cmmlu_test` reads"),
        (
            {"task": "ceval_validation", "n_shot": 6},
            "the dev split of `ceval_validation` subject `advanced_mathematics` holds (5)",
        ),
        (
            {"task": "mmlu_test", "geobench_task_dir": "."},
            "`geobench_task_dir` is GeoBench's folder when `task` mixes",
        ),
        *(({"task": TASK_OF[bench], "task_dir": f"BAD_{bench}"}, message) for bench, _, _, message in MALFORMED),
        # the harness's protocol: its formats, likelihoods, its own wording
        (
            {"task": "mmlu_test,geobench_npee", "prompt_style": "lm_eval", "geobench_task_dir": "."},
            "`prompt_style: lm_eval` is lm-evaluation-harness's protocol for MMLU, CMMLU, C-Eval and tasks of your own;"
            " geobench_npee has no harness format",
        ),
        (
            {"task": "mmlu_test", "prompt_style": "lm_eval", "lang": "zh"},
            "`lang: zh` differs from the language of `mmlu_test` (en); with `prompt_style: lm_eval` the harness's "
            "wording is the task's own: remove `lang` or set it to en.",
        ),
        (
            {"task": "mmlu_test", "prompt_style": "lm_eval", "eval_mode": "generate"},
            "`prompt_style: lm_eval` scores option likelihoods: use `eval_mode: likelihood`.",
        ),
    ],
)
def test_mistakes_fail_before_any_work(tmp_path, config: dict, message: str) -> None:
    from geo_factory.eval.evaluator import Evaluator

    folder = write_benchmarks(tmp_path / "data", n_test=4)
    if config.get("task_dir") == "ONLY_MMLU":
        config["task_dir"] = str(tmp_path / "only_mmlu")
        (tmp_path / "data" / "mmlu").rename(tmp_path / "only_mmlu")
    elif str(config.get("task_dir")).startswith("BAD_"):
        bench, index, row, _ = next(m for m in MALFORMED if f"BAD_{m[0]}" == config["task_dir"])
        config["task_dir"] = str(write_benchmarks(tmp_path / "bad", n_test=8, bad=(bench, index, row)))
    base = {
        "model_name_or_path": str(tmp_path / "no-model"),
        "task_dir": str(folder),
        "save_dir": str(tmp_path / "out"),
    }
    with pytest.raises(ValueError) as err:
        Evaluator({**base, **config})
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_an_evaluation_folder_is_the_default_task_dir(tmp_path, tiny_model, monkeypatch) -> None:
    """LLaMA-Factory's old default: JiuZhou's eval yaml has no `task_dir`, it ran where `evaluation/` was."""
    from geo_factory.eval.evaluator import Evaluator

    write_benchmarks(tmp_path / "evaluation", n_test=2)
    monkeypatch.chdir(tmp_path)
    evaluator = Evaluator({"model_name_or_path": str(tiny_model), "task": "mmlu_test", "save_dir": "out"})
    assert evaluator.plan.folders() == {"task_dir": "evaluation", "layout": "llamafactory"}
    assert [len(task.selected) for task in evaluator.tasks] == [2 * len(SUBJECTS["mmlu"])]


def _doc_to_text(question, cue: str) -> str:
    """The harness's doc_to_text of these tasks: the question, `A. ...` lines, the cue."""
    return f"{question.stem}\n" + "".join(f"{label}. {text}\n" for label, text in question.options) + cue


def test_lm_eval_prompts_are_the_harness_tasks_text(tmp_path, tiny_model) -> None:
    """`prompt_style: lm_eval` scores, for each question, exactly the text lm-evaluation-harness 0.4's mmlu, cmmlu and
    ceval-valid tasks build (their yamls' description, doc_to_text, `" " + letter` exemplars joined by a blank line,
    the first n_shot dev questions), without template or special tokens."""
    from geo_factory.eval.evaluator import Evaluator
    from geo_factory.eval.styles import harness_context

    folder = write_benchmarks(tmp_path / "data", n_test=2)
    config = {"model_name_or_path": str(tiny_model), "template": "mistral", "prompt_style": "lm_eval", "n_shot": 2}
    evaluator = Evaluator({**config, "task": "mmlu_test,cmmlu_test,ceval_validation", "task_dir": str(folder),
                           "save_dir": str(tmp_path / "out")})  # fmt: skip
    descriptions = {
        "mmlu_test": ("The following are multiple choice questions (with answers) about {}.\n\n", "Answer:"),
        "cmmlu_test": ("以下是关于{}的单项选择题，请直接给出正确答案的选项。\n\n", "答案："),
        "ceval_validation": ("以下是中国关于{}的单项选择题，请选出其中的正确答案。\n\n", "答案："),
    }
    tokenizer = evaluator.encoder.tokenizer
    for task in evaluator.tasks:
        description, cue = descriptions[task.name]
        for question, encoded in zip(task.selected, evaluator.prompts[task.name]):
            dev = [q for q in task.data.dev if q.subject == question.subject][:2]
            expected = description.format(task.data.subjects[question.subject].name)
            expected += "".join(f"{_doc_to_text(q, cue)} {q.answer}\n\n" for q in dev) + _doc_to_text(question, cue)
            assert harness_context(task, question, encoded.group, task.data.dev) == expected
            assert encoded.ids == tokenizer(expected, add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(encoded.ids[:1]) != tokenizer.bos_token  # no special token, as the harness
    # an LLaMA-Factory yaml's `lang: en` on MMLU is its own language: accepted, the same prompts
    same = Evaluator({**config, "task": "mmlu_test", "lang": "en", "task_dir": str(folder), "save_dir": "unused"})
    assert same.prompts["mmlu_test"] == evaluator.prompts["mmlu_test"]
