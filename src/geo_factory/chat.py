"""An orderly exit for LLaMA-Factory's chat machinery (``chat``, ``webchat``, ``api``, ``eval`` in generate mode).

LLaMA-Factory 0.9.5 streams each answer from ``model.generate`` running in a *daemon* thread, which goes on
after the last token has been handed over (generate returns only after the streamer is closed). When the
interpreter exits in that window, the thread is killed as it takes the GIL back: its forced unwind crosses
torch's C++ frames and the process dies with "terminate called without an active exception" (SIGABRT, 134).
So here generation threads are ordinary threads, which the interpreter joins before it finalizes; they stop at
the next token when the user presses Ctrl-C or the process is shutting down; and each ``ChatModel``'s event
loop is stopped and its thread joined at exit, before the interpreter tears down.
"""

from __future__ import annotations

import atexit
import sys
import threading
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from llamafactory.chat import ChatModel


_stop_generating = threading.Event()
# Before threading joins the non-daemon threads at shutdown (callbacks run in reverse order, so this one runs
# ahead of concurrent.futures' own, which waits for the executor workers that wait for the stream).
threading._register_atexit(_stop_generating.set)


def _stopping_criterion() -> Any:
    from transformers import StoppingCriteria

    class StopRequested(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
            import torch

            return torch.full((input_ids.shape[0],), _stop_generating.is_set(), device=input_ids.device)

    return StopRequested()


class GenerationThread(threading.Thread):
    """``threading.Thread`` for ``model.generate``: joined at exit, and it stops early when asked to."""

    def __init__(self, *args: Any, kwargs: dict[str, Any] | None = None, daemon: bool | None = None, **other) -> None:
        from transformers import StoppingCriteriaList

        kwargs = dict(kwargs or {})
        kwargs["stopping_criteria"] = StoppingCriteriaList(
            [*(kwargs.get("stopping_criteria") or []), _stopping_criterion()]
        )
        super().__init__(*args, kwargs=kwargs, daemon=False, **other)


def close_at_exit(chat_model: ChatModel) -> None:
    """Stop the model's event loop and join its thread when the interpreter exits, while it still can."""
    loop, thread = chat_model._loop, chat_model._thread

    def close() -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    atexit.register(close)


def run_chat(run: Callable[[], None]) -> None:
    """LLaMA-Factory's ``run_chat``, ending on end of input like on ``exit``, and on Ctrl-C with status 130."""
    try:
        run()
    except EOFError:  # `input()` at the end of piped input: the conversation is over, as with `exit`
        print()
    except KeyboardInterrupt:
        _stop_generating.set()
        print()
        sys.exit(130)
