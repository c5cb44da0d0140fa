"""``llamafactory-cli eval CONFIG.yaml``: one loop over the plan's tasks, whatever their benchmark family, with
LLaMA-Factory's own argument parsing, model loading (base model, adapters, quantization), chat templates and
inference engines.

Everything is checked before a model is loaded or a file written: the config keys and values, the data
(every row of every requested task), the plan (judge for judge-only tasks, backend for likelihood scoring),
the judge's endpoint and key, every prompt against the model's context (with the tokenizer only), and the
``save_dir`` state. Subjective answers are written as they are generated and judged afterwards, so a run
stopped by the judge resumes with judging only.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
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
from omegaconf import OmegaConf
from tqdm import tqdm
from transformers import HfArgumentParser

from ..hparams import EvalArguments
from ..hparams.checks import ConfigError, check_int, split
from . import plan as planning
from .answers import answer_records
from .distributed import World, shares
from .families.base import BoundTask, Settings, Where
from .families.k2 import load_samples, shown_settings
from .harness_tasks import HarnessOptions, HarnessTasks
from .prompts import Budget
from .report import SaveDir, format_table, question_sets, read_results, run_notes, summarize
from .scoring import Chat, LikelihoodScorer, PromptEncoder, generate, generate_records, likelihood_records
from .styles import protocol
from .subjective import Judge, reference_scores
from .tasks import check_task_names


if TYPE_CHECKING:
    from llamafactory.chat import ChatModel

    from .data import OpenQuestion


logger = logging.get_logger(f"llamafactory.{__name__}")  # under LLaMA-Factory's logger: its format and verbosity

_EVAL_ARGS = [ModelArguments, DataArguments, EvalArguments, FinetuningArguments, GeneratingArguments]
_INFER_ARGS = (ModelArguments, DataArguments, FinetuningArguments, GeneratingArguments)
DEFAULT_TASK_DIR = "evaluation"  # the general benchmarks' folder when `task_dir` is not given and it exists here
_SECRET_KEY = re.compile(r"token|api_key|secret|password", re.IGNORECASE)


def _field_names(*classes: type) -> set[str]:
    return {f.name for cls in classes for f in fields(cls) if f.init}


def get_eval_args(args: dict[str, Any] | list[str] | None = None) -> tuple[Any, ...]:
    """LLaMA-Factory's old ``get_eval_args``, with its generation settings added.

    Returns the model, data, evaluation, finetuning and generating arguments, the arguments for
    LLaMA-Factory's ``ChatModel``, the config as given and ``where(err)``: the yaml file or the command line,
    whichever gave the key a :class:`ConfigError` names. Decoding is greedy unless ``do_sample`` is set.
    """
    from_file = args is None and len(sys.argv) > 1 and sys.argv[1].endswith((".yaml", ".yml", ".json"))
    source = sys.argv[1] if from_file else "arguments"
    on_command_line = set(OmegaConf.to_container(OmegaConf.from_cli(sys.argv[2:]))) if from_file else set()

    def where(err: Exception) -> str:
        """Where the bad value was given: a key overridden on the command line is not the yaml file's fault."""
        key = getattr(err, "key", None)
        return "command line" if key in on_command_line else source

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
        # LLaMA-Factory's own keys that GeoBench uses: `max_samples: -3` would be a Python slice
        check_int("max_samples", data_args.max_samples, 1, optional=True)
        check_int("cutoff_len", data_args.cutoff_len, 1)
        check_int("max_new_tokens", generating_args.max_new_tokens, 1)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where(err)}: {err}") from None

    _set_transformers_logging()
    _verify_model_args(model_args, data_args, finetuning_args)
    _check_extra_dependencies(model_args, finetuning_args)
    model_args.device_map = "auto"
    transformers.set_seed(eval_args.seed)
    if "do_sample" not in given:
        generating_args.do_sample = False

    infer_args = {k: v for k, v in raw.items() if k in _field_names(*_INFER_ARGS)}
    infer_args["do_sample"] = generating_args.do_sample
    return model_args, data_args, eval_args, finetuning_args, generating_args, infer_args, raw, where


get_geobench_args = get_eval_args  # the name before the evaluation package ran more than GeoBench


class Evaluator:
    """Parse, plan, resume, score, judge, report: the same steps for every task of every family."""

    def __init__(self, args: dict[str, Any] | list[str] | None = None, world: World | None = None) -> None:
        self.world = world or World()  # under torchrun: this process's rank; it scores its share of each task
        (
            self.model_args,
            self.data_args,
            self.eval_args,
            self.finetuning_args,
            self.generating_args,
            self.infer_args,
            self.config,
            where,
        ) = get_eval_args(args)
        self.save = SaveDir(self.eval_args.save_dir)
        self.save.check(self.eval_args.overwrite_save_dir)
        self.others = [read_results(path) for path in self.eval_args.compare_with or []]
        try:
            self.plan = self._plan()
            self.harness = self._harness()
        except ConfigError as err:
            raise ValueError(f"{where(err)}: {err}") from None
        for name, why in self.plan.absent.items():
            logger.warning_rank0(f"{name}: {why}.")
        self.judge = self._make_judge()
        self._check_plan()
        self.plan.load()
        self.hashes = self.plan.hashes()
        if self.judge is not None and self.world.main:  # the judge is asked by rank 0 alone
            self.judge.check()
        self.encoder = self._encoder()
        self.context = self._context()
        self.prompts = {task.name: task.prompts(self.encoder, self._budget) for task in self.plan.tasks}
        self.done: dict[tuple[str, int], dict[str, Any]] | None = None

    @property
    def tasks(self) -> list[BoundTask]:
        return self.plan.tasks

    def _plan(self) -> planning.Plan:
        """The tasks of `task`, bound to their folders: GeoBench reads `task_dir`, or `geobench_task_dir` when other
        tasks take `task_dir` (the general benchmarks' archives, or eval_info.json for tasks of the user's own). With
        no `task_dir` and no `./evaluation`, the general benchmarks are read from their hub datasets."""
        args = self.eval_args
        default = DEFAULT_TASK_DIR if Path(DEFAULT_TASK_DIR).is_dir() else None  # LLaMA-Factory's old default
        if not args.task_names and args.harness_task_names:  # `lm_eval:` tasks alone
            return planning.Plan([], {}, Settings(args.n_shot, args.seed, None, self.data_args.max_samples))
        tasks = planning.registry(args.task_dir or default)
        check_task_names(args.task_names, key="task", registry=tasks)
        families = planning.families_of(args.task_names, tasks)
        mixed = "geobench" in families and len(families) > 1
        task_dir = args.task_dir if args.task_dir is not None or families == {"geobench"} else default
        if args.geobench_task_dir is not None and not mixed:
            raise ConfigError(
                "geobench_task_dir",
                "`geobench_task_dir` is GeoBench's folder when `task` mixes GeoBench with other tasks; here "
                + ("`task_dir` is GeoBench's folder." if "geobench" in families else "no GeoBench task is asked."),
            )
        settings = Settings(
            n_shot=args.n_shot,
            seed=args.seed,
            lang=args.lang if "lang" in self.config else None,
            max_samples=self.data_args.max_samples,
            eval_mode=args.eval_mode,
            k2_samples=load_samples(args, self.config, args.task_names),
            protocol=protocol(args.prompt_style, self.config, tasks, args.task_names),
        )
        geobench_dir = ("geobench_task_dir", args.geobench_task_dir) if mixed else ("task_dir", task_dir)
        where = Where(
            {"geobench": geobench_dir, "general": ("task_dir", task_dir), "custom": ("task_dir", task_dir)},
            self.model_args.cache_dir,
            self.model_args.hf_hub_token,
            hub=True,  # no folder at all: the general benchmarks' hub datasets
        )
        return planning.build(args.task_names, settings, where)

    def _harness(self) -> HarnessTasks | None:
        """The `lm_eval:` tasks of `task`, resolved by the harness (names, include path) before a model loads."""
        args = self.eval_args
        if not args.harness_task_names:
            return None
        options = HarnessOptions(
            n_shot=args.n_shot if "n_shot" in self.config else None,  # unset: each task's own `num_fewshot`
            limit=self.data_args.max_samples,
            seed=args.seed,
            apply_chat_template=args.apply_chat_template,
            fewshot_as_multiturn=args.fewshot_as_multiturn,
            system_instruction=args.system_instruction,
            log_samples=args.log_samples,
        )
        return HarnessTasks.resolve(args.harness_task_names, args.lm_eval_include_path, options)

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
        return self.eval_args.eval_mode == "likelihood" and any(not task.generation for task in self.tasks)

    @property
    def needs_generation(self) -> bool:
        return self.eval_args.eval_mode == "generate" or any(task.generation for task in self.tasks)

    def _check_plan(self) -> None:
        if self.harness is not None and self.model_args.infer_backend != EngineName.HF:
            raise ValueError(
                f"`lm_eval:` tasks run the model with transformers, but `infer_backend` is "
                f"`{self.model_args.infer_backend}`: use `infer_backend: huggingface`."
            )
        if self.world.size > 1 and self.needs_generation and self.model_args.infer_backend != EngineName.HF:
            raise ValueError(
                f"`infer_backend: {self.model_args.infer_backend}` spreads one model over the GPUs itself: run it in "
                "one process (unset FORCE_TORCHRUN, or NPROC_PER_NODE=1), or use `infer_backend: huggingface` to "
                "give each process a share of the questions."
            )
        if self.likelihood and self.model_args.infer_backend != EngineName.HF:
            raise ValueError(
                f"`eval_mode: likelihood` runs the model with transformers, but `infer_backend` is "
                f"`{self.model_args.infer_backend}`: use `infer_backend: huggingface`, or `eval_mode: generate`."
            )
        for task in self.tasks:
            if task.task.judge_only and self.judge is None:
                raise ValueError(
                    f"`{task.name}` has no reference answers and is scored by a judge only: set `judge_api_base` "
                    "and `judge_model`, or leave it out of `task`."
                )
            if task.answer_spec is not None and task.answer_spec.type == "judge" and self.judge is None:
                raise ValueError(
                    f"`{task.name}` is scored by the judge against its reference answers (`answer_type: judge`): set "
                    "`judge_api_base` and `judge_model`, or leave it out of `task`."
                )
        overlap = [task for task in self.tasks if task.answer_spec is not None and task.answer_spec.overlap]
        if overlap or any(not task.objective and not task.task.judge_only for task in self.tasks):
            from llamafactory.extras.packages import is_jieba_available, is_rouge_available
            from transformers.utils import is_nltk_available

            if not (is_jieba_available() and is_nltk_available() and is_rouge_available()):
                raise ValueError(
                    "ROUGE/BLEU scoring needs jieba, nltk and rouge-chinese: pip install 'geo-factory[metrics]'."
                )

    def fingerprint(self) -> dict[str, Any]:
        """What the predictions depend on; a resumed run must match it (batch size is not part of it)."""
        m, args = self.model_args, self.eval_args
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
            "layout": self.plan.layout,
            "task_langs": {task.name: task.lang for task in self.tasks},
            "data_sha256": self.hashes,
            "prompt_tokens": None if self.context is None else self.context.tokens,
        }
        for task in self.tasks:
            fingerprint.update(task.fingerprint())
        if self.harness is not None:
            fingerprint["lm_eval"] = self.harness.fingerprint()
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

    def _encoder(self) -> PromptEncoder:
        """The tokenizer and template alone (no model): every prompt is built and measured before a model loads."""
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.model import load_tokenizer

        tokenizer = load_tokenizer(self.model_args)["tokenizer"]
        return PromptEncoder(tokenizer, get_template_and_fix_tokenizer(tokenizer, self.data_args))

    def _context(self) -> Budget | None:
        """The most tokens a prompt (with its answer) may take: the model's positions, or `cutoff_len` if given."""
        from llamafactory.model import load_config

        limits = []
        positions = getattr(load_config(self.model_args).get_text_config(), "max_position_embeddings", None)
        if positions:
            limits.append(Budget(positions, f"the model's context (`max_position_embeddings: {positions}`)"))
        if "cutoff_len" in self.config:
            limits.append(Budget(self.data_args.cutoff_len, f"`cutoff_len: {self.data_args.cutoff_len}`"))
        return min(limits, key=lambda budget: budget.tokens) if limits else None

    def _budget(self, generation: bool) -> Budget | None:
        """A prompt's budget: generation also needs room for `max_new_tokens`."""
        if self.context is None or not generation:
            return self.context
        new = self.generating_args.max_new_tokens
        budget = Budget(self.context.tokens - new, f"{self.context.source} less `max_new_tokens: {new}`")
        if budget.tokens < 1:
            raise ValueError(
                f"`max_new_tokens: {new}` leaves no room for a prompt in {self.context.source}: set it below "
                f"{self.context.tokens}."
            )
        return budget

    @cached_property
    def chat_model(self) -> ChatModel:
        from llamafactory.chat import ChatModel

        return ChatModel(self.infer_args)

    @cached_property
    def scorer(self) -> LikelihoodScorer:
        if self.needs_generation:  # the Hugging Face engine already holds the model: score with it too
            engine = self.chat_model.engine
            return LikelihoodScorer(engine.model, engine.tokenizer, engine.template, self.eval_args.batch_size)

        from llamafactory.model import load_model

        tokenizer, template = self.encoder.tokenizer, self.encoder.template
        model = load_model(tokenizer, self.model_args, self.finetuning_args)
        return LikelihoodScorer(model, tokenizer, template, self.eval_args.batch_size)

    def open(self) -> None:
        """Start or resume ``save_dir``: rank 0 reads and writes it, every rank learns which answers it holds."""
        outcome: dict[tuple[str, int], dict[str, Any]] | ValueError = {}
        if self.world.main:
            try:
                outcome = self.save.open(self.fingerprint(), self.eval_args.overwrite_save_dir)
            except ValueError as err:
                outcome = err
        outcome = self.world.broadcast(outcome)
        if isinstance(outcome, ValueError):
            raise outcome
        self.done = outcome

    def run(self) -> dict[str, Any]:
        if self.done is None:
            self.open()
        done, world = self.done, self.world
        if done:
            unjudged = sum(self._unjudged(record) for record in done.values())
            logger.info_rank0(
                f"Resuming the unfinished run in {self.save.path}: {len(done)} predictions found"
                + (f", {unjudged} of them still to be judged." if unjudged else ".")
            )
        records: dict[str, list[dict[str, Any]]] = {}
        scored = 0
        for task in self.tasks:
            selected = task.selected
            records[task.name] = [done[(task.name, q.id)] for q in selected if (task.name, q.id) in done]
            todo = [(q, p) for q, p in zip(selected, self.prompts[task.name]) if (task.name, q.id) not in done]
            mine = [todo[i] for i in shares([p for _, p in todo], world.size)[world.rank]]
            scored += len(mine)
            initial, main = len(selected) - len(todo), world.main
            with tqdm(total=len(selected), initial=initial, desc=task.name, unit="q", disable=not main) as bar:
                for batch in world.gather(self._score(task, mine) if mine else ()):
                    if world.main:
                        self.save.append(batch)
                        records[task.name] += batch
                        bar.update(len(batch))
            if world.main:
                self._judge(task.name, records[task.name])
                order = {q.id: i for i, q in enumerate(selected)}
                records[task.name].sort(key=lambda record: order[record["id"]])

        per_rank = world.sum([scored if rank == world.rank else 0 for rank in range(world.size)])
        harness = self._run_harness() if self.harness is not None else ({}, [])
        results = self._results(records, per_rank, *harness) if world.main else None
        if world.main:
            self.save.finish(results, self.others, [record for task in records.values() for record in task])
            print(format_table(results))
            logger.info(f"Evaluation results written to {self.save.path}.")
        return world.broadcast(results)

    def _run_harness(self) -> tuple[dict[str, Any], list[str]]:
        """The `lm_eval:` tasks on this run's model, those finished in `save_dir` kept: (summaries, notes)."""
        world = self.world
        finished = self.harness.open(self.save.path, self.eval_args.overwrite_save_dir, world.main)
        finished = self.harness.done = world.broadcast(finished)
        if finished and world.main:
            logger.info(f"lm-evaluation-harness tasks already finished in {self.save.path}: {', '.join(finished)}.")
        lm = None
        if len(finished) < len(self.harness.names):
            from .harness import GeoFactoryLM

            scorer = self.scorer
            length = self.context.tokens if self.context is not None else 2048
            lm = GeoFactoryLM(
                scorer.model,
                scorer.tokenizer,
                scorer.template,
                self.eval_args.batch_size,
                length,
                self.data_args.template,
                world,
            )
        adapters = ",".join(self.model_args.adapter_name_or_path or [])
        model = {"pretrained": self.model_args.model_name_or_path, **({"peft": adapters} if adapters else {})}
        return self.harness.run(lm, model, world.main)

    def _unjudged(self, record: dict[str, Any]) -> bool:
        return self.judge is not None and "question" in record and "judge" not in record

    def _score(self, task: BoundTask, todo: list[tuple[Any, Any]]):
        args = self.eval_args
        questions, prompts = [q for q, _ in todo], [p for _, p in todo]
        if task.answer_spec is not None:  # generated answers, read and matched by the task's answer type

            def replies(conversations: list[list[dict[str, str]]], sampling: dict[str, Any]) -> list[str]:
                return generate(self.chat_model, conversations, args.batch_size, sampling)

            tokenizer = self.chat_model.engine.tokenizer
            return answer_records(task, replies, self.judge, tokenizer, questions, prompts, args.batch_size)
        if not task.objective:
            return self._open_records(questions, prompts)
        if args.eval_mode == "likelihood":
            batches = likelihood_records(self.scorer, questions, prompts)
        else:
            batches = generate_records(self.chat_model, questions, prompts, args.lang, args.batch_size)
        return task.records(batches, questions)

    def _open_records(self, todo: list[OpenQuestion], chats: list[Chat]):
        """Answers with their reference scores, written as they are made; the judge comes after (:meth:`_judge`)."""
        size = self.eval_args.batch_size
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            replies = generate(self.chat_model, [chat.messages for chat in chats[start : start + size]], size)
            records = [
                {"task": q.task, "id": q.id, "question": q.question, "gold": q.reference, "prediction": reply}
                for q, reply in zip(batch, replies)
            ]
            for q, record in zip(batch, records):
                if q.reference is not None:
                    record["scores"] = reference_scores(
                        self.chat_model.engine.tokenizer, record["prediction"], q.reference
                    )
            yield records

    def _judge(self, name: str, records: list[dict[str, Any]]) -> None:
        """Judge the answers not judged yet, in place; each batch's verdicts supersede its answers in the file."""
        pending = [record for record in records if self._unjudged(record)]
        if not pending:
            return
        size = self.eval_args.batch_size
        with (
            tqdm(total=len(records), initial=len(records) - len(pending), desc=f"{name} (judge)", unit="q") as bar,
            ThreadPoolExecutor(max_workers=size) as pool,
        ):
            for start in range(0, len(pending), size):
                batch = pending[start : start + size]
                verdicts = pool.map(lambda r: self.judge.score(r["question"], r["gold"], r["prediction"]), batch)
                for record, verdict in zip(batch, verdicts):
                    record["judge"], record["judge_attempts"] = verdict["scores"], verdict["attempts"]
                    if verdict["scores"] is None:
                        record["judge_last_reply"] = verdict["last_reply"]
                self.save.append(batch)
                bar.update(len(batch))

    def _results(
        self,
        records: dict[str, list[dict[str, Any]]],
        per_rank: list[int],
        harness: dict[str, Any] | None = None,
        harness_notes: list[str] | None = None,
    ) -> dict[str, Any]:
        args, m = self.eval_args, self.model_args
        tasks = {**summarize(self.plan, records, self.hashes), **(harness or {})}
        notes = [*run_notes(self.plan, tasks), *(harness_notes or [])]
        data = self.plan.folders() if self.plan.bindings else self.harness.folders()
        differ = question_sets({"tasks": tasks, "settings": data}, self.others)
        if differ:
            notes.append(
                f"`compare_with` runs scored other questions (other data or another subset) for: {', '.join(differ)}; "
                "their bars are not comparable."
            )
        shown = shown_settings(args.n_shot, self.plan.settings.k2_samples)
        adapters = m.adapter_name_or_path or []
        name = " + ".join(
            [m.model_name_or_path.rstrip("/").split("/")[-1], *(a.rstrip("/").split("/")[-1] for a in adapters)]
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
                "tasks": split(args.task),
                "eval_mode": args.eval_mode,
                "n_shot": shown["n_shot"],
                "seed": args.seed,
                "lang": ",".join(sorted({task.lang for task in self.tasks})),  # what ran, not the key's default
                "prompt_style": args.prompt_style,
                "k2_samples": shown["k2_samples"],
                "max_samples": self.data_args.max_samples,
                "batch_size": args.batch_size,
                "world_size": self.world.size,
                **data,
                "prompt_limit": None if self.context is None else self.context.source,
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
            "absent": self.plan.absent,
            "scored_per_rank": per_rank,  # questions each process scored in this run (resumed ones not counted)
            "compared_on_other_questions": differ,
            "notes": notes,
            "config": {k: v for k, v in self.config.items() if not _SECRET_KEY.search(k)},
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


GeoBenchEvaluator = Evaluator  # the name before the evaluation package ran more than GeoBench


def run_eval(args: dict[str, Any] | list[str] | None = None) -> dict[str, Any]:
    return Evaluator(args).run()
