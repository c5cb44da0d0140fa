"""Generated answers (``answer_type`` in ``eval_info.json``) and the hub benchmarks that score them (FormationEval,
EarthSE, ClimaQA), through the real ``llamafactory-cli eval`` on the tiny model. What the tiny model writes is never
pinned: the tests check what the scoring guarantees for whatever it wrote, and extraction on known replies."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

import hub_standins
from conftest import run_cli, workdir
from openai_standin import serving


# The judge's key: a variable every run's environment holds (conftest.cli_env), so that the runs fork from the warm CLI
KEY_ENV = "GEO_FACTORY_TEST_JUDGE_KEY"


def _predictions(save_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (save_dir / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("reply", "entry", "answer"),
    [
        ("B", {"answer_type": "letter"}, "B"),
        ("**c**", {"answer_type": "letter"}, "C"),
        ("Answer: b, since basalt is volcanic", {"answer_type": "letter"}, "B"),
        ("<think>A or D? A.</think>The correct answer is D", {"answer_type": "letter"}, "D"),
        ("I am not sure it matters", {"answer_type": "letter"}, None),
        ("E", {"answer_type": "letter", "letters": "ABCDE"}, "E"),
        ("Depth is about 2,900 km, not 5100 km... so 2,890.", {"answer_type": "number"}, "2890.0"),
        ("<think>maybe 7</think>no number here", {"answer_type": "number"}, None),
        ("value: 3.5e2 m (roughly 400)", {"answer_type": "number", "extract": r"value:\s*(\S+)"}, "350.0"),
        ("  Plate Tectonics. ", {"answer_type": "text"}, "Plate Tectonics."),
        ("Answer: basalt\nmore words", {"answer_type": "text", "extract": r"Answer:\s*(.+)"}, "basalt"),
        ("nothing to match", {"answer_type": "text", "extract": r"Answer:\s*(.+)"}, None),
        ("<think>\n</think>\n", {"answer_type": "phrases"}, None),
    ],
)
def test_extraction_on_known_replies(reply: str, entry: dict, answer: str | None) -> None:
    from geo_factory.eval.answers import extract, spec_from_entry

    assert extract(reply, spec_from_entry(entry, "test")) == answer


@pytest.mark.parametrize(
    ("prediction", "gold", "entry", "right"),
    [
        ("2890", "2900", {"answer_type": "number", "tolerance": 0.01}, True),
        ("2800", "2900", {"answer_type": "number", "tolerance": 0.01}, False),
        ("2.95", "3", {"answer_type": "number", "abs_tolerance": 0.05}, True),
        ("3.0", "3", {"answer_type": "number"}, True),
        ("3.01", "3", {"answer_type": "number"}, False),
        ("plate tectonics", "Plate-Tectonics.", {"answer_type": "text", "fold": True}, True),
        ("plate tectonics", "Plate-Tectonics.", {"answer_type": "text"}, False),
        ("Granite , basalt", "basalt, granite", {"answer_type": "phrases"}, True),
        ("basalt", "basalt, granite", {"answer_type": "phrases"}, False),
        (None, "B", {"answer_type": "letter"}, False),
    ],
)
def test_matching(prediction: str | None, gold: str, entry: dict, right: bool) -> None:
    from geo_factory.eval.answers import matches, spec_from_entry

    assert matches(prediction, gold, spec_from_entry(entry, "test")) is right


def test_majority_vote() -> None:
    from geo_factory.eval.answers import AnswerSpec, majority

    number = AnswerSpec("number")
    assert majority(["3", "4.0", "3.0", None, "4"], number) == "3"  # 3 and 4 twice each: the first given wins
    assert majority([None, "4", "3", "4.00"], number) == "4"
    assert majority(["Basalt", "basalt.", "granite"], AnswerSpec("text", fold=True)) == "Basalt"
    assert majority([None, None], number) is None


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({"answer_type": "essay"}, "`answer_type` must be one of letter, number, text, phrases, judge, got 'essay'"),
        ({"answer_type": "text", "tolerance": 0.1}, "`tolerance` applies to `answer_type: number`, not text"),
        ({"answer_type": "number", "num_samples": 0}, "`num_samples` must be an integer >= 1, got 0"),
        ({"answer_type": "text", "extract": "Answer: .+"}, "`extract` needs a group, `(...)`"),
        ({"answer_type": "text", "extract": "(unclosed"}, "`extract` is not a valid regular expression"),
        ({"answer_type": "number", "temperature": -1}, "`temperature` must be a number >= 0, got -1"),
        (
            {"answer_type": "text", "columns": {"question": "q", "answer": "a", "options": "o"}},
            "unknown column role `options`",
        ),
    ],
)
def test_registry_errors_name_the_entry(tmp_path: Path, entry: dict, error: str) -> None:
    from geo_factory.eval.data import EvalDataError
    from geo_factory.eval.families.custom import user_tasks

    entry = {"file_name": "x.jsonl", "columns": {"question": "q", "answer": "a"}, **entry}
    (tmp_path / "eval_info.json").write_text(json.dumps({"mine": entry}))
    with pytest.raises(EvalDataError) as err:
        user_tasks(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'eval_info.json'}, task `mine`: ")
    assert error in str(err.value)


def _answer_tasks(folder: Path) -> None:
    """One task of each answer type, beside a multiple-choice task of today's schema."""
    folder.mkdir()
    rows = {
        "letters": [{"q": f"Which option {i}? A) basalt B) granite C) marble D) slate", "a": "ABCD"[i % 4]} for i in range(3)],
        "depths": [{"q": f"How deep is layer {i}, in km?", "a": str(10 * (i + 1)), "topic": ["crust", "mantle"][i % 2]}
                   for i in range(4)],
        "terms": [{"q": f"Name term {i}.", "a": f"Term {i}"} for i in range(3)],
        "minerals": [{"q": f"List the minerals of rock {i}.", "a": "quartz, feldspar"} for i in range(2)],
        "essays": [{"q": f"Why do plates move ({i})?", "a": "Mantle convection and slab pull."} for i in range(2)],
        "choice": [{"q": f"Which is volcanic ({i})?", "options": ["basalt", "marble"], "a": "A"} for i in range(2)],
    }  # fmt: skip
    for name, items in rows.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in items))
    columns = {"question": "q", "answer": "a"}
    info = {
        "letters": {"file_name": "letters.jsonl", "columns": columns, "answer_type": "letter"},
        "depths": {"file_name": "depths.jsonl", "columns": {**columns, "subject": "topic"}, "answer_type": "number",
                   "tolerance": 0.1, "num_samples": 3, "temperature": 0.9, "top_p": 0.95},
        "terms": {"file_name": "terms.jsonl", "columns": columns, "answer_type": "text", "fold": True},
        "minerals": {"file_name": "minerals.jsonl", "columns": columns, "answer_type": "phrases"},
        "essays": {"file_name": "essays.jsonl", "columns": columns, "answer_type": "judge"},
        "choice": {"file_name": "choice.jsonl", "columns": {**columns, "options": "options"}},
    }  # fmt: skip
    (folder / "eval_info.json").write_text(json.dumps(info))


def test_generated_answers_of_every_type(tmp_path, tiny_model, cli_env) -> None:
    """Each answer type, the vote over sampled answers and the judge's verdicts (a stand-in endpoint that says
    CORRECT), beside a multiple-choice task; then a judged task without a judge is refused before the model loads."""
    from geo_factory.eval.answers import extract, parse_number, spec_from_entry

    work = workdir(tmp_path, tiny_model)
    _answer_tasks(work / "mine")
    config = {
        "model_name_or_path": "models/tiny-mistral", "template": "mistral", "task_dir": "mine",
        "task": "letters,depths,terms,minerals,essays,choice", "n_shot": 1, "max_new_tokens": 12, "batch_size": 4,
        "save_dir": "out", "judge_model": "stand-in", "judge_api_key_env": KEY_ENV,
    }  # fmt: skip
    with serving(cli_env[KEY_ENV], "CORRECT") as server:
        config["judge_api_base"] = server.api_base
        (work / "eval.yaml").write_text(yaml.safe_dump(config))
        proc = run_cli("eval", work / "eval.yaml", cwd=work, env=cli_env)
    results = json.loads((work / "out" / "results.json").read_text())
    tasks, predictions = results["tasks"], _predictions(work / "out")
    info = json.loads((work / "mine" / "eval_info.json").read_text())
    by_task = {name: [p for p in predictions if p["task"] == name] for name in tasks}
    assert {name: len(by_task[name]) for name in tasks} == {
        "choice": 2, "letters": 3, "depths": 4, "terms": 3, "minerals": 2, "essays": 2
    }  # fmt: skip

    for name in ("letters", "depths", "terms", "minerals", "essays"):
        spec, summary = spec_from_entry(info[name], name), tasks[name]
        for p in by_task[name]:
            assert {"response", "prediction", "correct", "gold"} <= p.keys() and p["shots"] == 1
            if spec.num_samples == 1:  # the prediction is what the reply holds
                assert p["prediction"] == extract(p["response"], spec)
            if p["prediction"] is None:
                assert p["correct"] is False
        failed = [p["id"] for p in by_task[name] if p["prediction"] is None]
        assert (summary["extraction_failures"], summary["extraction_failed_ids"]) == (len(failed), failed)
        right = sum(p["correct"] for p in by_task[name])
        assert (summary["correct"], summary["scored"], summary["answer_type"]) == (
            right,
            len(by_task[name]),
            spec.type,
        )
        assert summary["accuracy"] == pytest.approx(100 * right / len(by_task[name]), abs=1e-3)
        assert summary["eval_mode"] == "generate"

    # numbers: right within 10% of the reference; the prediction is the most frequent of 3 samples' numbers
    for p in by_task["depths"]:
        assert len(p["samples"]) == 3
        numbers = [parse_number(s["prediction"]) for s in p["samples"] if s["prediction"] is not None]
        if numbers:
            top = max(Counter(numbers).values())
            assert parse_number(p["prediction"]) == next(n for n in numbers if Counter(numbers)[n] == top)
            assert p["correct"] == (abs(parse_number(p["prediction"]) - float(p["gold"])) <= 0.1 * float(p["gold"]))
        assert p["subject"] in ("crust", "mantle")
    assert set(tasks["depths"]["by"]["subject"]) == {"crust", "mantle"} and tasks["depths"]["num_samples"] == 3
    # the judge said CORRECT to every answer it was shown, and saw the question, the reference and the answer
    judged = [p for p in by_task["essays"] if p["prediction"] is not None]
    assert all(p["correct"] and p["judge_attempts"] == 1 for p in judged)
    shown = [request["messages"][-1]["content"] for request in server.requests]  # asked concurrently: any order
    assert len(shown) == len(judged)
    for p in judged:
        assert any(p["gold"] in text and p["prediction"] in text and "Why do plates move" in text for text in shown)
    # multiple choice keeps its schema: probabilities of the options, no reply
    assert all("probs" in p and "response" not in p for p in by_task["choice"])
    assert tasks["choice"]["eval_mode"] == "likelihood"
    assert "extraction failures" in proc.stdout

    # without a judge, the judged task is refused before any model loads
    (work / "eval.yaml").write_text(yaml.safe_dump({k: v for k, v in config.items() if not k.startswith("judge")}))
    proc = run_cli("eval", work / "eval.yaml", "save_dir=out2", cwd=work, env=cli_env, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "`essays` is scored by the judge against its reference answers (`answer_type: judge`): set `judge_api_base` "
            "and `judge_model`, or leave it out of `task`."
        )
    )
    assert "all params" not in proc.stderr and not (work / "out2").exists()


# ---------------------------------------------------------------------------------------------
# The hub benchmarks, on stand-in caches of invented rows written as `datasets` leaves them

FORMATIONEVAL = [
    {"id": f"fe_{i}", "question": f"Which log reads porosity in well {i}?", "choices": [f"log {c} {i}" for c in "abcd"],
     "answer_index": i % 4, "answer_key": "ABCD"[i % 4], "difficulty": ["easy", "hard"][i % 2],
     "domains": [["Petrophysics"], ["Petrophysics", "Geophysics"]][i % 2], "topics": ["logs"], "language": "en",
     "metadata": {"calc_required": i == 3, "contamination_risk": "low"}}
    for i in range(4)
]  # fmt: skip
EARTHSE = {
    "multiple_choice": [("Which sphere holds glaciers? A) Cryosphere B) Biosphere", "A"),
                        ("Which layer is deepest? A) Crust B) Core", "B")],
    "true_false": [("Basalt is volcanic.", "True"), ("Ice is a gas.", "False")],
    "fill_in_the_blank": [("Rain and ___ are precipitation.", "snow"), ("___ and ___ are plates.", "pacific, nazca")],
    "free_form": [("Why does the sea level rise?", "Ice melts and water expands."), ("What drives wind?", "Pressure.")],
}  # fmt: skip
CLIMAQA = {
    "mcq": "Question,Options,Answer,Complexity,Validation\n"
    '"What warms the air?","a) the sun - b) the moon - c) the stars - d) the sea",a,BASE,True\n'
    '"What is CO2?","a) a gas - b) a rock - c) a liquid - d) a plasma",a,REASONING,True\n'
    '"Not validated?","a) yes - b) no - c) maybe - d) never",b,BASE,False\n',
    "cloze": "Question,Answer,Complexity\nThe <MASK> absorbs heat.,ocean,BASE\nWarm air <MASK>.,rises,HYPOTHETICAL\n",
    "ffq": "Question,Answer,Complexity,Validation\nWhy do clouds form?,Vapour condenses.,BASE,True\n"
    "Why is it cold?,Less sun.,BASE,False\n",
}


def write_hub_caches(hf_home: Path, cache_dir: Path) -> None:
    """The fixture rows above as the three hub datasets (:mod:`hub_standins`)."""
    earth = {
        split: [
            {"idx": i, "question": q, "reasoning_chain": "", "answer": a, "task": ["knowledge_qa", "analysis"][i],
             "sphere": ["Hydrosphere", "Lithosphere"][i], "subject": "earth", "sub_discipline": "all"}
            for i, (q, a) in enumerate(rows)
        ]
        for split, rows in EARTHSE.items()
    }  # fmt: skip
    hub_standins.write(hf_home, cache_dir, FORMATIONEVAL, earth, CLIMAQA)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    """The ``cache_dir`` holding the three stand-in datasets."""
    root = tmp_path_factory.mktemp("hub_benchmarks")
    write_hub_caches(root / "home", root / "datasets")
    return root / "datasets"


def test_hub_benchmarks_from_the_cache(tmp_path, tiny_model, cli_env, hub_cache) -> None:
    """FormationEval (both protocols), Earth-Iron and ClimaQA Gold in one run, offline from the cache; a judge that
    always says B: EarthSE's free-form answers win (B is the model's), ClimaQA's verdict is malformed."""
    from geo_factory.eval.answers import extract_letter, fold, phrases, strip_reasoning

    work = workdir(tmp_path, tiny_model)
    config = {
        "model_name_or_path": "models/tiny-mistral", "template": "mistral", "cache_dir": str(hub_cache),
        "task": "formationeval,formationeval_gen,earth_iron,climaqa_gold", "n_shot": 1, "max_new_tokens": 8,
        "batch_size": 8, "save_dir": "out", "judge_model": "stand-in", "judge_api_key_env": KEY_ENV,
        "judge_max_retries": 0,
    }  # fmt: skip
    with serving(cli_env[KEY_ENV], "B") as server:
        config["judge_api_base"] = server.api_base
        (work / "eval.yaml").write_text(yaml.safe_dump(config))
        run_cli("eval", work / "eval.yaml", cwd=work, env=cli_env)
    results = json.loads((work / "out" / "results.json").read_text())
    tasks, predictions = results["tasks"], _predictions(work / "out")
    mine = {name: [p for p in predictions if p["task"] == name] for name in tasks}
    assert {name: (s["scored"], s["total"]) for name, s in tasks.items()} == {
        "formationeval": (4, 4), "formationeval_gen": (4, 4),
        **{f"earth_iron_{short}": (2, 2) for short in ("mc", "tf", "fib", "free")},
        "climaqa_gold_mcq": (2, 2), "climaqa_gold_mcq_gen": (2, 2), "climaqa_gold_cloze": (2, 2),
        "climaqa_gold_ffq": (1, 1),
    }  # fmt: skip
    assert results["settings"]["hub_datasets"]["earth_iron_free"] == "hub:ai-earth/Earth-Iron/free_form"
    assert tasks["climaqa_gold_ffq"]["source"] == "hub:UCSD-GENIE/ClimaQA/Gold/ffq"

    # FormationEval: the options' likelihoods, and the authors' extraction of the generated letter
    assert [p["gold"] for p in mine["formationeval"]] == ["A", "B", "C", "D"]
    assert all(len(p["probs"]) == 4 for p in mine["formationeval"])
    for p in mine["formationeval_gen"]:
        assert p["prediction"] == extract_letter(strip_reasoning(p["response"]))
        assert p["correct"] == (p["prediction"] == p["gold"])
    for name in ("formationeval", "formationeval_gen"):
        by = tasks[name]["by"]
        assert {k: v["scored"] for k, v in by["domains"].items()} == {"Petrophysics": 4, "Geophysics": 2}
        assert {k: v["scored"] for k, v in by["difficulty"].items()} == {"easy": 2, "hard": 2}
        assert {k: v["scored"] for k, v in by["calc_required"].items()} == {"False": 3, "True": 1}
        assert sum(v["correct"] for v in by["difficulty"].values()) == tasks[name]["correct"]

    # EarthSE: the authors' exact match, and folded (and phrases) beside it; free-form by win rate and overlap
    for short in ("mc", "tf", "fib"):
        for p in mine[f"earth_iron_{short}"]:
            reply = strip_reasoning(p["response"])
            assert p["correct"] == (bool(reply) and reply == p["gold"])
            assert p["correct_folded"] == (bool(reply) and fold(reply) == fold(p["gold"]))
        assert set(tasks[f"earth_iron_{short}"]["by"]["sphere"]) == {"Hydrosphere", "Lithosphere"}
        assert set(tasks[f"earth_iron_{short}"]["by"]["task_type"]) == {"knowledge_qa", "analysis"}
    for p in mine["earth_iron_fib"]:
        assert p["correct_phrases"] == (p["prediction"] is not None and phrases(p["prediction"]) == phrases(p["gold"]))
    free = tasks["earth_iron_free"]
    answered = [p for p in mine["earth_iron_free"] if p["prediction"] is not None]
    assert all(p["correct"] for p in answered) and free["correct"] == len(answered)
    assert 0 <= free["rouge-l"] <= 100 and 0 <= free["bleu-4"] <= 100
    asked = [r["messages"][-1]["content"] for r in server.requests if "Answer A Start" in r["messages"][-1]["content"]]
    assert len(asked) == len(answered)
    for p in answered:  # the judge is asked concurrently: its requests arrive in any order
        reference, reply = f"**[Answer A Start]**\n{p['gold']}\n", f"**[Answer B Start]**\n{p['prediction']}\n"
        assert any(reference in text and reply in text for text in asked), (p, asked)

    # ClimaQA: rows validated False left out of Gold's mcq and ffq; the judge's "B" is no verdict: a judge failure
    assert [p["gold"] for p in mine["climaqa_gold_mcq"]] == ["A", "A"]
    assert set(tasks["climaqa_gold_cloze"]["by"]["complexity"]) == {"BASE", "HYPOTHETICAL"}
    ffq = mine["climaqa_gold_ffq"]
    judged = [p for p in ffq if p["prediction"] is not None]
    assert tasks["climaqa_gold_ffq"]["judge_failures"] == len(judged) and not any(p["correct"] for p in ffq)
    assert all(p["judge_attempts"] == 1 and p["judge_last_reply"] == "B" for p in judged)


def test_offline_and_not_cached_stops_before_the_model(tmp_path, tiny_model, cli_env) -> None:
    work = workdir(tmp_path, tiny_model)
    config = {"model_name_or_path": "models/tiny-mistral", "task": "earth_silver", "save_dir": "out",
              "cache_dir": str(tmp_path / "empty")}  # fmt: skip
    (work / "eval.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli("eval", work / "eval.yaml", cwd=work, env=cli_env, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "all params" not in proc.stderr and not (work / "out").exists()
    assert proc.stderr.strip().splitlines()[-1] == (
        "llamafactory-cli eval: error: `earth_silver_mc` reads the hub dataset ai-earth/Earth-Silver (split "
        "multiple_choice), which is not in the cache and the hub cannot be reached (HF_HUB_OFFLINE=1): run once "
        "online to cache it, or leave `earth_silver_mc` out of `task`."
    )


def test_a_changed_column_is_named() -> None:
    import datasets

    from geo_factory.eval.data import EvalDataError
    from geo_factory.eval.families.earthse import EarthSETask
    from geo_factory.eval.families.hub import check_columns

    row = {"idx": [0], "question": ["q"], "answer": ["a"], "task": ["analysis"], "sphere": ["Biosphere"]}
    with pytest.raises(EvalDataError, match=r"^Earth-Iron: unexpected column `level` \(known: "):
        check_columns(
            datasets.Dataset.from_dict({**row, "level": [1]}), EarthSETask.required, EarthSETask.known, "Earth-Iron"
        )
    without = {k: v for k, v in row.items() if k != "sphere"}
    with pytest.raises(
        EvalDataError, match=r"^Earth-Iron: no column `sphere` \(columns: idx, question, answer, task\)"
    ):
        check_columns(datasets.Dataset.from_dict(without), EarthSETask.required, EarthSETask.known, "Earth-Iron")


def test_objective_parts_in_training(tmp_path, tiny_model, cli_env, hub_cache, parse_train) -> None:
    """FormationEval and ClimaQA's multiple choice by likelihood during pretraining (learning rate 0: the base model),
    logged as eval scores them; a generated-answer task is refused at parsing."""
    from conftest import example, read_trainer_log

    work = workdir(tmp_path, tiny_model)
    config = yaml.safe_load(example("tiny/tiny_lora_pretrain.yaml").read_text())
    for key in ("val_size", "eval_strategy", "eval_steps", "eval_on_start", "per_device_eval_batch_size"):
        config.pop(key, None)
    config.update(
        output_dir="out", max_steps=1, save_steps=100, plot_loss=False, learning_rate=0.0, cache_dir=str(hub_cache),
        geobench_eval_steps=1, geobench_tasks="formationeval,climaqa_gold_mcq", geobench_n_shot=1,
    )  # fmt: skip
    (work / "train.yaml").write_text(yaml.safe_dump(config))
    run_cli("train", "train.yaml", cwd=work, env=cli_env)
    logged = next(row for row in read_trainer_log(work / "out") if "geobench_formationeval_acc" in row)
    (work / "eval.yaml").write_text(yaml.safe_dump({
        "model_name_or_path": "models/tiny-mistral", "cache_dir": str(hub_cache), "template": config.get("template", "default"),
        "task": "formationeval,climaqa_gold_mcq", "n_shot": 1, "save_dir": "eval",
    }))  # fmt: skip
    run_cli("eval", "eval.yaml", cwd=work, env=cli_env)
    tasks = json.loads((work / "eval" / "results.json").read_text())["tasks"]
    for name in ("formationeval", "climaqa_gold_mcq"):
        assert logged[f"geobench_{name}_acc"] == pytest.approx(tasks[name]["accuracy"], abs=1e-3)

    with pytest.raises(
        ValueError,
        match="`geobench_tasks` scores option likelihoods during training; `earth_iron` is scored on generated answers",
    ):
        parse_train("train.yaml", "geobench_tasks=earth_iron", cwd=work)


def test_export_lm_eval_refuses_generated_answers(tmp_path) -> None:
    from geo_factory.eval.lm_eval_export import export

    with pytest.raises(
        ValueError, match=r"^export-lm-eval writes multiple-choice tasks; earth_iron_mc, earth_iron_tf, "
    ):
        export(tmp_path / "out", "models/none", task="earth_iron")
    assert not (tmp_path / "out").exists()
