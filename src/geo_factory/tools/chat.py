"""The tool loop of ``llamafactory-cli chat`` / ``webchat`` with ``geo_tools`` set in the yaml.

LLaMA-Factory formats the tools for the model (the template's tool formatter, ``tools`` argument) and can parse a
call out of a reply (``template.extract_tool``), but never runs one. Here a reply that calls tools is answered:
each call runs through the registry (schema check, time limit, errors as ``{"error": ...}``), the calls go back
into the conversation as a ``function`` turn and the results as an ``observation`` turn (LLaMA-Factory's roles,
formatted by the template as in training), and the model continues, until it answers without a call or
``geo_tools_max_rounds`` rounds are used. A reply that starts a call the extractor cannot parse gets an error
observation too. The transcript shows each call and its result on ``[geo_tools]`` lines.

Only the synchronous ``ChatModel.stream_chat`` (what ``chat`` and ``webchat`` use) runs tools; ``api`` keeps
OpenAI's semantics (the client executes the ``tool_calls``: :func:`geo_factory.tools.run_tool_calls`), and a
caller passing its own ``tools`` (webchat's tools box) gets LLaMA-Factory's behaviour.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..hparams.checks import ConfigError
from .registry import TOOLS, observation, select_tools


if TYPE_CHECKING:
    from llamafactory.chat import ChatModel
    from llamafactory.data.template import Template

    from ..hparams.tools_args import ToolsArguments


MALFORMED = "malformed tool call: it could not be parsed; call again with valid JSON arguments, or answer."


def unknown_tool(name: str, names: tuple[str, ...]) -> str:
    return f"unknown tool `{name}`; available: {', '.join(names)}."


@dataclass(frozen=True)
class ToolSession:
    names: tuple[str, ...]
    max_rounds: int
    timeout: float

    def tools_json(self) -> str:
        return json.dumps([TOOLS[name].schema() for name in self.names], ensure_ascii=False)


_parsed = threading.local()  # the session of the infer arguments parsed last on this thread, until attached


def parse_session(tools_args: ToolsArguments) -> None:
    """At infer-arg parsing, before any model loads: check the tool names and keep the session for :func:`attach`."""
    try:
        names = select_tools(tools_args.geo_tools)
    except ValueError as err:
        raise ConfigError("geo_tools", f"`geo_tools: {tools_args.geo_tools}`: {err}") from None
    _parsed.session = (
        ToolSession(tuple(names), tools_args.geo_tools_max_rounds, tools_args.geo_tools_timeout) if names else None
    )


def attach(chat_model: ChatModel) -> None:
    """Hand the chat model the session of its own arguments: ``ChatModel.__init__`` has just parsed them."""
    chat_model.geo_tools = getattr(_parsed, "session", None)
    _parsed.session = None


def _call_marker(template: Template) -> str | None:
    """The text a call starts with in this template ("Action:", "<tool_call>", ...), to tell a malformed call."""
    from llamafactory.data.tool_utils import FunctionCall

    tool_utils = getattr(template.format_function, "tool_utils", None)
    if tool_utils is None:
        return None
    prefix = tool_utils.function_formatter([FunctionCall("\x00", "{}")]).split("\x00", 1)[0]
    marker = prefix.strip().splitlines()[0].strip() if prefix.strip() else ""
    return marker if len(marker) >= 3 and not marker.startswith("{") else None


def tool_round(template: Template, reply: str, session: ToolSession) -> tuple[list[dict[str, str]], str] | None:
    """The turns to add for a reply that calls tools, and the transcript lines; None when the reply answers."""
    calls = template.extract_tool(reply)
    if isinstance(calls, str):
        marker = _call_marker(template)
        if marker is None or marker not in reply:
            return None
        result = json.dumps({"error": MALFORMED})
        return (
            [{"role": "assistant", "content": reply}, {"role": "observation", "content": result}],
            f"\n[geo_tools] malformed call -> {result}\n",
        )
    functions, results, lines = [], [], []
    for call in calls:
        arguments = json.loads(call.arguments)
        functions.append({"name": call.name, "arguments": arguments})
        result = (
            observation(call.name, arguments, session.timeout)
            if call.name in session.names
            else json.dumps({"error": unknown_tool(call.name, session.names)})
        )
        results.append(result)
        lines.append(f"[geo_tools] {call.name} {call.arguments} -> {result}")
    content = results[0] if len(results) == 1 else "[" + ", ".join(results) + "]"
    turns = [
        {"role": "function", "content": json.dumps(functions, ensure_ascii=False)},
        {"role": "observation", "content": content},
    ]
    return turns, "\n" + "\n".join(lines) + "\n"


def stream_chat(
    stream: Callable[..., Generator[str, None, None]],
    chat_model: ChatModel,
    messages: list[dict[str, str]],
    system: str | None = None,
    tools: str | None = None,
    *args: Any,
    **kwargs: Any,
) -> Generator[str, None, None]:
    """``ChatModel.stream_chat`` with the tool loop: the replies, and the ``[geo_tools]`` lines between them."""
    session: ToolSession | None = getattr(chat_model, "geo_tools", None)
    if session is None or tools:
        yield from stream(chat_model, messages, system, tools, *args, **kwargs)
        return
    history = list(messages)
    for round_ in range(session.max_rounds + 1):
        reply = ""
        for text in stream(chat_model, history, system, session.tools_json(), *args, **kwargs):
            reply += text
            yield text
        step = tool_round(chat_model.engine.template, reply, session)
        if step is None:
            return
        if round_ == session.max_rounds:
            yield f"\n[geo_tools] stopped: the model still calls tools after geo_tools_max_rounds={round_} rounds.\n"
            return
        turns, transcript = step
        history += turns
        yield transcript
