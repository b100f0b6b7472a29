"""A local Prefect server in a subprocess: the embedded default for ``federity demo`` and the end-to-end tests.

The server keeps its logs (and, without a database URL, its SQLite database) under its own ``PREFECT_HOME``;
:meth:`LocalPrefectServer.env` gives the variables a client or agent process needs to talk to it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from federity.errors import FederityError

if TYPE_CHECKING:
    from federity.postgres import LocalPostgres


class PrefectServerError(FederityError, RuntimeError):
    """The local Prefect server did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPrefectServer:
    """``prefect server start`` on 127.0.0.1 with its own home directory."""

    def __init__(self, home: Path, port: int | None = None, database_url: str | None = None) -> None:
        self.home = Path(home).resolve()
        self.port = port or free_port()
        self.database_url = database_url
        """Where the server keeps its state (a ``postgresql+asyncpg://`` URL); by default SQLite in its home."""
        self.postgres: LocalPostgres | None = None
        """The PostgreSQL server behind it, when :func:`local_prefect` started one."""
        self.log_path = self.home / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        """The server's API URL (``PREFECT_API_URL``)."""
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """Where the Prefect UI is served."""
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for processes that use this server."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}

    def start(self, timeout: float = 120, wait: bool = True) -> LocalPrefectServer:
        """Start the server and (with ``wait``) wait until its health endpoint answers (:meth:`wait`)."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env(), "PREFECT_UI_API_URL": self.api_url}
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        with self.log_path.open("ab") as log:  # a restart appends
            self._process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                 str(self.port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self.wait(timeout) if wait else self

    def wait(self, timeout: float = 120) -> LocalPrefectServer:
        """Wait until the started server's health endpoint answers."""
        assert self._process is not None, "start the server first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._fail(f"the Prefect server exited with code {self._process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        self._fail(f"the Prefect server did not answer within {timeout:.0f} s")
        return self

    def _fail(self, message: str) -> None:
        tail = self.log_path.read_text(errors="replace").splitlines()[-5:] if self.log_path.exists() else []
        raise PrefectServerError(f"{message}; last lines of {self.log_path}:\n" + "\n".join(tail),
                                 "check the log; is the port free and is prefect installed?")

    def stop(self) -> None:
        """Stop the server and everything it started."""
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()

    def restart(self, timeout: float = 120) -> None:
        """Stop the server and start it again on the same port and database (clients reconnect)."""
        self.stop()
        self.start(timeout)

    def __enter__(self) -> LocalPrefectServer:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()


@contextlib.contextmanager
def local_prefect(home: Path, progress: Callable[[str], None] = lambda _: None,
                  wait: bool = True) -> Iterator[LocalPrefectServer]:
    """A local Prefect server on a PostgreSQL server of its own (:mod:`federity.postgres`), or on SQLite in its
    home when PostgreSQL is not installed (rounds then wait on SQLite's locks: seconds each). Without ``wait``,
    the block starts while the server is still starting: call its :meth:`~LocalPrefectServer.wait`."""
    from federity.postgres import LocalPostgres, PostgresError, postgres_bin

    try:
        postgres_bin()
    except PostgresError as e:
        progress(f"{e}: the Prefect server keeps its state in SQLite, and rounds will be slower")
        server = LocalPrefectServer(home).start(wait=wait)
        try:
            yield server
        finally:
            server.stop()
        return
    with LocalPostgres() as postgres:
        server = LocalPrefectServer(home, database_url=postgres.create_database("prefect")).start(wait=wait)
        server.postgres = postgres
        try:
            yield server
        finally:
            server.stop()
