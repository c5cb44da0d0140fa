"""The tool registry: name -> JSON schema, pure function, description and sources; and the one way to call a tool.

Every call goes through :func:`observation` (or :func:`call_tool`): the arguments are checked against the tool's
JSON schema with ``jsonschema``, the function runs in a worker thread under a time limit, and whatever goes wrong
(unknown tool, bad arguments, a failing tool, a timeout, an oversized result) becomes an error the model can read,
never an exception in the chat. Tools are pure functions: no shell, no file writes, no network.
"""

from __future__ import annotations

import difflib
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


MAX_RESULT_CHARS = 4000  # an observation fits a small model's context next to the question
DEFAULT_TIMEOUT = 10.0  # seconds per call


class ToolError(ValueError):
    """A call the tool cannot answer: the message is what the model (or the user) reads."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    function: Callable[..., dict[str, Any]]
    sources: tuple[str, ...]

    def schema(self) -> dict[str, Any]:
        """The function schema as LLaMA-Factory's tool formatters and OpenAI's ``tools`` expect it."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


TOOLS: dict[str, Tool] = {}


def register(tool: Tool) -> Tool:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(tool.parameters)
    TOOLS[tool.name] = tool
    return tool


def select_tools(spec: str | None) -> list[str]:
    """``all`` or a comma-separated list of tool names -> the names; an unknown name is a ValueError."""
    if spec is None or not str(spec).strip():
        return []
    names = [name.strip() for name in str(spec).split(",") if name.strip()]
    if names == ["all"]:
        return list(TOOLS)
    for name in names:
        if name not in TOOLS:
            raise ValueError(f"unknown tool `{name}`; allowed: all, or a comma-separated list of {', '.join(TOOLS)}.")
    return list(dict.fromkeys(names))


def tool_schemas(names: list[str] | None = None) -> list[dict[str, Any]]:
    return [TOOLS[name].schema() for name in (names or list(TOOLS))]


def _non_finite(value: Any, where: str = "") -> str | None:
    """The path of the first NaN or infinity in ``value`` (JSON numbers past the float range parse as infinity),
    or None: the schema's bounds cannot refuse them (NaN compares false with every bound)."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(the arguments)"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{where}/{key}" if where else str(key))
        if found is not None:
            return found
    return None


def validate(name: str, arguments: str | dict[str, Any]) -> dict[str, Any]:
    """The arguments as a dict, checked against the tool's schema; ToolError with the schema's message if not."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    if name not in TOOLS:
        close = difflib.get_close_matches(name, list(TOOLS), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise ToolError(f"unknown tool `{name}`.{hint} Available: {', '.join(TOOLS)}.")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as err:
            raise ToolError(f"{name}: the arguments are not valid JSON ({err}).") from None
    where = _non_finite(arguments)
    if where is not None:
        raise ToolError(f"{name}: invalid arguments at `{where}`: NaN or infinite; give a finite number.")
    error = best_match(Draft202012Validator(TOOLS[name].parameters).iter_errors(arguments))
    if error is not None:
        where = "/".join(map(str, error.absolute_path))
        raise ToolError(f"{name}: invalid arguments{f' at `{where}`' if where else ''}: {error.message}")
    return arguments


def call_tool(name: str, arguments: str | dict[str, Any], timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Run one tool on validated arguments in a worker thread; its result, or ToolError."""
    kwargs = validate(name, arguments)
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(TOOLS[name].function(**kwargs))
        except Exception as err:  # a failing tool is an answer for the model, not a crash of the chat
            outcome.append(err)

    # A daemon thread: a call past its time limit is abandoned (pure functions: it only costs CPU until it ends).
    worker = threading.Thread(target=work, name=f"geo-tool-{name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise ToolError(f"{name}: no result within the time limit of {timeout:g} s.")
    result = outcome[0]
    if isinstance(result, Exception):
        raise ToolError(f"{name}: {result}") from None
    try:
        text = json.dumps(result, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise ToolError(f"{name}: the result is not a finite number for these arguments.") from None
    if len(text) > MAX_RESULT_CHARS:
        raise ToolError(f"{name}: the result is over {MAX_RESULT_CHARS} characters; ask for less.")
    return result


def observation(name: str, arguments: str | dict[str, Any], timeout: float = DEFAULT_TIMEOUT) -> str:
    """The JSON text a model reads back: ``{"result": ...}`` or ``{"error": ...}``; never raises."""
    try:
        return json.dumps({"result": call_tool(name, arguments, timeout)}, ensure_ascii=False)
    except ToolError as err:
        return json.dumps({"error": str(err)}, ensure_ascii=False)


def run_tool_calls(tool_calls: list[Any], timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, str]]:
    """Execute OpenAI ``tool_calls`` (objects of the ``openai`` client, or their dicts) -> the ``tool`` messages.

    For clients of any OpenAI-compatible server (``llamafactory-cli api`` included): append the assistant message
    and these to ``messages`` and ask again.
    """
    messages = []
    for call in tool_calls:
        call = call if isinstance(call, dict) else call.model_dump()
        function = call["function"]
        content = observation(function["name"], function.get("arguments") or "{}", timeout)
        messages.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": content})
    return messages
