"""Evaluation for ``llamafactory-cli eval`` and during training: GeoBench, K2's protocol and the general benchmarks,
one loop over benchmark families with one likelihood scorer and one set of result files.

One module per concept: ``tasks`` (the registry: a task is its family and files), ``families`` (one module per
kind of benchmark behind one protocol: ``geobench``, ``k2``, ``general``), ``plan`` (names bound to families,
once, for every caller), ``data`` (the question types and the data error), ``prompts`` (wording and exemplar
draws), ``scoring`` (likelihood and generation), ``subjective`` (reference metrics and judge), ``report``
(save_dir files, summaries, table, plot), ``evaluator`` (the command), ``callback`` (the in-training hook),
``lm_eval_export`` (GeoBench as an lm-evaluation-harness task folder) and ``lm_eval_task_utils`` (that folder's
loader).
"""

import sys


def run_eval() -> None:
    """Entry point of ``llamafactory-cli eval``. A configuration the user must fix (a bad key or value, data that
    cannot be read, a finished ``save_dir``) is said in one line and exits 2, as ``geo-factory`` commands do."""
    from .evaluator import Evaluator

    try:
        evaluator = Evaluator()
    except ValueError as err:
        print(f"llamafactory-cli eval: error: {err}", file=sys.stderr)
        sys.exit(2)
    evaluator.run()


__all__ = ["run_eval"]
