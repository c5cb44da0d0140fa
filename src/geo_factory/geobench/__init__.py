"""GeoBench (K2's geoscience benchmark) for ``llamafactory-cli eval`` and for training-time evaluation.

One module per concept: ``tasks`` (the registry), ``data`` (both published layouts), ``prompts``, ``scoring``
(likelihood and generation), ``subjective`` (reference metrics and judge), ``report`` (save_dir files),
``evaluator`` (the command) and ``callback`` (the in-training hook).
"""


def run_eval() -> None:
    """Entry point of ``llamafactory-cli eval``; imported lazily, the argument classes import this package."""
    from .evaluator import run_eval as _run_eval

    _run_eval()


__all__ = ["run_eval"]
