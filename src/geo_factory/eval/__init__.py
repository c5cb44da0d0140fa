"""Evaluation for ``llamafactory-cli eval`` and during training: GeoBench, K2's protocol and the general benchmarks,
one loop over benchmark families with one likelihood scorer and one set of result files.

One module per concept: ``tasks`` (the registry: a task is its family and files), ``families`` (one module per
kind of benchmark behind one protocol: ``geobench``, ``k2``, ``general``, ``custom``), ``plan`` (names bound to
families, once, for every caller), ``data`` (the question types and the data error), ``prompts`` (wording and
exemplar draws), ``styles`` (prompt protocols), ``scoring`` (likelihood and generation), ``subjective`` (reference
metrics and judge), ``report`` (save_dir files, summaries, table, plot), ``evaluator`` (the command),
``distributed`` (each process's share of the questions, and their gathering), ``callback`` (the in-training hook),
``lm_eval_export`` (GeoBench as an lm-evaluation-harness task folder) and ``lm_eval_task_utils`` (that folder's
loader).
"""

import os
import sys


def run_eval() -> None:
    """Entry point of ``llamafactory-cli eval`` and of each process torchrun starts for it.

    As ``train``: with ``FORCE_TORCHRUN=1``, or several accelerators here, this process checks the whole
    configuration (no model loads), then starts torchrun, one process per device, and exits with its status.
    """
    from .distributed import World, join, launch, leave, wants_torchrun

    if "WORLD_SIZE" not in os.environ and wants_torchrun():
        _checked(World(), resume=False)  # a mistake is one line here, before N processes start; nothing written
        sys.exit(launch(sys.argv[1:]))
    world = join()
    _checked(world).run()
    leave()  # on an error the process exits, and torchrun stops the others


def _checked(world, resume: bool = True):
    """The evaluator, every check passed. A configuration the user must fix (a bad key or value, data that cannot be
    read, a finished ``save_dir``) is said in one line, by the first process, and exits 2, as ``geo-factory``
    commands do."""
    from .evaluator import Evaluator

    try:
        evaluator = Evaluator(world=world)
        if resume:
            evaluator.open()
        elif not evaluator.eval_args.overwrite_save_dir:
            evaluator.save.check_resumable(evaluator.fingerprint())
    except ValueError as err:
        if world.main:
            print(f"llamafactory-cli eval: error: {err}", file=sys.stderr)
        sys.exit(2)
    return evaluator


__all__ = ["run_eval"]
