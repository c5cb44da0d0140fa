"""``geo-factory export-lm-eval DIR``: GeoBench's objective tasks (and tasks of the user's own, from ``eval_info.json``)
as an lm-evaluation-harness task folder.

The prompts are the ones ``llamafactory-cli eval`` scores, built by the same code from the same settings (task,
``task_dir``, ``n_shot``, ``lang``, ``seed``, ``max_samples``, the model's template and context), rendered as text:
LLaMA-Factory's template code runs with a stand-in tokenizer that keeps every piece as text (special tokens as
their text, which the harness's tokenizer reads back as those tokens). Each task is a jsonl file of ready prompts
with the options' answer texts and the gold index, a yaml (``output_type: multiple_choice``, ``target_delimiter:
""``, ``acc``) and the loader ``utils.py``, which needs only ``datasets``: the harness runs the folder without
geo-factory or LLaMA-Factory. ``lm_eval --include_path DIR --tasks geobench`` (or ``geobench_npee``, ...).

The harness scores an option by the summed log-probability of its text's tokens after the prompt, geo-factory by
the first token where the options' answers differ: each option's text is therefore the start of its answer that
encodes to exactly that token (``True`` may become ``Tr`` on a small vocabulary; ``answer`` keeps the whole one).
``geobench_export.json`` counts, per task, the questions whose prompt and options the harness encodes to exactly
the tokens ``llamafactory-cli eval`` scores (where one does not, the whole answer is the option).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..hparams.checks import split
from .plan import registry
from .scoring import Encoded, PromptEncoder
from .tasks import AVERAGE, AVERAGE_OF, OBJECTIVE_SUITE, check_task_names, members


GROUP = OBJECTIVE_SUITE
MANIFEST = "geobench_export.json"
_UTILS = Path(__file__).with_name("lm_eval_task_utils.py")
_TASK_YAML = """\
task: {name}
custom_dataset: !function utils.load_geobench
dataset_kwargs:
  data_file: {name}.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: gold
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
  exported_by: geo-factory export-lm-eval
"""
# `geobench` lists the exported tasks without a score of its own; `geobench_average` is eval's: the unweighted
# mean of NPEE and APStudy (JiuZhou's headline), so one name means one number in both tools.
_GROUP_YAML = """\
group: {group}
task:
{tasks}
metadata:
  version: 1.0
"""
_AVERAGE_YAML = """\
group: {group}
task:
{tasks}
aggregate_metric_list:
  - metric: acc
    aggregation: mean
    weight_by_size: false
metadata:
  version: 1.0
"""


class _TextTokenizer:
    """Stands in for the tokenizer in LLaMA-Factory's template code: every piece stays text.

    LLaMA-Factory encodes each piece on its own, and a SentencePiece-style tokenizer (Metaspace: LLaMA-2,
    Mistral) then starts it with a word-boundary piece ``▁``; in one text that is a space before the piece.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.bos_token_id = tokenizer.bos_token if tokenizer.bos_token_id is not None else None
        self.eos_token_id = tokenizer.eos_token if tokenizer.eos_token_id is not None else None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[str]:
        first = self.tokenizer.convert_ids_to_tokens(self.tokenizer.encode(text, add_special_tokens=False)[:1])
        boundary = bool(first) and first[0].startswith("\u2581") and not text.startswith((" ", "\u2581"))
        return [" " + text if boundary else text]

    @staticmethod
    def convert_tokens_to_ids(token: str) -> str:
        return token


@dataclass(frozen=True)
class Rendered(Encoded):
    """A prompt as token ids (what ``llamafactory-cli eval`` scores) and as text (what the harness reads)."""

    context: str = ""
    answers: tuple[str, ...] = ()


class TextEncoder(PromptEncoder):
    def encode(self, messages: list[dict[str, str]], answers: tuple[str, ...], group: tuple[int, ...]) -> Rendered:
        encoded = super().encode(messages, answers, group)
        pieces, answer_pieces = self.template.encode_oneturn(
            _TextTokenizer(self.tokenizer), [*messages, {"role": "assistant", "content": answers[0]}]
        )
        answer = "".join(answer_pieces)
        context = "".join(pieces) + answer[: answer.index(answers[0])]
        return Rendered(encoded.ids, encoded.candidates, encoded.group, context, answers)


def _harness_ids(tokenizer: Any, text: str) -> list[int]:
    """Tokens as lm-eval's Hugging Face backend encodes a text (no second BOS when the text starts with one)."""
    bos = tokenizer.bos_token
    return tokenizer.encode(text, add_special_tokens=not (bos and text.startswith(bos)))


def _scored_text(tokenizer: Any, prompt: Rendered, option: int) -> str | None:
    """The start of an option's answer that the harness reads as exactly the tokens eval scores (the prompt, then
    the option's first distinguishing token), or None when no start of it does."""
    answer, target = prompt.answers[option], [*prompt.ids, prompt.candidates[option]]
    for end in range(1, len(answer) + 1):
        if _harness_ids(tokenizer, prompt.context + answer[:end]) == target:
            return answer[:end]
    return None


def export(
    out_dir: str | Path,
    model: str,
    template: str | None = None,
    task: str = OBJECTIVE_SUITE,
    task_dir: str | None = None,
    n_shot: int = 5,
    lang: str = "en",
    seed: int = 42,
    max_samples: int | None = None,
) -> dict[str, Any]:
    """Write the task folder; returns the manifest (settings, and per task the counts of the tokenization check)."""
    from .evaluator import Evaluator

    tasks = registry(task_dir)
    check_task_names(split(task), key="--task", registry=tasks)
    others = [name for name in members(split(task)) if tasks[name].family == "general" or not tasks[name].objective]
    if others:
        raise ValueError(f"export-lm-eval writes objective GeoBench tasks and your own; not {', '.join(others)}.")
    out = Path(out_dir)
    config = {"model_name_or_path": model, "task": task, "n_shot": n_shot, "lang": lang, "seed": seed}
    config.update(
        {
            k: v
            for k, v in {"template": template, "task_dir": task_dir, "max_samples": max_samples}.items()
            if v is not None
        }
    )
    evaluator = Evaluator({**config, "save_dir": str(out)})  # parses and checks as `eval` does; writes nothing
    encoder = TextEncoder(evaluator.encoder.tokenizer, evaluator.encoder.template)
    tokenizer = encoder.tokenizer
    _clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"settings": {**config, "layout": evaluator.plan.layout}, "tasks": {}}
    for t in evaluator.tasks:
        rendered = t.prompts(encoder, lambda _: evaluator.context)
        rows, same = [], 0
        for question, prompt in zip(t.selected, rendered):
            labels = question.labels
            choices = [_scored_text(tokenizer, prompt, i) for i in range(len(prompt.answers))]
            same += None not in choices
            rows.append(
                {
                    "id": question.id,
                    "context": prompt.context,
                    "choices": [cut or answer for cut, answer in zip(choices, prompt.answers)],
                    "gold": labels.index(question.answer) if question.answer in labels else len(labels),  # wrong
                    "answer": question.answer,
                    "labels": list(labels),
                    "shots": len(prompt.group),
                }
            )
        with open(out / f"{t.name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (out / f"{t.name}.yaml").write_text(_TASK_YAML.format(name=t.name), encoding="utf-8")
        manifest["tasks"][t.name] = {"questions": len(rows), "same_tokens_as_eval": same}
    names = [t.name for t in evaluator.tasks]
    files = [*(f"{name}.{ext}" for name in names for ext in ("jsonl", "yaml")), f"{GROUP}.yaml", "utils.py"]
    grouped = names
    if all(name in names for name in AVERAGE_OF):
        (out / f"{AVERAGE}.yaml").write_text(
            _AVERAGE_YAML.format(group=AVERAGE, tasks="".join(f"  - {name}\n" for name in AVERAGE_OF)),
            encoding="utf-8",
        )
        files.append(f"{AVERAGE}.yaml")
        grouped = [AVERAGE, *(name for name in names if name not in AVERAGE_OF)]
    tasks = "".join(f"  - {name}\n" for name in grouped)
    (out / f"{GROUP}.yaml").write_text(_GROUP_YAML.format(group=GROUP, tasks=tasks), encoding="utf-8")
    manifest["files"] = sorted(files)
    shutil.copyfile(_UTILS, out / "utils.py")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def _clear_previous(out: Path) -> None:
    """Remove what an earlier export wrote into ``out`` (its manifest lists it): no stale task stays behind."""
    try:
        previous = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return
    for name in [*previous.get("files", []), MANIFEST]:
        (out / Path(name).name).unlink(missing_ok=True)
