"""A stand-in OpenAI-compatible endpoint on 127.0.0.1 for tests of the judge and teacher client: ``GET /models``
and ``POST /chat/completions`` behind a bearer key, replying ``reply`` (or, ``broken``, something that is not a
chat completion), and keeping each request's body."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: StandIn

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.server.key}":
            return True
        self._reply(401, {"error": {"message": "invalid key"}})
        return False

    def do_GET(self) -> None:
        if self._authorized():
            self._reply(200, {"object": "list", "data": [{"id": "stand-in", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self._authorized():
            self.server.requests.append(body)
            if self.server.broken:
                self._reply(200, {"detail": "not a chat completion"})
            else:
                self._reply(200, {"choices": [{"message": {"role": "assistant", "content": self.server.reply}}]})

    def log_message(self, *args) -> None:
        pass


class StandIn(ThreadingHTTPServer):
    def __init__(self, key: str, reply: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.key, self.reply, self.broken = key, reply, False
        self.requests: list[dict] = []

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def serving(key: str, reply: str) -> Iterator[StandIn]:
    server = StandIn(key, reply)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
