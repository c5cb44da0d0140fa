from dataclasses import dataclass, field

from .checks import check_bool, check_int, check_task_dir


@dataclass
class DecontaminationArguments:
    """``geobench_decontaminate`` in a ``llamafactory-cli train`` yaml: GeoBench kept out of the training data."""

    geobench_decontaminate: bool = field(
        default=False,
        metadata={
            "help": "Drop every training row that shares a long n-gram with a GeoBench question, option set or "
            "reference answer; counts and matched GeoBench ids go to output_dir/geobench_decontamination.json."
        },
    )
    geobench_decontaminate_task_dir: str | None = field(
        default=None,
        metadata={
            "help": "GeoBench folder to check against (K2 JSON or JiuZhou CSV layout), as `task_dir` of "
            "`llamafactory-cli eval`; unset: `geobench_task_dir` (the in-training GeoBench folder) if set, else the hub "
            "dataset `daven3/geobench`."
        },
    )
    geobench_decontaminate_ngram: int = field(
        default=13,
        metadata={"help": "Shared tokens that make a row contaminated: words, or characters for Chinese."},
    )

    def __post_init__(self):
        check_bool("geobench_decontaminate", self.geobench_decontaminate)
        check_int("geobench_decontaminate_ngram", self.geobench_decontaminate_ngram, 1)
        check_task_dir("geobench_decontaminate_task_dir", self.geobench_decontaminate_task_dir)
