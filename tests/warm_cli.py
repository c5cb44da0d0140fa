"""Warm console scripts for the tests: one process imports LLaMA-Factory once, then forks a child per run.

A run of ``llamafactory-cli`` or ``geo-factory`` through here is still a process of its own that runs the console
script's ``main`` with the test's arguments, working directory, environment, stdin, stdout and stderr, and ends
with its own exit status, at its own interpreter exit (atexit handlers, thread joins and the C++ destructors that
abort a process included). What differs from a fresh exec: the modules in ``PRELOAD`` were imported before the
arguments were read, the objects made by those imports are frozen out of the garbage collector, and the children
share the server's string-hash seed. That saves the 4-7 s of CPU each fresh interpreter spends importing torch,
transformers, peft and LLaMA-Factory, and 2 s of garbage collection at its end: the suite's time halves (README,
Development).

``run_cli`` / ``run_geo_factory`` (conftest.py) come here only when the run's environment is the server's own,
compared key by key, but for the variables in ``AT_LAUNCH`` (set in the child before ``main``: LLaMA-Factory reads
them when it decides to start torchrun, never at import). A run with another variable of its own
(``GEO_FACTORY_DISABLE``, a cache folder) executes the real console script, as does every process a test starts
itself (the torchrun workers, Ctrl-C, servers, pipes).
``GEO_FACTORY_TEST_EXEC=1`` executes every run afresh.

Run as ``python tests/warm_cli.py SOCKET``: it imports what the commands import, listens on the Unix socket
``SOCKET`` and answers each request (the command line and working directory, with the three standard streams
passed as file descriptors) with the child's pid, then its exit status.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


SCRIPTS = {"llamafactory-cli": "llamafactory.cli", "geo-factory": "geo_factory.cli"}  # console script: its module
AT_LAUNCH = frozenset({"FORCE_TORCHRUN", "NPROC_PER_NODE"})  # read by llamafactory.launcher.launch (and eval's)
PRELOAD = (
    *SCRIPTS.values(),
    "llamafactory.launcher",  # patched by geo_factory's .pth hook on import, as in any process
    "llamafactory.train.tuner",  # train, export
    "llamafactory.chat.chat_model",  # chat
    "geo_factory.eval.evaluator",  # eval
    "peft.tuners.lora.bnb",  # imported by every LoRA's creation: bitsandbytes, which sets up torch.compile
)


def _warm_up() -> None:
    """What every run would otherwise redo: the imports, and the config classes that LLaMA-Factory's model loader
    looks its model up among (each ``_model_mapping.keys()`` imports them: 1 s per run, measured on 2 cores)."""
    for name in PRELOAD:
        importlib.import_module(name)
    from transformers import AutoModelForImageTextToText, AutoModelForSeq2SeqLM, AutoModelForTextToWaveform

    for auto in (AutoModelForImageTextToText, AutoModelForSeq2SeqLM, AutoModelForTextToWaveform):
        auto._model_mapping.keys()  # as llamafactory.model.loader.load_model does


def serve(path: str) -> str:
    """Return only in a forked child: the module whose ``main`` it runs. The server itself runs until stopped."""
    _warm_up()
    # The imports' millions of objects live as long as the process anyway: out of the collector's sight, each child's
    # collections (accelerate runs one at the end of training) and its exit take 0.5 s instead of 2.5 s.
    gc.freeze()
    if threading.active_count() != 1:  # forking with other threads alive could copy a held lock
        raise RuntimeError(f"the preload started threads: {threading.enumerate()}")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path + ".tmp")
    listener.listen()
    os.rename(path + ".tmp", path)  # the socket appears once it can be used
    parent = os.getppid()
    listener.settimeout(5)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the test worker is gone without stopping this (killed): so is its need
                raise SystemExit(0) from None
            continue
        with conn:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            request = json.loads(message)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.detach()
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                    os.close(fd)
                os.chdir(request["cwd"])
                os.environ.update(request["environ"])
                sys.argv = request["argv"]
                sys.path[0] = os.path.dirname(request["argv"][0])  # as for the console script
                return SCRIPTS[os.path.basename(request["argv"][0])]
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):  # a test that timed out has killed the child and hung up
                conn.send(str(pid).encode())
            _, status = os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                conn.send(str(os.waitstatus_to_exitcode(status)).encode())


class WarmCli:
    """The test process's side: start the server once per pytest worker, and run a command line through it."""

    _server: WarmCli | None = None

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = dict(env)
        self.socket = str(folder.resolve() / "cli.sock")
        Path(self.socket).unlink(missing_ok=True)  # an earlier server's: not this one's sign of life
        self.log = folder / "server.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, __file__, self.socket], env=env, cwd=folder, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        atexit.register(self.stop)

    def stop(self) -> None:
        """SIGTERM, on which coverage.py (``sigterm = true``) saves what the server ran before its children forked."""
        self.process.terminate()
        self.process.wait(timeout=60)

    @classmethod
    def start(cls, env: dict[str, str], folder: Path) -> None:
        cls._server = cls(env, folder)

    @classmethod
    def serving(cls, env: dict[str, str]) -> WarmCli | None:
        """The server, if a run in ``env`` can be forked from it: it was started in that very environment, give or
        take the variables read only at launch."""
        server = cls._server
        if server is None:
            return None
        differ = {key for key in env.keys() | server.env.keys() if env.get(key) != server.env.get(key)}
        return server if differ <= AT_LAUNCH and differ <= env.keys() else None

    def _connect(self, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket):
            if self.process.poll() is not None:
                raise RuntimeError(f"the warm CLI exited {self.process.returncode}:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the warm CLI did not start in {timeout} s:\n{self.log.read_text()}")
            time.sleep(0.05)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.connect(self.socket)
        return conn

    def _receive(self, conn: socket.socket) -> int:
        answer = conn.recv(64)
        if not answer:
            raise RuntimeError(f"the warm CLI hung up (exit status {self.process.poll()}):\n{self.log.read_text()}")
        return int(answer)

    def run(
        self, argv: list[str], cwd: Path | str, env: dict[str, str], input: str | None, timeout: float
    ) -> subprocess.CompletedProcess:
        """What ``subprocess.run(argv, cwd=cwd, env=env, input=input, capture_output=True, text=True,
        timeout=timeout)`` returns, from a forked child."""
        with (
            tempfile.TemporaryFile() as stdin,
            tempfile.TemporaryFile() as stdout,
            tempfile.TemporaryFile() as stderr,
            self._connect(timeout) as conn,
        ):
            stdin.write((input or "").encode())
            stdin.seek(0)
            cwd = os.path.abspath(cwd)  # a relative one is this process's, as for subprocess
            environ = {key: value for key, value in env.items() if self.env.get(key) != value}  # AT_LAUNCH's
            request = json.dumps({"argv": argv, "cwd": cwd, "environ": environ}).encode()
            socket.send_fds(conn, [request], [stdin.fileno(), stdout.fileno(), stderr.fileno()])
            pid = self._receive(conn)
            conn.settimeout(timeout)
            try:
                returncode = self._receive(conn)
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(argv, timeout) from None
            stdout.seek(0)
            stderr.seek(0)
            return subprocess.CompletedProcess(
                argv, returncode, stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
            )


if __name__ == "__main__":
    sys.exit(importlib.import_module(serve(sys.argv[1])).main())
