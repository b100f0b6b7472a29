"""The scaled-out topology of ``infra/compose.yaml``, brought up on one machine from packages.

    python -m infra.launch --dir federity-topology --repository breast-cancer
    # prints the environment and the repository's remote and storage; Ctrl-C stops everything

Each service is a process of its own, on 127.0.0.1, with its state under ``--dir``:

* **PostgreSQL** (the machine's package, :mod:`federity.postgres`): the databases ``prefect`` and ``mlflow``;
* **Prefect server** on PostgreSQL;
* **S3** (moto's server mode): the buckets ``dvc`` (model weights, through DVC) and ``mlflow`` (MLflow artifacts);
* **MLflow tracking server** on PostgreSQL, artifacts in S3;
* **git**: ``git daemon`` serving the bare repositories under ``<dir>/git`` (push enabled, no authentication:
  a throwaway on loopback; the compose file's git service is where an operator puts a real git host).

Owners and sites are the user's own processes, each with its own home, wallet, workspace and data: they reach
the services through :meth:`Topology.env` (``PREFECT_API_URL``, ``MLFLOW_TRACKING_URI``, the S3 endpoint and
credentials) and :meth:`Topology.repository_url`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from federity.local_process import LocalProcess, answers, free_port, listens
from federity.postgres import LocalPostgres
from federity.prefect_server import LocalPrefectServer

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "federity", "AWS_SECRET_ACCESS_KEY": "federity-local",
                  "AWS_DEFAULT_REGION": "us-east-1"}
"""moto accepts any credentials; clients still need some."""
DVC_BUCKET, MLFLOW_BUCKET = "dvc", "mlflow"


@dataclass
class Topology:
    """The running services and how to reach them."""

    directory: Path
    postgres: LocalPostgres
    prefect: LocalPrefectServer
    s3_endpoint: str
    mlflow_url: str
    git_port: int
    services: list[LocalProcess] = field(default_factory=list)

    @property
    def git_root(self) -> Path:
        return self.directory / "git"

    def env(self) -> dict[str, str]:
        """What an owner's or a site's process needs to use the topology (each keeps its own ``PREFECT_HOME``)."""
        return {"PREFECT_API_URL": self.prefect.api_url, "MLFLOW_TRACKING_URI": self.mlflow_url, **S3_CREDENTIALS}

    def repository_url(self, name: str) -> str:
        """``git://`` URL of the bare repository ``name`` (created empty on first call), for ``init --remote``."""
        bare = self.git_root / f"{name}.git"
        if not bare.exists():
            subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)], check=True)
        return f"git://127.0.0.1:{self.git_port}/{name}.git"

    def storage_url(self, name: str) -> str:
        """``s3://`` URL of the repository ``name``'s DVC storage (``init --storage``, with ``s3_endpoint``)."""
        return f"s3://{DVC_BUCKET}/{name}"


def create_buckets(endpoint: str, credentials: dict[str, str]) -> None:
    """The buckets the topology uses: ``dvc`` (weights) and ``mlflow`` (artifacts), if missing."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                          region_name=credentials.get("AWS_DEFAULT_REGION", "us-east-1"))
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for bucket in (DVC_BUCKET, MLFLOW_BUCKET):
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)


@contextlib.contextmanager
def launch(directory: Path, progress: Callable[[str], None] = lambda _: None) -> Iterator[Topology]:
    """Bring every service up under ``directory``; stop them all when the block ends."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "git").mkdir(exist_ok=True)
    services: list[LocalProcess] = []

    def start(name: str, command: list[str], ready: Callable[[], bool], env: dict[str, str] | None = None) -> None:
        services.append(LocalProcess(name, command, directory / f"{name}.log", ready, env or {}, directory
                                     ).start(timeout=180))

    progress("PostgreSQL")
    with LocalPostgres(directory / "postgres") as postgres:
        prefect_db, mlflow_db = postgres.create_database("prefect"), postgres.create_database("mlflow")
        progress("Prefect server on PostgreSQL")
        with LocalPrefectServer(directory / "prefect", database_url=prefect_db) as prefect:
            prefect.postgres = postgres
            try:
                s3_port, mlflow_port, git_port = free_port(), free_port(), free_port()
                s3 = f"http://127.0.0.1:{s3_port}"
                progress("S3 (moto's server)")
                start("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                      listens(s3_port))
                create_buckets(s3, S3_CREDENTIALS)
                progress("MLflow tracking server on PostgreSQL, artifacts in S3")
                start("mlflow", [
                    str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port",
                    str(mlflow_port), "--workers", "1",
                    "--backend-store-uri", mlflow_db.replace("postgresql+asyncpg", "postgresql+psycopg"),
                    "--artifacts-destination", f"s3://{MLFLOW_BUCKET}/artifacts"],
                    answers(f"http://127.0.0.1:{mlflow_port}/health"),
                    {**S3_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3})
                progress("git daemon")
                start("git", [
                    "git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={git_port}",
                    f"--base-path={directory / 'git'}", "--export-all", "--enable=receive-pack",
                    str(directory / "git")], listens(git_port))
                yield Topology(directory, postgres, prefect, s3, f"http://127.0.0.1:{mlflow_port}", git_port,
                               services)
            finally:
                for service in reversed(services):
                    service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("federity-topology"))
    parser.add_argument("--repository", action="append", default=[], metavar="NAME",
                        help="Create an empty repository NAME on the git server (repeatable).")
    parser.add_argument("--create-buckets", metavar="ENDPOINT",
                        help="Only create the buckets on the S3 server at ENDPOINT (AWS_* credentials), and exit.")
    args = parser.parse_args()
    if args.create_buckets:
        missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not os.environ.get(k)]
        if missing:
            parser.error(f"set {' and '.join(missing)}: the S3 server's credentials")
        create_buckets(args.create_buckets, dict(os.environ))
        return
    with launch(args.dir, progress=lambda what: print(f"starting {what}", file=sys.stderr)) as topology:
        for key, value in topology.env().items():
            print(f"export {key}={value}")
        for name in args.repository:
            print(f"# {name}: federity init ... --remote {topology.repository_url(name)} --storage "
                  f"{topology.storage_url(name)} --storage-endpoint {topology.s3_endpoint}")
        print("# Ctrl-C stops every service", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
