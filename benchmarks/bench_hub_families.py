"""The objective parts of FormationEval, EarthSE and ClimaQA (#35) through ``llamafactory-cli eval`` on stand-in copies
of their hub datasets (invented questions in the published columns, written as ``datasets`` caches them:
tests/hub_standins.py), offline.

Each task runs as its own command twice, on all of its ``--questions`` and on one; the difference of the wall times
is the scoring of ``questions - 1`` questions, start-up and model load left out, so questions per second compare
across tasks: option likelihood (``formationeval``, ``climaqa_gold_mcq``) against batched generation with answer
extraction (``formationeval_gen``, ``earth_iron_mc``/``_tf``/``_fib``, ``climaqa_gold_mcq_gen``, ``_cloze``).
The accuracies of invented questions mean nothing; the extraction failures say how often the model's replies held
an answer of the expected kind.

    python benchmarks/bench_hub_families.py [--model ~/.cache/geo-factory/smollm2-135m-instruct] [--questions 96]
        [--batch-size 16] [--max-new-tokens 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import hub_standins  # noqa: E402  (the tests' stand-in writer)


TASKS = (
    "formationeval", "formationeval_gen", "earth_iron_mc", "earth_iron_tf", "earth_iron_fib",
    "climaqa_gold_mcq", "climaqa_gold_mcq_gen", "climaqa_gold_cloze",
)  # fmt: skip
ROCKS = ("basalt", "granite", "marble", "slate", "shale", "gneiss", "schist", "chalk")


def standins(n: int) -> tuple[list[dict], dict[str, list[dict]], dict[str, str]]:
    """``n`` invented questions per split, in each dataset's published columns."""
    fe = [
        {"id": f"fe_{i}", "question": f"Which rock is sample {i} most likely to be, given its porosity of {i % 30} %?",
         "choices": [ROCKS[(i + k) % 8] for k in range(4)], "answer_index": i % 4, "answer_key": "ABCD"[i % 4],
         "difficulty": ("easy", "medium", "hard")[i % 3], "domains": [("Petrophysics", "Geophysics")[i % 2]],
         "topics": ["porosity"], "language": "en", "metadata": {"calc_required": i % 5 == 0}}
        for i in range(n)
    ]  # fmt: skip
    spheres = ("Hydrosphere", "Biosphere", "Lithosphere", "Atmosphere", "Cryosphere")

    def earth_row(i: int, question: str, answer: str) -> dict:
        return {"idx": i, "question": question, "reasoning_chain": "", "answer": answer, "task": "knowledge_qa",
                "sphere": spheres[i % 5], "subject": "geology", "sub_discipline": "petrology"}  # fmt: skip

    earth = {
        "multiple_choice": [
            earth_row(i, f"Which rock forms from lava flow {i}? A) {ROCKS[i % 8]} B) {ROCKS[(i + 1) % 8]} "
                      f"C) {ROCKS[(i + 2) % 8]} D) {ROCKS[(i + 3) % 8]}", "ABCD"[i % 4])
            for i in range(n)
        ],
        "true_false": [earth_row(i, f"{ROCKS[i % 8].title()} sample {i} is igneous.", ("True", "False")[i % 2])
                       for i in range(n)],
        "fill_in_the_blank": [earth_row(i, f"Sample {i} of ___ and ___ was found.", f"{ROCKS[i % 8]}, {ROCKS[(i + 3) % 8]}")
                              for i in range(n)],
        "free_form": [earth_row(0, "Why do rocks weather?", "Water and heat.")],
    }  # fmt: skip
    mcq = "".join(
        f'"Which gas traps heat in case {i}?","a) carbon dioxide - b) argon - c) neon - d) helium",a,BASE,True\n'
        for i in range(n)
    )
    cloze = "".join(f"In case {i} the <MASK> absorbs most heat.,ocean,BASE\n" for i in range(n))
    clima = {
        "mcq": "Question,Options,Answer,Complexity,Validation\n" + mcq,
        "cloze": "Question,Answer,Complexity\n" + cloze,
        "ffq": "Question,Answer,Complexity,Validation\nWhy do clouds form?,Vapour condenses.,BASE,True\n",
    }
    return fe, earth, clima


def run(work: Path, task: str, limit: int | None) -> tuple[float, dict]:
    config = {
        "model_name_or_path": str(ARGS.model), "template": "smollm2", "cache_dir": str(work / "datasets"),
        "task": task, "n_shot": 0, "batch_size": ARGS.batch_size, "max_new_tokens": ARGS.max_new_tokens,
        "save_dir": str(work / f"{task}_{limit}"), "max_samples": limit,
    }  # fmt: skip
    path = work / f"{task}_{limit}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not None}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": str(ARGS.threads)}
    start = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "llamafactory-cli"), "eval", str(path)],
                          env=env, capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{task}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return wall, json.loads((work / f"{task}_{limit}" / "results.json").read_text())["tasks"][task]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hub_standins.write(work / "home", work / "datasets", *standins(ARGS.questions))
        for task in TASKS:
            one, _ = run(work, task, 1)
            wall, summary = run(work, task, None)
            rate = (summary["scored"] - 1) / (wall - one)
            rows.append({
                "task": task, "questions": summary["scored"], "wall_s": round(wall, 2), "one_question_s": round(one, 2),
                "questions_per_s": round(rate, 2), "accuracy": summary["accuracy"],
                "extraction_failures": summary.get("extraction_failures"), "eval_mode": summary["eval_mode"],
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    print("\n| task | scored by | questions | q/s | extraction failures |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['task']} | {row['eval_mode']} | {row['questions']} | {row['questions_per_s']} | "
              f"{'-' if row['extraction_failures'] is None else row['extraction_failures']} |")  # fmt: skip
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path.home() / ".cache/geo-factory/smollm2-135m-instruct")
    parser.add_argument("--questions", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    ARGS = parser.parse_args()
    main()
