"""Evaluation for ``llamafactory-cli eval`` and during training: GeoBench (K2's geoscience benchmark) and the
general benchmarks, on one task registry, one likelihood scorer and one set of result files.

One module per concept: ``tasks`` (the registry), ``data`` (GeoBench's two published layouts), ``general``
(MMLU, CMMLU and C-Eval in LLaMA-Factory's layout), ``prompts``, ``scoring``
(likelihood and generation), ``subjective`` (reference metrics and judge), ``report`` (save_dir files),
``evaluator`` (the command) and ``callback`` (the in-training hook).
"""


def run_eval() -> None:
    """Entry point of ``llamafactory-cli eval``; imported lazily, the argument classes import this package."""
    from .evaluator import run_eval as _run_eval

    _run_eval()


__all__ = ["run_eval"]
