"""A server program run as a child process on 127.0.0.1, for ``federity demo``, the end-to-end tests and
``infra/launch.py``: started in a session of its own with its output appended to a log, waited for until it
answers, and stopped with everything it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from federity.errors import FederityError


class LocalProcessError(FederityError, RuntimeError):
    """A local server process did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> Callable[[], bool]:
    """Readiness: ``url`` answers 200."""
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False
    return check


def listens(port: int) -> Callable[[], bool]:
    """Readiness: something accepts connections on ``port`` of 127.0.0.1."""
    def check() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0
    return check


@dataclass
class LocalProcess:
    """``command`` (with ``env`` over this process's environment, in ``cwd``), logging to ``log_path``; ready
    when ``ready()`` says so."""

    name: str
    command: list[str]
    log_path: Path
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self, timeout: float = 120, wait: bool = True) -> LocalProcess:
        """Start it and (with ``wait``) wait until it is ready (:meth:`wait`); a restart appends to the log."""
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self.command, env={**os.environ, **self.env}, cwd=self.cwd,
                                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self.wait(timeout) if wait else self

    def wait(self, timeout: float = 120) -> LocalProcess:
        """Wait until the started process is ready; stop it and fail, with the log's last lines, if it exits or
        is not ready within ``timeout`` seconds."""
        assert self._process is not None, f"start {self.name} first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._fail(f"{self.name} exited with code {self._process.returncode}")
            if self.ready():
                return self
            time.sleep(0.3)
        self.stop()
        self._fail(f"{self.name} did not answer within {timeout:.0f} s")
        return self

    def _fail(self, message: str) -> None:
        tail = self.log_path.read_text(errors="replace").splitlines()[-5:] if self.log_path.exists() else []
        raise LocalProcessError(f"{message}; last lines of {self.log_path}:\n" + "\n".join(tail),
                                "check the log: is the port free and the program installed?")

    def stop(self) -> None:
        """Stop it and everything it started: SIGTERM to its process group, SIGKILL after 20 s."""
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
