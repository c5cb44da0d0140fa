"""The evaluation's arguments: ``llamafactory-cli eval`` (:class:`EvalArguments`) and the in-training hook
(:class:`GeoBenchTrainArguments`). They check values alone; task names, folders and K2's files are checked when
``geo_factory.eval.plan`` binds the tasks, right after parsing and before any model loads.
"""

import os
import re
from dataclasses import dataclass, field
from typing import Literal

from .checks import (
    ConfigError,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_str,
    check_task_dir,
    split,
)


DEFAULT_CRITERIA = ("accuracy", "completeness", "clarity")  # what the judge scores; see geo_factory.eval.subjective
EvalMode = Literal["likelihood", "generate"]
Lang = Literal["en", "zh"]
PromptStyle = Literal["default", "k2", "lm_eval"]
LM_EVAL_PREFIX = "lm_eval:"  # a `task` entry run by lm-evaluation-harness
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class GeoBenchTrainArguments:
    """GeoBench inside ``llamafactory-cli train``: objective tasks in likelihood mode every N steps."""

    geobench_eval_steps: int = field(
        default=0,
        metadata={"help": "Run GeoBench every this many optimizer steps and log `geobench_<task>_acc` (0: never)."},
    )
    geobench_tasks: str = field(
        default="geobench",
        metadata={
            "help": "Comma-separated objective tasks to run during training: geobench_npee, geobench_npee_tf, "
            "geobench_apstudy, geobench (all three and the NPEE/APStudy average), the general benchmarks mmlu_test, "
            "cmmlu_test, ceval_validation (read from `geobench_general_task_dir`), or jiuzhou (NPEE, APStudy, "
            "their average, C-Eval, CMMLU, MMLU). Logged as `geobench_<task>_acc` (`geobench_mmlu_test_acc`). "
            "lm-evaluation-harness tasks as `lm_eval:NAME` (each task's own few-shot setting), logged as "
            "`geobench_lm_eval_<task>_<metric>` (`geobench_lm_eval_arc_easy_acc`)."
        },
    )
    geobench_lm_eval_include_path: str | None = field(
        default=None,
        metadata={"help": "A folder of lm-evaluation-harness task yamls for `lm_eval:` names in `geobench_tasks`."},
    )
    geobench_task_dir: str | None = field(
        default=None,
        metadata={
            "help": "GeoBench data folder (K2 JSON or JiuZhou CSV layout); unset: the hub dataset `daven3/geobench`."
        },
    )
    geobench_general_task_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the general benchmarks in LLaMA-Factory's evaluation layout (mmlu/, cmmlu/, ceval/, each "
            "NAME.zip + mapping.json); required when `geobench_tasks` names one."
        },
    )
    geobench_n_shot: int = field(
        default=5,
        metadata={
            "help": "Exemplars per question during training (general benchmarks: the first N of the subject's dev split)."
        },
    )
    geobench_seed: int = field(
        default=42, metadata={"help": "Seed of the exemplar draw and of the `geobench_max_samples` subset."}
    )
    geobench_lang: str | None = field(
        default=None,
        metadata={
            "help": "Prompt wording: `en` or `zh`; unset: each task's own (GeoBench and MMLU en, C-Eval and CMMLU zh)."
        },
    )
    geobench_max_samples: int | None = field(
        default=None,
        metadata={
            "help": "Score a random subset of N questions of each task (of each subject, for the general benchmarks), "
            "drawn by `geobench_seed` (speed during training); unset: all."
        },
    )
    geobench_batch_size: int = field(default=8, metadata={"help": "Questions per forward pass."})

    def __post_init__(self):
        check_int("geobench_eval_steps", self.geobench_eval_steps, 0)
        if not self.geobench_eval_steps:
            return
        check_str("geobench_tasks", self.geobench_tasks)
        check_task_dir("geobench_task_dir", self.geobench_task_dir)
        check_str("geobench_general_task_dir", self.geobench_general_task_dir, optional=True)
        check_str("geobench_lm_eval_include_path", self.geobench_lm_eval_include_path, optional=True)
        check_int("geobench_n_shot", self.geobench_n_shot, 0)
        check_int("geobench_seed", self.geobench_seed)
        check_int("geobench_max_samples", self.geobench_max_samples, 1, optional=True)
        check_int("geobench_batch_size", self.geobench_batch_size, 1)
        if self.geobench_lang is not None:
            check_choice("geobench_lang", self.geobench_lang, Lang)

    @property
    def task_names(self) -> list[str]:
        """The native tasks of `geobench_tasks` (its `lm_eval:` names are :attr:`harness_task_names`)."""
        return [name for name in split(self.geobench_tasks) if not name.startswith(LM_EVAL_PREFIX)]

    @property
    def harness_task_names(self) -> list[str]:
        return [name[len(LM_EVAL_PREFIX) :] for name in split(self.geobench_tasks) if name.startswith(LM_EVAL_PREFIX)]


@dataclass
class EvalArguments:
    """``llamafactory-cli eval``: GeoBench tasks, scoring mode, outputs.

    The number of questions per task is LLaMA-Factory's own ``max_samples``; the inference engine is its
    ``infer_backend`` (used for generation; likelihood scoring always runs the model in this process).
    """

    task: str = field(
        default="geobench",
        metadata={
            "help": "Comma-separated tasks: geobench_npee, geobench_npee_tf, geobench_apstudy, geobench "
            "(those three and the NPEE/APStudy average), geobench_subjective (geobench_npee_noun, "
            "geobench_npee_completion, geobench_npee_qa, geobench_npee_discussion, geobench_open); the general "
            "benchmarks mmlu_test, cmmlu_test, ceval_validation (LLaMA-Factory's names); jiuzhou (NPEE, APStudy, "
            "their average, C-Eval, CMMLU, MMLU: JiuZhou's table); lm-evaluation-harness tasks and groups as "
            "`lm_eval:NAME` (e.g. `lm_eval:arc_easy`, or a task of `lm_eval_include_path`), beside the others."
        },
    )
    lm_eval_include_path: str | None = field(
        default=None,
        metadata={
            "help": "A folder of lm-evaluation-harness task yamls of your own (the harness's `--include_path`, "
            "`!function` helpers included), for `lm_eval:NAME` tasks."
        },
    )
    apply_chat_template: bool = field(
        default=False,
        metadata={
            "help": "`lm_eval:` tasks: write each prompt as a conversation in the run's `template` (the harness's "
            "`--apply_chat_template`)."
        },
    )
    fewshot_as_multiturn: bool = field(
        default=False,
        metadata={
            "help": "`lm_eval:` tasks with `apply_chat_template`: the few-shot examples as turns of the conversation "
            "(the harness's `--fewshot_as_multiturn`)."
        },
    )
    system_instruction: str | None = field(
        default=None,
        metadata={
            "help": "`lm_eval:` tasks: a system instruction before each prompt (the harness's `--system_instruction`)."
        },
    )
    log_samples: bool = field(
        default=False,
        metadata={
            "help": "`lm_eval:` tasks: also write the harness's own files (results_*.json, samples_<task>_*.jsonl) "
            "under `save_dir`/lm_eval/, in its layout."
        },
    )
    task_dir: str | None = field(
        default=None,
        metadata={
            "help": "GeoBench folder (K2 JSON or JiuZhou CSV layout; unset: the hub dataset `daven3/geobench`); with "
            "general benchmarks in `task`, their folder in LLaMA-Factory's layout (mmlu/, cmmlu/, ceval/, each "
            "NAME.zip + mapping.json), and GeoBench's is `geobench_task_dir`."
        },
    )
    geobench_task_dir: str | None = field(
        default=None,
        metadata={
            "help": "GeoBench's folder when `task` mixes GeoBench and the general benchmarks (e.g. `jiuzhou`); unset: "
            "the hub dataset `daven3/geobench`."
        },
    )
    save_dir: str | None = field(
        default=None,
        metadata={"help": "Required. Where results.json, predictions.jsonl, results.log and geobench.png go."},
    )
    overwrite_save_dir: bool = field(
        default=False, metadata={"help": "Start over in a `save_dir` that holds a finished or unfinished run."}
    )
    eval_mode: str = field(
        default="likelihood",
        metadata={
            "help": "Objective scoring: `likelihood` (probability of each option as the next token, K2's method) "
            "or `generate` (generate with `infer_backend`, then extract the answer)."
        },
    )
    n_shot: int = field(
        default=5,
        metadata={
            "help": "Exemplars per objective question. GeoBench: drawn from the same task (no dev split), at most the "
            "smallest task's size minus one. General benchmarks: the first N of the subject's dev split (at most 5). "
            "Dropped from the front where a prompt would not fit the model's context."
        },
    )
    seed: int = field(default=42, metadata={"help": "Seed of the exemplar draw and of the `max_samples` subset."})
    lang: str = field(
        default="en",
        metadata={
            "help": "Prompt wording: `en` or `zh`, for every task. Not given: GeoBench and MMLU in English, C-Eval and "
            "CMMLU in Chinese (their own wording)."
        },
    )
    prompt_style: str = field(
        default="default",
        metadata={
            "help": "Objective prompts: `default` (LLaMA-Factory's protocol: the chat template, `n_shot` exemplars as "
            "turns), `k2` (K2's raw Alpaca-style prompt with the exemplars of `k2_samples` / `k2_samples_wa`; each "
            "GeoBench objective task scored with and without `The answer is:`, as K2 reports them) or `lm_eval` "
            "(lm-evaluation-harness 0.4's prompts for MMLU, CMMLU, C-Eval and tasks of your own, so that scores "
            "equal the harness's). `k2` and `lm_eval` score likelihoods."
        },
    )
    k2_samples: str | None = field(
        default=None,
        metadata={"help": "With `prompt_style: k2`: K2's `multiple_choice_samples.txt`, read unchanged."},
    )
    k2_samples_wa: str | None = field(
        default=None,
        metadata={"help": "With `prompt_style: k2`: K2's `multiple_choice_samples_wa.txt`, read unchanged."},
    )
    batch_size: int = field(
        default=8, metadata={"help": "Questions per forward pass (likelihood) or concurrent requests (generation)."}
    )
    compare_with: list[str] | None = field(
        default=None, metadata={"help": "Other results.json files to draw side by side in geobench.png."}
    )
    judge_api_base: str | None = field(
        default=None,
        metadata={"help": "OpenAI-compatible endpoint of the judge model, e.g. http://127.0.0.1:8000/v1."},
    )
    judge_model: str | None = field(default=None, metadata={"help": "Judge model name at `judge_api_base`."})
    judge_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Name of the environment variable that holds the judge's API key (never the key itself)."},
    )
    judge_criteria: str = field(
        default=",".join(DEFAULT_CRITERIA),
        metadata={"help": "Comma-separated criteria the judge scores 1-10 (see geo_factory.eval.subjective)."},
    )
    judge_max_retries: int = field(
        default=2, metadata={"help": "Extra attempts after a malformed judge reply before it is counted as failed."}
    )
    judge_max_tokens: int = field(default=128, metadata={"help": "Token limit of a judge reply."})
    judge_timeout: float = field(default=120.0, metadata={"help": "Seconds to wait for one judge reply."})

    def __post_init__(self):
        if not self.save_dir:
            raise ConfigError(
                "save_dir", "`save_dir` is required: the folder that receives results.json and predictions.jsonl."
            )
        check_str("save_dir", self.save_dir)
        check_str("task", self.task)
        check_str("task_dir", self.task_dir, optional=True)
        check_str("geobench_task_dir", self.geobench_task_dir, optional=True)
        check_bool("overwrite_save_dir", self.overwrite_save_dir)
        check_str("lm_eval_include_path", self.lm_eval_include_path, optional=True)
        check_str("system_instruction", self.system_instruction, optional=True)
        for key in ("apply_chat_template", "fewshot_as_multiturn", "log_samples"):
            check_bool(key, getattr(self, key))
        if self.fewshot_as_multiturn and not self.apply_chat_template:
            raise ConfigError(
                "fewshot_as_multiturn", "`fewshot_as_multiturn: true` needs `apply_chat_template: true`."
            )
        check_choice("eval_mode", self.eval_mode, EvalMode)
        check_choice("lang", self.lang, Lang)
        check_int("n_shot", self.n_shot, 0)
        check_int("seed", self.seed)
        check_int("batch_size", self.batch_size, 1)
        self._check_style()
        check_int("judge_max_retries", self.judge_max_retries, 0)
        check_int("judge_max_tokens", self.judge_max_tokens, 1)
        check_number("judge_timeout", self.judge_timeout, 0)
        for key in ("judge_api_base", "judge_model"):
            check_str(key, getattr(self, key), optional=True)
        check_str("judge_api_key_env", self.judge_api_key_env)
        check_str("judge_criteria", self.judge_criteria)
        if isinstance(self.compare_with, str):
            self.compare_with = split(self.compare_with)
        if self.compare_with is not None and not (
            isinstance(self.compare_with, list) and all(isinstance(path, str) for path in self.compare_with)
        ):
            raise ConfigError(
                "compare_with", f"`compare_with` must be a list of results.json paths, got {self.compare_with!r}."
            )

        for path in self.compare_with or []:
            if not os.path.isfile(path):
                raise ConfigError(
                    "compare_with",
                    f"`compare_with` names {path}, which is not a file (expected another results.json).",
                )

        if bool(self.judge_api_base) != bool(self.judge_model):
            raise ConfigError(
                "judge_api_base",
                "`judge_api_base` and `judge_model` go together: set both to use a judge, or neither.",
            )

        if self.judge_api_base and not re.match(r"^https?://", self.judge_api_base):
            raise ConfigError(
                "judge_api_base", f"`judge_api_base: {self.judge_api_base}` must be an http:// or https:// URL."
            )

        if not _ENV_NAME.match(self.judge_api_key_env):
            raise ConfigError(
                "judge_api_key_env",
                f"`judge_api_key_env` must name an environment variable (letters, digits, _), not hold a key; "
                f"got a value of {len(self.judge_api_key_env)} characters.",
            )

        if not split(self.judge_criteria):
            raise ConfigError("judge_criteria", "`judge_criteria` must name at least one criterion.")

    @property
    def task_names(self) -> list[str]:
        """The native tasks of `task` (its `lm_eval:` names are :attr:`harness_task_names`)."""
        return [name for name in split(self.task) if not name.startswith(LM_EVAL_PREFIX)]

    @property
    def harness_task_names(self) -> list[str]:
        """lm-evaluation-harness names of `task`, without their `lm_eval:` prefix."""
        return [name[len(LM_EVAL_PREFIX) :] for name in split(self.task) if name.startswith(LM_EVAL_PREFIX)]

    @property
    def criteria(self) -> list[str]:
        return split(self.judge_criteria)

    def _check_style(self) -> None:
        """K2's files go with `prompt_style: k2`, which scores likelihoods; the files are read when tasks bind."""
        check_choice("prompt_style", self.prompt_style, PromptStyle)
        for key in ("k2_samples", "k2_samples_wa"):
            check_str(key, getattr(self, key), optional=True)
            if self.prompt_style != "k2" and getattr(self, key) is not None:
                raise ConfigError(key, f"`{key}` is read with `prompt_style: k2` only; set it, or remove `{key}`.")
        if self.prompt_style != "default" and self.eval_mode != "likelihood":
            raise ConfigError(
                "eval_mode",
                f"`prompt_style: {self.prompt_style}` scores option likelihoods: use `eval_mode: likelihood`.",
            )


GeoBenchArguments = EvalArguments  # the name before the evaluation package ran more than GeoBench
