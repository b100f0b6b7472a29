"""A local Prefect server in a subprocess: the embedded default for ``federity demo`` and the end-to-end tests.

The server keeps its logs (and, without a database URL, its SQLite database) under its own ``PREFECT_HOME``;
:meth:`LocalPrefectServer.env` gives the variables a client or agent process needs to talk to it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from federity.local_process import LocalProcess, answers, free_port

if TYPE_CHECKING:
    from federity.postgres import LocalPostgres


class LocalPrefectServer:
    """``prefect server start`` on 127.0.0.1 with its own home directory."""

    def __init__(self, home: Path, port: int | None = None, database_url: str | None = None) -> None:
        """The server keeps its state at ``database_url`` (a ``postgresql+asyncpg://`` URL), by default in SQLite
        in ``home``; its log is ``home/server.log``."""
        self.home = Path(home).resolve()
        self.port = port or free_port()
        self.postgres: LocalPostgres | None = None
        """The PostgreSQL server behind it, when :func:`local_prefect` started one."""
        env = {**self.env(), "PREFECT_UI_API_URL": self.api_url}
        if database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
        self._process = LocalProcess(
            "the Prefect server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(self.port)], self.home / "server.log",
            answers(f"{self.api_url}/health"), env)

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
        self._process.start(timeout, wait)
        return self

    def wait(self, timeout: float = 120) -> LocalPrefectServer:
        """Wait until the started server's health endpoint answers."""
        self._process.wait(timeout)
        return self

    def stop(self) -> None:
        """Stop the server and everything it started."""
        self._process.stop()

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
