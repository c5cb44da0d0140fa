"""Evaluation across processes: ``llamafactory-cli eval`` under torchrun, and the in-training hook under DDP, FSDP
and DeepSpeed.

``eval`` is started the way LLaMA-Factory starts ``train``: with ``FORCE_TORCHRUN=1``, or by itself on a machine
with more than one accelerator, one process per device (``NPROC_PER_NODE``, ``NNODES``, ``NODE_RANK``,
``MASTER_ADDR``, ``MASTER_PORT`` as for ``train``). Each process holds a whole model and scores a share of the
questions: contiguous in the scorer's order, so the questions that share exemplars (a general benchmark's subject)
stay on one rank and their common prefix is computed once; sizes differ by at most one question. Rank 0 gathers
every batch as it is scored and writes the files one process would, so a killed run resumes with any number of
processes. Which rank scored a question changes no answer: a question is scored on its own tokens whatever its
batch (see :mod:`.scoring`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar


T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the evaluating processes (a world of 1 is one process, no torch.distributed)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        import torch.distributed as dist

        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def gather(self, batches: Iterable[list[T]]) -> Iterator[list[T]]:
        """Each rank's batches, merged: rank 0 gets every rank's batch of each step (the others get []) until all
        ranks are through; ranks with fewer batches take part with nothing."""
        if self.size == 1:
            yield from batches
            return
        import torch.distributed as dist

        source = iter(batches)
        while True:
            mine = next(source, None)
            every: list[list[T] | None] = [None] * self.size
            dist.all_gather_object(every, mine)
            if all(batch is None for batch in every):
                return
            yield [item for batch in every if batch for item in batch] if self.main else []

    def sum(self, values: Sequence[int], device: Any = None) -> list[int]:
        """Element-wise sums over the ranks (in-training metrics: counts, not objects, on the training device)."""
        if self.size == 1:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.long, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()


def shares(prompts: Sequence[Any], size: int) -> list[list[int]]:
    """Each rank's prompts (indices), contiguous in exemplar-group order so that a shared prefix stays on one rank;
    shares differ by at most one prompt. Every rank computes every rank's share, the same way."""
    order = sorted(range(len(prompts)), key=lambda i: getattr(prompts[i], "group", ()))
    base, extra = divmod(len(order), size)
    starts = [rank * base + min(rank, extra) for rank in range(size + 1)]
    return [order[starts[rank] : starts[rank + 1]] for rank in range(size)]


def current() -> World:
    """The world torch.distributed runs in, if it runs (the trainer has set it up)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def join() -> World:
    """Under torchrun: join the process group (NCCL on GPUs, gloo on the CPU) with this process's one device.

    Each process sees only its own accelerator, so LLaMA-Factory's ``device_map: auto`` (inference and
    ``ChatModel`` set it) places the whole model on it.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible is not None else None
    if devices is None:  # before torch starts CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = str(local)
    elif len(devices) > 1:  # the user's own list ("" keeps every GPU hidden)
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[local % len(devices)]
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def leave() -> None:
    """Every rank together, then out at once, without the interpreter's teardown.

    Tearing a gloo group down is racy (pytorch/gloo#155: peers that destroy their contexts right after a barrier
    can fail): in CI a rank aborted (SIGABRT) after its work was done, while its peer was still shutting down, and
    torchrun reported the run as failed; in eval and, with a barrier before LLaMA-Factory's
    ``destroy_process_group``, in training too. So each process runs its exit handlers first (``report_to``
    integrations finish their runs there), meets the others, flushes its streams and exits: a peer's closing
    sockets can only meet a process between the barrier and its exit, never one tearing its group down.
    """
    import atexit
    import logging

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        atexit._run_exitfuncs()
        dist.barrier()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def wants_torchrun() -> bool:
    """As LLaMA-Factory decides for ``train``: forced, or more than one accelerator here (and no Ray or KTransformers)."""
    from llamafactory.extras.misc import get_device_count, is_env_enabled, use_kt, use_ray

    return is_env_enabled("FORCE_TORCHRUN") or (get_device_count() > 1 and not use_ray() and not use_kt())


def torchrun_layout() -> dict[str, str]:
    """torchrun's layout from LLaMA-Factory's variables, with its defaults: this node, one process per device."""
    from llamafactory.extras.misc import find_available_port, get_device_count

    return {
        "nnodes": os.getenv("NNODES", "1"),
        "node_rank": os.getenv("NODE_RANK", "0"),
        "nproc_per_node": os.getenv("NPROC_PER_NODE", str(max(get_device_count(), 1))),
        "master_addr": os.getenv("MASTER_ADDR", "127.0.0.1"),
        "master_port": os.getenv("MASTER_PORT", str(find_available_port())),
    }


def launch(args: list[str]) -> int:
    """``torchrun`` running ``python -m geo_factory.eval ARGS`` on every process; its exit status."""
    from llamafactory.extras import logging

    layout = torchrun_layout()
    logging.get_logger("llamafactory.geo_factory.eval").info(
        f"Evaluating on {layout['nproc_per_node']} processes per node, {layout['nnodes']} node(s), at "
        f"{layout['master_addr']}:{layout['master_port']}."
    )
    options = [part for key, value in layout.items() for part in (f"--{key}", value)]
    command = [sys.executable, "-m", "torch.distributed.run", *options, "-m", "geo_factory.eval", *args]
    return subprocess.run(command).returncode
