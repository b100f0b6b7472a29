"""MLflow tracking of a repository's versions: one run per main commit, one nested run per update it aggregated.

Runs are found again by their tags, so logging a commit twice (a round flow re-run after a crash) returns the
first run and logs nothing new. Only the ids and numbers passed in are logged: no autologging, no artifacts.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federity.errors import FederityError

DEFAULT_DB = ".federity/mlflow.db"


class TrackingError(FederityError, RuntimeError):
    """The MLflow tracking store could not be reached or written."""


@dataclass
class UpdateMetrics:
    """What a contributor's update reports: its id, author, sample count and local metrics."""

    update: str
    author: str
    n_samples: int
    metrics: dict[str, float]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep MLflow's and alembic's migration chatter out of the output, and bound HTTP retries."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class Tracker:
    """One repository's MLflow experiment, in a tracking store (SQLite file or tracking server)."""

    def __init__(self, repo_root: Path, tracking_uri: str | None = None) -> None:
        if tracking_uri is None:
            db = Path(repo_root).resolve() / DEFAULT_DB
            db.parent.mkdir(parents=True, exist_ok=True)
            tracking_uri = f"sqlite:///{db}"
        self._uri = tracking_uri

    @property
    def tracking_uri(self) -> str:
        """The store's URI."""
        return self._uri

    def ui_command(self) -> str:
        """The command that opens the MLflow UI on this store."""
        if self._uri.startswith(("http://", "https://")):
            return self._uri
        return f"mlflow ui --backend-store-uri {self._uri}"

    def _client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self._uri)

    def _experiment(self, client: Any, repository: str, repository_id: str) -> str:
        name = f"federity/{repository}-{repository_id[:8]}"
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        return str(client.create_experiment(name, tags={"federity.repository_id": repository_id}))

    def run_for_commit(self, repository: str, repository_id: str, commit: str) -> str | None:
        """The id of the run logged for ``commit``, if any."""
        with _quiet(), self._errors():
            client = self._client()
            return self._find(client, self._experiment(client, repository, repository_id), commit)

    @staticmethod
    def _find(client: Any, experiment: str, commit: str) -> str | None:
        runs = client.search_runs([experiment], filter_string=f"tags.`federity.commit` = '{commit}' and "
                                                             "tags.`federity.parent` = 'true'", max_results=1)
        return runs[0].info.run_id if runs else None

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except FederityError:
            raise
        except Exception as exc:
            raise TrackingError(f"MLflow tracking store {self._uri} failed: {type(exc).__name__}: {exc}"[:500],
                                "check MLFLOW_TRACKING_URI (or that .federity/ is writable) and retry "
                                "`federity track`") from None

    def log_commit(self, *, repository: str, repository_id: str, commit: str, round: int, kind: str,
                   params: dict[str, Any], strategy: str, global_metrics: dict[str, float],
                   updates: list[UpdateMetrics]) -> str:
        """Log ``commit`` (idempotent): returns its run id."""
        from mlflow.entities import Metric, Param

        with _quiet(), self._errors():
            client = self._client()
            experiment = self._experiment(client, repository, repository_id)
            existing = self._find(client, experiment, commit)
            if existing is not None:
                return existing
            tags = {"federity.commit": commit, "federity.round": str(round), "federity.repository": repository,
                    "federity.repository_id": repository_id, "federity.kind": kind}
            run = client.create_run(experiment, run_name=f"{kind} r{round} {commit[:8]}", tags=tags)
            now = _millis()
            metrics = {f"global.{k}": v for k, v in global_metrics.items()}
            for u in updates:
                metrics.update({f"contributor.{u.author[:8]}.{k}": v for k, v in u.metrics.items()})
                metrics[f"contributor.{u.author[:8]}.n_samples"] = u.n_samples
            metrics.update({"n_updates": len(updates), "n_samples": sum(u.n_samples for u in updates)})
            client.log_batch(run.info.run_id,
                             metrics=[Metric(k, float(v), now, round) for k, v in metrics.items()],
                             params=[Param(k, str(v)) for k, v in {**params, "strategy": strategy}.items()])
            for u in updates:
                child = client.create_run(experiment, run_name=f"update {u.update[:8]}", tags={
                    "mlflow.parentRunId": run.info.run_id, "federity.update": u.update,
                    "federity.author": u.author, "federity.repository_id": repository_id})
                client.log_batch(child.info.run_id, metrics=[
                    Metric(k, float(v), now, round) for k, v in {**u.metrics, "n_samples": u.n_samples}.items()])
                client.set_terminated(child.info.run_id)
            # marking the parent last makes a half-logged run (a crash above) invisible to _find, so a re-run
            # logs the commit again instead of returning an incomplete run
            client.set_tag(run.info.run_id, "federity.parent", "true")
            client.set_terminated(run.info.run_id)
            return str(run.info.run_id)


def _millis() -> int:
    import time

    return int(time.time() * 1000)
