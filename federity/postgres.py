"""A PostgreSQL server of its own, from the machine's PostgreSQL package: the database under the Prefect server
(and MLflow's tracking server) when ``federity demo``, the end-to-end tests or ``infra/launch.py`` bring the
topology up on one machine.

Prefect's default SQLite database answers concurrent writers (a round's sites and workers, all at once) with
"database is locked", which Prefect's clients retry after 2, 4, 8… seconds: seconds added to a round that
PostgreSQL does not add. The cluster lives in its own directory, listens on 127.0.0.1 only, and trusts local
connections (it is a throwaway for one machine; a shared deployment uses its own managed PostgreSQL, see
``infra/README.md``). PostgreSQL refuses to run as root, so a root process runs it as the ``postgres`` user, in a
directory that user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from federity.errors import FederityError
from federity.local_process import free_port

USER = "federity"


class PostgresError(FederityError, RuntimeError):
    """The local PostgreSQL server could not be set up or started."""


def postgres_bin() -> Path:
    """The directory of PostgreSQL's server programs (``initdb``, ``pg_ctl``)."""
    for candidate in [os.environ.get("FEDERITY_POSTGRES_BIN"), shutil.which("pg_config")]:
        if candidate and Path(candidate).name == "pg_config":
            out = subprocess.run([candidate, "--bindir"], capture_output=True, text=True, check=False)
            candidate = out.stdout.strip()
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    raise PostgresError("PostgreSQL's server programs (initdb, pg_ctl) were not found",
                        "install PostgreSQL (Debian: apt install postgresql) or set FEDERITY_POSTGRES_BIN")


class LocalPostgres:
    """``initdb`` (once) and ``pg_ctl start`` of a cluster in ``directory``, on a free port of 127.0.0.1."""

    def __init__(self, directory: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self._as_root = os.geteuid() == 0
        self._owned_dir: Path | None = None
        if directory is None or self._as_root:
            # a root-owned test directory (0700) is closed to the postgres user: the cluster gets its own
            self._owned_dir = Path(tempfile.mkdtemp(prefix="federity-postgres-"))
            directory = self._owned_dir
        self.directory = Path(directory).resolve()
        self.data = self.directory / "data"
        self.log_path = self.directory / "postgres.log"

    def url(self, database: str, driver: str = "postgresql") -> str:
        """A SQLAlchemy URL of ``database`` on this server (``driver`` e.g. ``postgresql+asyncpg``)."""
        return f"{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(postgres_bin() / program), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if out.returncode != 0:
            raise PostgresError(f"{program} failed: {(out.stderr or out.stdout).strip()[-2000:]}",
                                f"see {self.log_path}" if self.log_path.exists() else "is PostgreSQL installed?")
        return out

    def start(self) -> LocalPostgres:
        """Create the cluster if it does not exist yet, and start it (waiting until it accepts connections)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.directory, postgres.pw_uid, postgres.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c max_connections=200",
                  "start")
        return self

    def create_database(self, name: str) -> str:
        """Create database ``name`` (if missing); returns its asyncpg URL."""
        exists = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", "postgres", "-tAc",
                           f"SELECT 1 FROM pg_database WHERE datname = '{name}'").stdout.strip()
        if not exists:
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return self.url(name, "postgresql+asyncpg")

    def dump(self, database: str) -> bytes:
        """``pg_dump`` of ``database``: every row, as SQL (what an operator's backup of it would hold)."""
        return self._run("pg_dump", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, database).stdout.encode()

    def restart(self) -> None:
        """Stop (fast shutdown: open connections are cut) and start again, on the same port and data."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")
        self.start()

    def stop(self, remove: bool = True) -> None:
        """Stop the server (fast shutdown); remove the cluster's directory if this object made it."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(PostgresError):
                self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")
        if remove and self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()
