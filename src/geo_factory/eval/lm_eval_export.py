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
``geobench_export.json`` counts, per task, the questions whose prompt and options the harness (the model's own
tokenizer, as it loads it) encodes to exactly the tokens ``llamafactory-cli eval`` scores (where one does not, the whole answer is the option); where eval scores
prompts without the BOS token the harness's tokenizer adds, it records the harness's ``add_bos_token=False`` that
reproduces them. ``prompt_style: lm_eval`` exports the harness's own text, as eval writes and scores it.

The output folder holds only what exports write: one holding anything else (a task's own folder, where the export
would replace its data) is refused before anything is written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..hparams.checks import split
from .plan import registry
from .scoring import Encoded, PromptEncoder
from .styles import TARGET_DELIMITER, harness_context
from .tasks import AVERAGE, AVERAGE_OF, OBJECTIVE_SUITE, check_task_names, members


if TYPE_CHECKING:
    from .families.base import BoundTask
    from .prompts import Budget


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


class _Boundary(str):
    """The space that stands for the word-boundary piece ``▁`` a SentencePiece-style tokenizer starts a piece with."""


class _TextTokenizer:
    """Stands in for the tokenizer in LLaMA-Factory's template code: every piece stays text.

    LLaMA-Factory encodes each piece on its own, and a SentencePiece-style tokenizer (Metaspace: LLaMA-2,
    Mistral) then starts it with a word-boundary piece ``▁``; in one text that is a space before the piece
    (:class:`_Boundary`), except at the start of the text, where the harness's tokenizer adds the ``▁`` itself.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.bos_token_id = tokenizer.bos_token if tokenizer.bos_token_id is not None else None
        self.eos_token_id = tokenizer.eos_token if tokenizer.eos_token_id is not None else None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[str]:
        first = self.tokenizer.convert_ids_to_tokens(self.tokenizer.encode(text, add_special_tokens=False)[:1])
        boundary = bool(first) and first[0].startswith("\u2581") and not text.startswith((" ", "\u2581"))
        return [_Boundary(" "), text] if boundary else [text]

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
        if pieces and isinstance(pieces[0], _Boundary):
            pieces = pieces[1:]
        answer = "".join(answer_pieces)
        context = "".join(pieces) + answer[: answer.index(answers[0])]
        return Rendered(encoded.ids, encoded.candidates, encoded.group, context, answers)


def _harness_ids(tokenizer: Any, text: str, add_bos: bool) -> list[int]:
    """Tokens as lm-eval's Hugging Face backend encodes a text: the tokenizer's special tokens unless the text
    starts with BOS, or the harness runs with ``add_bos_token=False``."""
    bos = tokenizer.bos_token
    return tokenizer.encode(text, add_special_tokens=add_bos and not (bos and text.startswith(bos)))


def _harness_tokenizer(model_args: Any) -> Any:
    """The tokenizer as the harness's Hugging Face backend loads it: the model's own, without what LLaMA-Factory
    adds for the run (a template's stop words as special tokens), so the check reads the text as the harness will."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        cache_dir=model_args.cache_dir,
        token=model_args.hf_hub_token,
        trust_remote_code=model_args.trust_remote_code,
    )


def harness_adds_bos(tokenizer: Any, prompts: list[Encoded]) -> bool:
    """Whether the harness may keep its default, the tokenizer's BOS before a text that has none: not when eval
    scores a prompt without that BOS (a template that adds none), which the harness then needs
    ``add_bos_token=False`` to reproduce."""
    bos = tokenizer.bos_token_id
    adds = bos is not None and tokenizer.encode("a")[:1] == [bos]
    return not adds or all(prompt.ids[:1] == [bos] for prompt in prompts)


def _scored_texts(tokenizer: Any, prompt: Rendered, add_bos: bool) -> list[str | None]:
    """Per option, the start of its answer with which the harness reads exactly the tokens eval scores, or None when
    no start of it does. The harness splits a request as its ``_encode_pair`` does: the context's trailing spaces go
    to the continuation, the context is encoded alone and the continuation is the rest of the whole text's tokens;
    its input must be eval's prompt and then the option's token. Where the split falls inside eval's prompt (a
    template's ``assistant\n``: the newline moves to the option), the prompt tokens after it are scored with every
    option alike, so the harness's choice is eval's."""
    head = _harness_ids(tokenizer, prompt.context.rstrip(), add_bos)
    texts: list[str | None] = [None] * len(prompt.answers)
    if head != prompt.ids[: len(head)]:
        return texts
    for option, answer in enumerate(prompt.answers):
        for end in range(1, len(answer) + 1):
            if _harness_ids(tokenizer, prompt.context + answer[:end], add_bos) == [
                *prompt.ids,
                prompt.candidates[option],
            ]:
                texts[option] = answer[:end]
                break
    return texts


def _render(task: BoundTask, encoder: TextEncoder, budget: Callable[[bool], Budget | None]) -> list[Rendered]:
    """A task's prompts as eval scores them, with their text: the template's rendered by :class:`TextEncoder`, the
    harness protocol's (``prompt_style: lm_eval``) written by the same function eval tokenizes."""
    prompts = task.prompts(encoder, budget)
    if task.settings.protocol != "lm_eval":
        return prompts
    pool = task.sampler().pool
    return [
        Rendered(
            prompt.ids,
            prompt.candidates,
            prompt.group,
            harness_context(task, question, prompt.group, pool),
            tuple(TARGET_DELIMITER + label for label in question.labels),
        )
        for question, prompt in zip(task.selected, prompts)
    ]


def export(
    out_dir: str | Path,
    model: str,
    template: str | None = None,
    task: str = OBJECTIVE_SUITE,
    task_dir: str | None = None,
    geobench_task_dir: str | None = None,
    n_shot: int = 5,
    lang: str | None = None,
    seed: int = 42,
    max_samples: int | None = None,
    prompt_style: str = "default",
) -> dict[str, Any]:
    """Write the task folder; returns the manifest (settings, and per task its language and the counts of the
    tokenization check). ``lang`` None: each task's own, as in eval."""
    from .evaluator import Evaluator

    tasks = registry(task_dir)
    check_task_names(split(task), key="--task", registry=tasks)
    others = [name for name in members(split(task)) if tasks[name].family == "general" or not tasks[name].objective]
    generated = [name for name in members(split(task)) if tasks[name].kind == "answer"]
    if generated:  # their extraction and matching are geo-factory's, not a harness filter
        raise ValueError(
            f"export-lm-eval writes multiple-choice tasks; {', '.join(generated)} "
            f"{'is' if len(generated) == 1 else 'are'} scored on generated answers: evaluate with `llamafactory-cli eval`."
        )
    if others:
        raise ValueError(f"export-lm-eval writes objective GeoBench tasks and your own; not {', '.join(others)}.")
    out = Path(out_dir)
    previous = _check_output(out)
    config = {"model_name_or_path": model, "task": task, "n_shot": n_shot, "seed": seed}
    given = {"template": template, "task_dir": task_dir, "geobench_task_dir": geobench_task_dir, "lang": lang}
    given.update(max_samples=max_samples, prompt_style=None if prompt_style == "default" else prompt_style)
    config.update({k: v for k, v in given.items() if v is not None})
    evaluator = Evaluator({**config, "save_dir": str(out)})  # parses and checks as `eval` does; writes nothing
    for t in evaluator.tasks:
        for path in t.data_files().values():
            if out.resolve() in path.resolve().parents:
                raise ValueError(f"{out} holds {path.resolve()}, which `{t.name}` reads: export into another folder.")
    encoder = TextEncoder(evaluator.encoder.tokenizer, evaluator.encoder.template)
    tokenizer = _harness_tokenizer(evaluator.model_args)
    rendered = {t.name: _render(t, encoder, lambda _: evaluator.context) for t in evaluator.tasks}
    add_bos = harness_adds_bos(tokenizer, [prompt for prompts in rendered.values() for prompt in prompts])
    settings = {**config, "prompt_style": prompt_style, "layout": evaluator.plan.layout}
    if not add_bos:
        settings["harness_model_args"] = "add_bos_token=False"
    for name in previous:
        (out / name).unlink(missing_ok=True)  # what an earlier export wrote: no stale task stays behind
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"settings": settings, "tasks": {}}
    for t in evaluator.tasks:
        rows, same = [], 0
        for question, prompt in zip(t.selected, rendered[t.name]):
            labels = question.labels
            choices = _scored_texts(tokenizer, prompt, add_bos)
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
        manifest["tasks"][t.name] = {"lang": t.lang, "questions": len(rows), "same_tokens_as_eval": same}
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
    listed = "".join(f"  - {name}\n" for name in grouped)
    (out / f"{GROUP}.yaml").write_text(_GROUP_YAML.format(group=GROUP, tasks=listed), encoding="utf-8")
    manifest["files"] = sorted(files)
    shutil.copyfile(_UTILS, out / "utils.py")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def _check_output(out: Path) -> list[str]:
    """The files an earlier export wrote into ``out`` (its manifest lists them), to be replaced; a folder that holds
    anything else (a task's own files, when it is ``--task_dir``; an eval run; the user's) is refused before
    anything is read or written."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder.")
    if not out.is_dir():
        return []
    try:
        previous = [Path(name).name for name in json.loads((out / MANIFEST).read_text(encoding="utf-8"))["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        previous = []
    ours = [*previous, MANIFEST] if previous else []
    foreign = sorted(path.name for path in out.iterdir() if path.name not in ours)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise ValueError(
            f"{out} holds {', '.join(foreign[:3])}{more}, which export-lm-eval did not write: export into a new or "
            f"empty folder, or one an earlier export wrote (its {MANIFEST} lists its files)."
        )
    return ours
