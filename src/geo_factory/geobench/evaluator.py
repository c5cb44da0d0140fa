"""``llamafactory-cli eval CONFIG.yaml``: GeoBench with LLaMA-Factory's own argument parsing, model loading
(base model, adapters, quantization), chat templates and inference engines.

Everything is checked before a model is loaded or a file written: the config keys and values, the data
(every row of every requested task), the plan (judge for judge-only tasks, backend for likelihood scoring)
and the ``save_dir`` state.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

import transformers
from llamafactory.extras import logging
from llamafactory.extras.constants import EngineName
from llamafactory.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments
from llamafactory.hparams.parser import (
    _check_extra_dependencies,
    _set_transformers_logging,
    _verify_model_args,
    read_args,
)
from tqdm import tqdm
from transformers import HfArgumentParser

from ..hparams import GeoBenchArguments
from .data import detect_layout, resolve_task_dir
from .prompts import open_messages
from .report import NO_DEV_SPLIT, SaveDir, format_table, read_results, summarize_objective, summarize_open
from .scoring import LikelihoodScorer, generate, generate_records, likelihood_records
from .subjective import Judge, reference_scores
from .tasks import AVERAGE, AVERAGE_OF, expand


if TYPE_CHECKING:
    from llamafactory.chat import ChatModel

    from .data import OpenQuestion
    from .tasks import Task


logger = logging.get_logger(__name__)

_EVAL_ARGS = [ModelArguments, DataArguments, GeoBenchArguments, FinetuningArguments, GeneratingArguments]
_INFER_ARGS = (ModelArguments, DataArguments, FinetuningArguments, GeneratingArguments)
_SECRET_KEY = re.compile(r"token|api_key|secret|password", re.IGNORECASE)


def _field_names(*classes: type) -> set[str]:
    return {f.name for cls in classes for f in fields(cls) if f.init}


def get_geobench_args(args: dict[str, Any] | list[str] | None = None) -> tuple[Any, ...]:
    """LLaMA-Factory's ``get_eval_args`` for GeoBench, with its generation settings added.

    Returns the model, data, GeoBench, finetuning and generating arguments, the arguments for
    LLaMA-Factory's ``ChatModel`` and the config as given. Decoding is greedy unless ``do_sample`` is set.
    """
    from_file = args is None and len(sys.argv) > 1 and sys.argv[1].endswith((".yaml", ".yml", ".json"))
    source = sys.argv[1] if from_file else "arguments"
    raw = read_args(args)
    parser = HfArgumentParser(_EVAL_ARGS)
    if isinstance(raw, list):
        namespace, unknown = parser.parse_known_args(raw)
        if unknown:
            raise ValueError(f"Unknown arguments: {' '.join(unknown)}; see `llamafactory-cli eval -h`.")
        given = {arg[2:].split("=")[0].replace("-", "_") for arg in raw if arg.startswith("--")}
        raw = {k: v for k, v in vars(namespace).items() if k in given}
    else:
        given = set(raw)
        known = _field_names(*_EVAL_ARGS)
        for key in sorted(given - known):
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.75)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"{source}: unknown key `{key}`.{hint} See `llamafactory-cli eval -h` for all keys.")

    try:
        model_args, data_args, eval_args, finetuning_args, generating_args = parser.parse_dict(raw)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{source}: {err}") from None

    _set_transformers_logging()
    _verify_model_args(model_args, data_args, finetuning_args)
    _check_extra_dependencies(model_args, finetuning_args)
    model_args.device_map = "auto"
    transformers.set_seed(eval_args.seed)
    if "do_sample" not in given:
        generating_args.do_sample = False

    infer_args = {k: v for k, v in raw.items() if k in _field_names(*_INFER_ARGS)}
    infer_args["do_sample"] = generating_args.do_sample
    return model_args, data_args, eval_args, finetuning_args, generating_args, infer_args, raw


class GeoBenchEvaluator:
    def __init__(self, args: dict[str, Any] | list[str] | None = None) -> None:
        (
            self.model_args,
            self.data_args,
            self.eval_args,
            self.finetuning_args,
            self.generating_args,
            self.infer_args,
            self.config,
        ) = get_geobench_args(args)
        self.save = SaveDir(self.eval_args.save_dir)
        self.save.check(self.eval_args.overwrite_save_dir)
        self.others = [read_results(path) for path in self.eval_args.compare_with or []]
        self.folder = resolve_task_dir(
            self.eval_args.task_dir, self.model_args.cache_dir, self.model_args.hf_hub_token
        )
        self.layout = detect_layout(self.folder)
        self.tasks = expand(self.eval_args.task_names, self.layout, self.folder)
        self.judge = self._make_judge()
        self._check_plan()
        self.questions = {task.name: task.load(self.folder, self.layout) for task in self.tasks}

    def _make_judge(self) -> Judge | None:
        args = self.eval_args
        if not args.judge_api_base:
            return None
        return Judge(
            api_base=args.judge_api_base,
            model=args.judge_model,
            criteria=args.criteria,
            api_key_env=args.judge_api_key_env,
            max_retries=args.judge_max_retries,
            max_tokens=args.judge_max_tokens,
            timeout=args.judge_timeout,
        )

    @property
    def likelihood(self) -> bool:
        return self.eval_args.eval_mode == "likelihood" and any(task.objective for task in self.tasks)

    @property
    def needs_generation(self) -> bool:
        return self.eval_args.eval_mode == "generate" or any(not task.objective for task in self.tasks)

    def _check_plan(self) -> None:
        if self.likelihood and self.model_args.infer_backend != EngineName.HF:
            raise ValueError(
                f"`eval_mode: likelihood` runs the model with transformers, but `infer_backend` is "
                f"`{self.model_args.infer_backend}`: use `infer_backend: huggingface`, or `eval_mode: generate`."
            )
        for task in self.tasks:
            if task.judge_only and self.judge is None:
                raise ValueError(
                    f"`{task.name}` has no reference answers and is scored by a judge only: set `judge_api_base` "
                    "and `judge_model`, or leave it out of `task`."
                )
        if any(not task.objective and not task.judge_only for task in self.tasks):
            from llamafactory.extras.packages import is_jieba_available, is_rouge_available
            from transformers.utils import is_nltk_available

            if not (is_jieba_available() and is_nltk_available() and is_rouge_available()):
                raise ValueError(
                    "ROUGE/BLEU scoring needs jieba, nltk and rouge-chinese: pip install 'geo-factory[metrics]'."
                )

    def _fingerprint(self) -> dict[str, Any]:
        """What the predictions depend on; a resumed run must match it (batch size is not part of it)."""
        m, args = self.model_args, self.eval_args
        files = sorted({task.file_in(self.layout) for task in self.tasks})
        fingerprint = {
            "model_name_or_path": m.model_name_or_path,
            "adapter_name_or_path": m.adapter_name_or_path,
            "model_revision": m.model_revision,
            "quantization_bit": m.quantization_bit,
            "quantization_method": m.quantization_method,
            "infer_dtype": m.infer_dtype,
            "template": self.data_args.template,
            "default_system": self.data_args.default_system,
            "eval_mode": args.eval_mode,
            "n_shot": args.n_shot,
            "seed": args.seed,
            "lang": args.lang,
            "layout": self.layout,
            "data_sha256": {f: hashlib.sha256((self.folder / f).read_bytes()).hexdigest() for f in files},
        }
        if self.needs_generation:
            fingerprint["infer_backend"] = m.infer_backend
            fingerprint["generation"] = self.generating_args.to_dict()
        if self.judge is not None:
            fingerprint["judge"] = {
                "api_base": args.judge_api_base,
                "model": args.judge_model,
                "criteria": args.criteria,
                "max_tokens": args.judge_max_tokens,
            }
        return json.loads(json.dumps(fingerprint, default=str))

    @cached_property
    def chat_model(self) -> ChatModel:
        from llamafactory.chat import ChatModel

        return ChatModel(self.infer_args)

    @cached_property
    def scorer(self) -> LikelihoodScorer:
        if self.needs_generation:  # the Hugging Face engine already holds the model: score with it too
            engine = self.chat_model.engine
            return LikelihoodScorer(engine.model, engine.tokenizer, engine.template, self.eval_args.batch_size)

        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.model import load_model, load_tokenizer

        tokenizer = load_tokenizer(self.model_args)["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, self.data_args)
        model = load_model(tokenizer, self.model_args, self.finetuning_args)
        return LikelihoodScorer(model, tokenizer, template, self.eval_args.batch_size)

    def run(self) -> dict[str, Any]:
        done = self.save.open(self._fingerprint(), self.eval_args.overwrite_save_dir)
        limit = self.data_args.max_samples
        records: dict[str, list[dict[str, Any]]] = {}
        for task in self.tasks:
            selected = self.questions[task.name][:limit] if limit else self.questions[task.name]
            records[task.name] = [done[(task.name, q.id)] for q in selected if (task.name, q.id) in done]
            todo = [q for q in selected if (task.name, q.id) not in done]
            with tqdm(total=len(selected), initial=len(selected) - len(todo), desc=task.name, unit="q") as bar:
                for batch in self._score(task, todo) if todo else ():
                    self.save.append(batch)
                    records[task.name] += batch
                    bar.update(len(batch))

        results = self._results(records)
        self.save.finish(results, self.others)
        print(format_table(results))
        logger.info(f"GeoBench results written to {self.save.path}.")
        return results

    def _score(self, task: Task, todo: list[Any]):
        args, questions = self.eval_args, self.questions[task.name]
        if not task.objective:
            return self._open_records(todo)
        if args.eval_mode == "likelihood":
            return likelihood_records(self.scorer, questions, todo, args.n_shot, args.seed, args.lang)
        return generate_records(self.chat_model, questions, todo, args.n_shot, args.seed, args.lang, args.batch_size)

    def _open_records(self, todo: list[OpenQuestion]):
        size = self.eval_args.batch_size
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            replies = generate(self.chat_model, [open_messages(q, self.eval_args.lang) for q in batch], size)
            records = [
                {"task": q.task, "id": q.id, "question": q.question, "gold": q.reference, "prediction": reply}
                for q, reply in zip(batch, replies)
            ]
            for q, record in zip(batch, records):
                if q.reference is not None:
                    record["scores"] = reference_scores(
                        self.chat_model.engine.tokenizer, record["prediction"], q.reference
                    )
            if self.judge is not None:
                with ThreadPoolExecutor(max_workers=size) as pool:
                    verdicts = list(
                        pool.map(lambda r: self.judge.score(r["question"], r["gold"], r["prediction"]), records)
                    )
                for record, verdict in zip(records, verdicts):
                    record["judge"], record["judge_attempts"] = verdict["scores"], verdict["attempts"]
                    if verdict["scores"] is None:
                        record["judge_last_reply"] = verdict["last_reply"]
            yield records

    def _results(self, records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        args, m = self.eval_args, self.model_args
        tasks = {}
        for task in self.tasks:
            source = str(self.folder / task.file_in(self.layout))
            if task.objective:
                summary = summarize_objective(task, self.questions[task.name], records[task.name], source)
                summary.update(eval_mode=args.eval_mode, n_shot=args.n_shot, seed=args.seed, lang=args.lang)
            else:
                summary = summarize_open(task, self.questions[task.name], records[task.name], source)
            tasks[task.name] = summary
        if all(name in tasks for name in AVERAGE_OF):
            accuracies = [tasks[name]["accuracy"] for name in AVERAGE_OF]
            tasks[AVERAGE] = {
                "kind": "average",
                "description": "mean of the NPEE and APStudy accuracies (JiuZhou's headline)",
                "metric": "accuracy",
                "accuracy": None if None in accuracies else round(sum(accuracies) / len(accuracies), 4),
                "of": list(AVERAGE_OF),
            }

        adapters = m.adapter_name_or_path or []
        name = " + ".join(
            [m.model_name_or_path.rstrip("/").split("/")[-1], *(a.rstrip("/").split("/")[-1] for a in adapters)]
        )
        notes = [NO_DEV_SPLIT]
        if self.data_args.max_samples:
            notes.append(
                f"Only the first {self.data_args.max_samples} questions of each task were scored (`max_samples`)."
            )
        return {
            "model": {
                "name": name,
                "model_name_or_path": m.model_name_or_path,
                "adapter_name_or_path": m.adapter_name_or_path,
                "template": self.data_args.template,
                "quantization_bit": m.quantization_bit,
                "infer_backend": str(m.infer_backend),
            },
            "settings": {
                "tasks": args.task_names,
                "eval_mode": args.eval_mode,
                "n_shot": args.n_shot,
                "seed": args.seed,
                "lang": args.lang,
                "max_samples": self.data_args.max_samples,
                "batch_size": args.batch_size,
                "task_dir": str(self.folder),
                "layout": self.layout,
                "judge": None
                if self.judge is None
                else {
                    "api_base": args.judge_api_base,
                    "model": args.judge_model,
                    "criteria": args.criteria,
                    "api_key_env": args.judge_api_key_env,
                },
            },
            "tasks": tasks,
            "notes": notes,
            "config": {k: v for k, v in self.config.items() if not _SECRET_KEY.search(k)},
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


def run_eval(args: dict[str, Any] | list[str] | None = None) -> dict[str, Any]:
    return GeoBenchEvaluator(args).run()
