from dataclasses import dataclass, field


@dataclass
class GeoBenchTrainArguments:
    """GeoBench inside ``llamafactory-cli train``: objective tasks in likelihood mode every N steps."""

    geobench_eval_steps: int = field(
        default=0, metadata={"help": "Run GeoBench every this many optimizer steps (0: never)."}
    )
    geobench_tasks: str = field(
        default="geobench_npee,geobench_npee_tf,geobench_apstudy",
        metadata={"help": "Comma-separated objective GeoBench tasks to run during training."},
    )
    geobench_task_dir: str | None = field(
        default=None,
        metadata={"help": "GeoBench data folder (K2 JSON or JiuZhou CSV layout); default: hub `daven3/geobench`."},
    )
    geobench_n_shot: int = field(default=5, metadata={"help": "Exemplars per question during training."})
    geobench_max_samples: int | None = field(
        default=None, metadata={"help": "Score only the first N questions of each task (speed during training)."}
    )
    geobench_batch_size: int = field(default=8, metadata={"help": "Questions per forward pass."})


@dataclass
class GeoBenchArguments:
    """``llamafactory-cli eval``: GeoBench tasks, scoring mode, outputs."""

    task: str = field(
        default="geobench",
        metadata={
            "help": "geobench_npee, geobench_npee_tf, geobench_apstudy, geobench (the objective suite) or "
            "geobench_subjective; comma-separated for several."
        },
    )
    task_dir: str | None = field(
        default=None,
        metadata={"help": "GeoBench folder: K2 JSON or JiuZhou CSV layout; default: hub dataset `daven3/geobench`."},
    )
    save_dir: str | None = field(default=None, metadata={"help": "Where results.json and friends are written."})
    overwrite_save_dir: bool = field(default=False, metadata={"help": "Overwrite a finished `save_dir`."})
    eval_mode: str = field(
        default="likelihood",
        metadata={"help": "Objective scoring: `likelihood` (option-letter probability, K2's method) or `generate`."},
    )
    n_shot: int = field(default=5, metadata={"help": "Exemplars per question, drawn from the same task."})
    seed: int = field(default=42, metadata={"help": "Seed of the exemplar draw."})
    lang: str = field(default="en", metadata={"help": "Prompt wording: `en` or `zh`."})
    batch_size: int = field(default=8, metadata={"help": "Questions per forward pass."})
    max_samples: int | None = field(default=None, metadata={"help": "Only the first N questions per task."})
    compare_with: list[str] | None = field(
        default=None, metadata={"help": "Other results.json files to draw side by side in geobench.png."}
    )
    judge_api_base: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible endpoint of the judge model (subjective tasks)."}
    )
    judge_model: str | None = field(default=None, metadata={"help": "Judge model name at `judge_api_base`."})
    judge_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "Environment variable that holds the judge's API key."}
    )
