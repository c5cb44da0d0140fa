"""One client of an OpenAI-compatible chat endpoint (``llamafactory-cli api``, vLLM, a hosted API), with plain
``urllib``: the GeoBench judge (``eval/subjective.py``) and the build-sft teacher (``curation/sft.py``) both call it.

It holds what both need alike: the API key read from the environment variable the user names (it goes nowhere
but the request header), ``GET /models`` to check the endpoint and the key before any work, retries of network
and server errors with a growing pause, and errors that say which setting to fix. It imports nothing of
geo_factory, so any part of the package can use it.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any


class EndpointError(ValueError):
    """The endpoint could not be reached, refused the request, or did not answer like an OpenAI chat endpoint: the
    user's to fix (URL, key, server), so the commands print it as a message, as every ValueError of theirs."""


@dataclass
class ChatEndpoint:
    """``role`` names the endpoint in messages (``judge``, ``teacher``); ``base_setting`` and ``key_setting`` are
    the settings the user gave its URL and key variable in (a yaml key, a command-line option)."""

    api_base: str
    model: str
    api_key_env: str
    role: str
    base_setting: str
    key_setting: str
    timeout: float = 120.0
    retries: int = field(default=3, repr=False)  # of a request that failed in transport or with a server error

    def __post_init__(self) -> None:
        if not re.match(r"^https?://", self.api_base):
            raise ValueError(f"`{self.base_setting}: {self.api_base}` must be an http:// or https:// URL.")

    def _url(self, path: str) -> str:
        return f"{self.api_base.rstrip('/')}/{path}"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(self.api_key_env)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def _refused(self, code: int) -> EndpointError:
        unset = "" if os.environ.get(self.api_key_env) else f" (${self.api_key_env} is not set)"
        return EndpointError(
            f"The {self.role} at {self.api_base} refused the request (HTTP {code}): check the key in "
            f"${self.api_key_env}{unset}, which `{self.key_setting}` names."
        )

    def check(self) -> None:
        """``GET /models`` with the key: the endpoint is up, speaks the OpenAI API and accepts the key."""
        url = self._url("models")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=self._headers()), timeout=30):
                return
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):
                raise self._refused(err.code) from None
            problem = (
                f"GET {url} answered HTTP {err.code}; an OpenAI-compatible `{self.base_setting}` usually ends in /v1"
            )
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            problem = f"GET {url} failed: {getattr(err, 'reason', err)}; is the server running?"
        raise EndpointError(f"The {self.role} at `{self.base_setting}: {self.api_base}` cannot be used: {problem}.")

    def complete(self, messages: list[dict[str, str]], **sampling: Any) -> str:
        """The reply's text to ``messages``; ``sampling`` (``temperature``, ``max_tokens``) goes into the request."""
        body = {"model": self.model, "messages": messages, **sampling}
        request = urllib.request.Request(
            self._url("chat/completions"), data=json.dumps(body).encode(), headers=self._headers()
        )
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.load(response)
                return payload["choices"][0]["message"].get("content") or ""
            except urllib.error.HTTPError as err:
                if err.code in (401, 403):
                    raise self._refused(err.code) from None
                problem = f"HTTP {err.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                problem = str(getattr(err, "reason", err))
            except (KeyError, IndexError, TypeError, AttributeError, json.JSONDecodeError):
                raise EndpointError(
                    f"The {self.role} at {self.api_base} did not answer like an OpenAI chat endpoint."
                ) from None
            if attempt < self.retries:
                time.sleep(2**attempt)
        raise EndpointError(f"The {self.role} at {self.api_base} failed {self.retries + 1} times: {problem}.")
