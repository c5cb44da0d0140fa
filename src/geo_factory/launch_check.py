"""``llamafactory-cli train`` under torchrun: geo-factory's configuration errors, checked once before it starts.

LLaMA-Factory's launcher starts torchrun for ``train`` (``FORCE_TORCHRUN=1``, or several accelerators here), and
every rank parses the configuration: a bad ``geobench_*`` / ``tspt_*`` value or a missing benchmark file would be
each rank's traceback, torchrun's ChildFailedError report and the launcher's CalledProcessError. So the launching
process first has the configuration parsed as a rank parses it (LLaMA-Factory's ``_parse_train_args``, which
:mod:`geo_factory.hooks` extends with our checks) and says a ConfigError or EvalDataError in one line, exit 2, as
without torchrun.

Why in a child process: parsing builds ``Seq2SeqTrainingArguments``, whose ``__post_init__`` sets up the device
(accelerate's ``PartialState``; DeepSpeed's with ``deepspeed`` set), which in the launching process would hold a
CUDA context for the whole run. The child sees no CUDA device, parses with ``use_cpu`` and without ``deepspeed``,
``fsdp``, ``fsdp_config`` and ``tf32`` (device settings none of our checks reads), and exits; its output is shown
only when it is our error. Anything else that fails there (LLaMA-Factory's or transformers' own errors) is left to
the real run, unchanged, and so is every error raised after parsing (as ``load_model``'s adapter check). The child
is one process: a check that depends on the world size (TSPT's token budget per optimizer step) fails here only if
it fails on one process; otherwise the ranks report it as before. Cost: one interpreter start that imports
LLaMA-Factory's hparams (transformers, peft, datasets), as each rank does; parsing and our checks take 0.2 s of it
(7-16 s in all on a 2-core CPU shared with other jobs, where ``python -c "import torch"`` took 2-4.5 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


_REPORT = "geo-factory launch check: "  # prefix of the child's last stdout line when the error is ours
_DEVICE_KEYS = ("deepspeed", "fsdp", "fsdp_config", "tf32")


def check_before_torchrun(args: list[str]) -> None:
    """Raise geo-factory's configuration error in ``train ARGS`` when LLaMA-Factory is about to start torchrun."""
    from llamafactory.extras.misc import is_env_enabled

    from .eval.distributed import wants_torchrun

    # inside torchrun each rank checks; USE_MCA parses with mcore's parser, which has no geo-factory checks
    if "WORLD_SIZE" in os.environ or is_env_enabled("USE_MCA") or not wants_torchrun():
        return
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    child = subprocess.run([sys.executable, "-m", __name__, *args], env=env, capture_output=True, text=True)
    last = child.stdout.rstrip().rpartition("\n")[2]
    if child.returncode != 2 or not last.startswith(_REPORT):
        return
    report = json.loads(last.removeprefix(_REPORT))
    if report["key"] is None:
        from .eval.data import EvalDataError

        raise EvalDataError(report["message"])
    from .hparams.checks import ConfigError

    raise ConfigError(report["key"], report["message"])


def _without_device(args: dict | list[str]) -> dict | list[str]:
    """``args`` on the CPU, without the settings that set up DeepSpeed, FSDP or a GPU."""
    if isinstance(args, dict):
        return {**{k: v for k, v in args.items() if k not in _DEVICE_KEYS}, "use_cpu": True}
    kept, i = [], 0
    while i < len(args):
        name, eq, _ = args[i].removeprefix("--").partition("=")
        drop = args[i].startswith("--") and name in _DEVICE_KEYS
        value_follows = drop and not eq and i + 1 < len(args) and not args[i + 1].startswith("--")
        if not drop:
            kept.append(args[i])
        i += 2 if value_follows else 1
    return [*kept, "--use_cpu", "true"]


def _main() -> None:
    from llamafactory.hparams.parser import _parse_train_args, read_args

    from .eval.data import EvalDataError
    from .hparams.checks import ConfigError

    try:
        _parse_train_args(_without_device(read_args()))
    except (ConfigError, EvalDataError) as err:
        print(_REPORT + json.dumps({"key": getattr(err, "key", None), "message": str(err)}), flush=True)
        sys.exit(2)


if __name__ == "__main__":
    _main()
