"""Geoscience tools a model calls: a registry of pure functions with JSON schemas (see :mod:`.registry`).

``geo-factory tools`` lists them, ``geo-factory tool NAME 'JSON'`` runs one; ``geo_tools: all`` in a chat yaml
lets the model call them in ``llamafactory-cli chat`` / ``webchat`` (:mod:`.chat`); :func:`run_tool_calls`
executes the ``tool_calls`` of an OpenAI-compatible server such as ``llamafactory-cli api``.
"""

from . import geodesy, geophysics, geotime, minerals, search  # noqa: F401  (each registers its tools)
from .registry import TOOLS, ToolError, call_tool, observation, run_tool_calls, select_tools, tool_schemas, validate


__all__ = [
    "TOOLS",
    "ToolError",
    "call_tool",
    "observation",
    "run_tool_calls",
    "select_tools",
    "tool_schemas",
    "validate",
]
