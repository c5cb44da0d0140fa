"""``prompt_style: k2``: GeoBench scored with K2's own prompt and exemplar files, both of K2's variants.

K2's samples files are read in place from ../shared/geobench/k2 (skipped when absent). The expected prompts are
built here from the files' text and the published questions, independently of geo-factory's code.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from conftest import SHARED_GEOBENCH, run_cli


K2_DIR = SHARED_GEOBENCH / "k2"
SAMPLES = K2_DIR / "multiple_choice_samples.txt"
SAMPLES_WA = K2_DIR / "multiple_choice_samples_wa.txt"
needs_k2 = pytest.mark.skipif(not SAMPLES.is_file(), reason=f"K2's samples files ({K2_DIR}) are absent")
INSTRUCTION = "Identify the choice that best completes the statement or answers the question."


def _k2_config(save_dir: Path, **extra) -> dict:
    return {
        "task_dir": str(K2_DIR),
        "prompt_style": "k2",
        "k2_samples": str(SAMPLES),
        "k2_samples_wa": str(SAMPLES_WA),
        "save_dir": str(save_dir),
        **extra,
    }


def _expected(samples: Path, stem: str, options: list[tuple[str, str]], wa: bool) -> str:
    """K2's exemplars, two blank lines (the files' separator), then the question in the exemplars' layout."""
    lines = "".join(f"{label}. {text}\n" for label, text in options)
    block = f"### Instruction:\n{INSTRUCTION}\n{stem}\nChoose from:\n{lines}\n### Response:\n"
    return samples.read_text(encoding="utf-8").rstrip("\n") + "\n\n\n" + block + ("The answer is:\n" if wa else "")


def _published(task: str, qid: int) -> tuple[str, list[tuple[str, str]]]:
    """(stem, options) of a published question, read from the raw JSON."""
    if task == "geobench_apstudy":
        item = json.loads((K2_DIR / "geobench_apstudy.json").read_text())[qid]["question"]
        return item["stem"].strip(), [(c["label"], c["text"].strip()) for c in item["choices"]]
    text = json.loads((K2_DIR / "geobench_npee.json").read_text())["choice"]["question"][qid]
    stem, block = text.split("Choose from:")
    options = [re.match(r"([A-Z])\.\s*(.*)", line.strip()).groups() for line in block.splitlines() if line.strip()]
    return stem.strip(), [(label, option.strip()) for label, option in options]


@needs_k2
def test_exemplar_files_layout_is_what_a_question_gets(tmp_path) -> None:
    """Each exemplar of K2's own files, asked as a question, gets exactly the file's text up to its answer."""
    from geo_factory.eval.families import k2
    from geo_factory.eval.families.geobench import load_all

    for samples, variant in ((SAMPLES, "woa"), (SAMPLES_WA, "wa")):
        text = samples.read_text(encoding="utf-8")
        exemplars = text.rstrip("\n").split("\n\n\n")
        items = []
        for exemplar in exemplars:
            stem = exemplar.split("\n")[2]
            options = re.findall(r"^([A-Z])\. (.*)$", exemplar, re.MULTILINE)
            choices = [{"label": label, "text": option} for label, option in options]
            items.append({"question": {"stem": stem, "choices": choices}, "answerKey": exemplar[-1]})
        folder = tmp_path / variant
        folder.mkdir()
        (folder / "geobench_apstudy.json").write_text(json.dumps(items))
        questions = load_all(str(folder))["geobench_apstudy"]
        loaded = k2.read_samples(k2.SAMPLE_KEYS[variant], str(samples), variant)
        assert loaded.count == 4
        for question, exemplar in zip(questions, exemplars):
            asked = k2.prompt_text(loaded, replace(question, task=f"geobench_apstudy_{variant}"), variant)
            assert asked == text.rstrip("\n") + "\n\n\n" + exemplar[:-1]  # the exemplar without its letter


@needs_k2
def test_k2_style_scores_both_variants_with_k2s_prompts(tmp_path, tiny_model, cli_env) -> None:
    config = _k2_config(tmp_path / "out", model_name_or_path=str(tiny_model), template="mistral", max_samples=2)
    (tmp_path / "k2.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli("eval", tmp_path / "k2.yaml", cwd=tmp_path, env=cli_env)

    results = json.loads((tmp_path / "out" / "results.json").read_text())
    predictions = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    tasks = [
        f"{name}_{variant}"
        for name in ("geobench_npee", "geobench_npee_tf", "geobench_apstudy")
        for variant in ("wa", "woa")
    ]
    assert sorted(results["tasks"]) == sorted(tasks)
    assert results["settings"]["prompt_style"] == "k2" and results["settings"]["n_shot"] == 4
    note = next(note for note in results["notes"] if note.startswith("prompt_style: k2"))
    assert "prompt-assembly code was not released" in note and "true/false statements are scored zero-shot" in note
    table = (tmp_path / "out" / "results.log").read_text()
    for name in tasks:
        summary = results["tasks"][name]
        mine = [p for p in predictions if p["task"] == name]
        assert summary["scored"] == len(mine) == 2 and summary["k2_variant"] == name.rsplit("_", 1)[1]
        assert summary["accuracy"] == pytest.approx(100 * sum(p["correct"] for p in mine) / 2)
        assert any(line.split()[:1] == [name] for line in table.splitlines()), name
        for p in mine:
            wa = name.endswith("_wa")
            if "_tf_" in name:
                statement = json.loads((K2_DIR / "geobench_npee.json").read_text())["tf"]["question"][p["id"]]
                cue = "Judge whether the following statement is true or false."
                expected = f"### Instruction:\n{cue}\n{statement.strip()}\n\n### Response:\n"
                expected += "The answer is:\n" if wa else ""
                assert p["shots"] == 0 and set(p["probs"]) == {"True", "False"}
            else:
                stem, options = _published(name.rsplit("_", 1)[0], p["id"])
                expected = _expected(SAMPLES_WA if wa else SAMPLES, stem, options, wa)
                assert p["shots"] == 4
            assert p["prompt"] == expected
            assert sum(p["probs"].values()) == pytest.approx(1.0) and p["prediction"] == max(
                p["probs"], key=p["probs"].get
            )
    assert "geobench_npee_wa" in proc.stdout


@needs_k2
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k2_samples": "MISSING"}, "`k2_samples: MISSING` cannot be read as a K2 samples file"),
        ({"k2_samples": "EMPTY"}, "is empty; expected K2's multiple_choice_samples.txt"),
        (
            {"k2_samples": str(SAMPLES_WA)},
            "exemplar 1 (exemplars are separated by two blank lines) is not in K2's layout",
        ),
        ({"k2_samples_wa": None}, "`prompt_style: k2` needs `k2_samples_wa`"),
        ({"prompt_style": "k3"}, "`prompt_style: k3` is not supported; allowed: default, k2"),
        ({"prompt_style": "default"}, "`k2_samples` is read with `prompt_style: k2` only"),
        ({"eval_mode": "generate"}, "`prompt_style: k2` scores option likelihoods"),
        # what K2's protocol would ignore is refused, not run otherwise than asked
        ({"n_shot": 2}, "`n_shot` does not apply with `prompt_style: k2`"),
        ({"lang": "zh"}, "`lang` does not apply with `prompt_style: k2`"),
        (
            {"task": "geobench,mmlu_test"},
            "`prompt_style: k2` is K2's protocol for GeoBench's objective tasks; mmlu_test would not run it",
        ),
    ],
)
def test_bad_k2_settings_fail_before_a_model_loads(tmp_path, change: dict, message: str) -> None:
    from geo_factory.eval.evaluator import Evaluator

    (tmp_path / "empty.txt").write_text("\n")
    paths = {"MISSING": str(tmp_path / "missing.txt"), "EMPTY": str(tmp_path / "empty.txt")}
    config = _k2_config(tmp_path / "out", model_name_or_path=str(tmp_path / "no-model"))
    config.update({key: paths.get(value, value) for key, value in change.items()})
    config = {key: value for key, value in config.items() if value is not None}
    with pytest.raises(ValueError) as err:
        Evaluator(config)
    assert message.replace("MISSING", paths["MISSING"]) in str(err.value)
    assert not (tmp_path / "out").exists()
