"""MLflow tracking of a repository's versions: one run per main-line commit, one nested run per update it aggregated.

A repository has one MLflow experiment, ``federity/<name>``, found again by its ``federity.repository_id`` tag (so a
renamed repository keeps its experiment, and two repositories with one name do not share one). The store is SQLite
under the repository's ``.federity/`` by default, or any MLflow tracking server: the same code talks to both.

Logging is idempotent per commit: a commit's run is marked ``FINISHED`` only after everything in it, its nested
runs included, was written, and ``log_commit`` returns the finished run it finds instead of logging again. A run left
unfinished by a crash is deleted when the commit is logged again, so each commit shows one run.

Only the ids and numbers passed in are logged: no autologging, no system metrics, no artifacts, and none of the
context tags ``mlflow.start_run`` adds (user name, source file, git commit of the caller). MLflow's usage telemetry
is off, and nothing MLflow prints reaches stdout, where ``--json`` output goes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

from federity.errors import FederityError

DEFAULT_DB = ".federity/mlflow.db"
"""The default store, a SQLite file under the repository root (``.federity/`` is not tracked by git)."""

EXPERIMENT_PREFIX = "federity/"
PARENT_TAGS = ("federity.commit", "federity.round", "federity.repository", "federity.repository_id", "federity.kind")
UPDATE_TAGS = ("federity.update", "federity.author", "federity.repository_id", "federity.round", "federity.kind")

# MLflow reads these at call time; Federity's defaults apply only while it calls MLflow, and only where the user has
# not set the variable. Retries are bounded because MLflow's own default (7 retries, backoff factor 2) keeps a round
# waiting for minutes on an unreachable server; the Prefect task that tracks a round retries on its own.
_MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # no usage events sent to MLflow's telemetry endpoint
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # set_terminated on a server prints "View run ..." to stdout
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
_QUIET_LOGGERS = ("mlflow", "alembic")  # "Creating initial MLflow database tables..." and migration steps
_LOCK = threading.RLock()
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_METRIC_KEY_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.\- ]")
_MAX_KEY_LENGTH = 250  # MLflow's limit for metric and param keys

log = logging.getLogger(__name__)


class TrackingError(FederityError, RuntimeError):
    """The MLflow tracking store could not be reached or written, or was given values it cannot hold."""


@dataclass
class UpdateMetrics:
    """What an accepted contributor update reports: its commit id, author wallet, sample count and local metrics."""

    update: str
    author: str
    n_samples: int
    metrics: dict[str, float]


@contextlib.contextmanager
def _mlflow_session() -> Iterator[None]:
    """Federity's MLflow environment defaults and quiet MLflow loggers, for the duration of one operation.

    One operation at a time per process: the environment and logger levels are process-wide.
    """
    with _LOCK:
        added = [name for name in _MLFLOW_ENV_DEFAULTS if name not in os.environ]
        for name in added:
            os.environ[name] = _MLFLOW_ENV_DEFAULTS[name]
        try:
            import mlflow  # noqa: F401  (its first import sets its loggers' levels: quiet them after it)

            loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
            levels = [lg.level for lg in loggers]
            for lg in loggers:
                lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
            try:
                yield
            finally:
                for lg, level in zip(loggers, levels, strict=True):
                    lg.setLevel(level)
        finally:
            for name in added:
                os.environ.pop(name, None)


def _redact(uri: str) -> str:
    """``uri`` without a password (``https://user:secret@host`` → ``https://user:***@host``)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _check_id(what: str, value: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise TrackingError(f"{what} {value!r} is not an id Federity tracks",
                            f"pass the {what} as Federity prints it (letters, digits, '_' or '-')")
    return value


def _flatten(params: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """``{"dp": {"clip": 1.0}}`` → ``("dp.clip", "1.0")``; strings as they are, other values as JSON."""
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value if isinstance(value, str) else json.dumps(value)


def _metric_key(key: str) -> str:
    """A key MLflow accepts: characters other than letters, digits, ``_ . - space`` become ``_``."""
    return _METRIC_KEY_BAD_CHARS.sub("_", str(key))[:_MAX_KEY_LENGTH]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, Real) and not isinstance(value, bool) else None


def _contributor_metrics(metrics: Mapping[str, Any], update: str) -> dict[str, float]:
    """A contributor's numeric metrics; anything else is left out (contributors choose these keys and values)."""
    kept = {}
    for key, value in metrics.items():
        number = _number(value)
        if number is None:
            log.warning("update %s: metric %r is not a number; not tracked", update[:12], _metric_key(key))
        else:
            kept[_metric_key(key)] = number
    return kept


def contributor_labels(updates: list[UpdateMetrics]) -> list[str]:
    """The label each update's metrics go under in its commit's run: ``contributor.<label>.<metric>``.

    The label is the author's first 8 characters, longer when two authors share them, and followed by
    ``-<update[:8]>`` when one author has several updates in the commit, so no two updates share a label.
    """
    authors = list(dict.fromkeys(u.author for u in updates))
    width = 8
    while len({a[:width] for a in authors}) < len(authors):
        width += 1
    per_author = Counter(u.author for u in updates)
    return [u.author[:width] + (f"-{u.update[:8]}" if per_author[u.author] > 1 else "") for u in updates]


class Tracker:
    """One repository's versions in an MLflow tracking store: a SQLite file or a tracking server."""

    def __init__(self, repo_root: Path, tracking_uri: str | None = None) -> None:
        """Track into ``tracking_uri``, or into ``<repo_root>/.federity/mlflow.db`` (created on first use)."""
        if tracking_uri is None:
            db = Path(repo_root).resolve() / DEFAULT_DB
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TrackingError(f"cannot create the MLflow store's directory {db.parent}: {exc.strerror or exc}",
                                    f"make {db.parent} a writable directory, or set MLFLOW_TRACKING_URI to "
                                    "another store") from exc
            tracking_uri = f"sqlite:///{db}"
        self._uri = tracking_uri
        self._experiments: dict[str, str] = {}

    @property
    def tracking_uri(self) -> str:
        """The store's URI, as MLflow takes it (``sqlite:////abs/path.db`` or ``http(s)://host:port``)."""
        return self._uri

    @property
    def display_uri(self) -> str:
        """The store's URI with any password masked: safe to print, log or record (e.g. in git notes)."""
        return _redact(self._uri)

    @property
    def is_server(self) -> bool:
        """Whether the store is an MLflow tracking server (rather than a database this process opens)."""
        return self._uri.startswith(("http://", "https://"))

    def ui_command(self) -> str:
        """Where to look at the runs: the server's URL, or the ``mlflow ui`` command that opens the SQLite store."""
        if self.is_server:
            return self.display_uri
        return f"mlflow ui --backend-store-uri {shlex.quote(self._uri)}"

    def check(self) -> None:
        """Open the store (creating and migrating a new SQLite database, which takes seconds) or reach the server."""
        with self._session() as client:
            client.search_experiments(max_results=1)

    def run_for_commit(self, repository_id: str, commit: str) -> str | None:
        """The id of ``commit``'s finished run in the repository's experiment, or None if it has none."""
        _check_id("repository id", repository_id)
        _check_id("commit", commit)
        with self._session() as client:
            experiment = self._find_experiment(client, repository_id)
            return None if experiment is None else self._finished_run(client, experiment, repository_id, commit)

    def log_commit(self, *, repository: str, repository_id: str, commit: str, round: int, kind: str,
                   params: Mapping[str, Any], strategy: str, global_metrics: Mapping[str, float],
                   updates: list[UpdateMetrics]) -> str:
        """Log ``commit`` and the updates it aggregated; return its run id. Idempotent per commit.

        The parent run holds ``params`` (flattened, plus ``strategy``), ``global.<metric>`` for ``global_metrics``,
        ``contributor.<label>.<metric>`` and ``contributor.<label>.n_samples`` per update (see
        :func:`contributor_labels`), ``n_updates`` and the total ``n_samples``; each update has a nested run with
        its local metrics and ``n_samples``. Every metric is logged at step ``round``.
        """
        _check_id("repository id", repository_id)
        _check_id("commit", commit)
        round = int(round)  # the metrics' step
        for u in updates:
            _check_id("update", u.update)
            _check_id("author", u.author)
        metrics = {}
        for key, value in global_metrics.items():
            number = _number(value)
            if number is None:
                raise TrackingError(f"global metric {key!r} is {value!r}, not a number",
                                    "pass numbers only as global metrics")
            metrics[_metric_key(f"global.{key}")] = number
        labels = contributor_labels(updates)
        children = []
        for u, label in zip(updates, labels, strict=True):
            local = _contributor_metrics(u.metrics, u.update)
            metrics.update({_metric_key(f"contributor.{label}.{k}"): v for k, v in local.items()})
            metrics[_metric_key(f"contributor.{label}.n_samples")] = float(u.n_samples)
            children.append((u, label, {**local, "n_samples": float(u.n_samples)}))
        metrics["n_updates"] = float(len(updates))
        metrics["n_samples"] = float(sum(u.n_samples for u in updates))
        run_params = {**dict(_flatten(params)), "strategy": strategy}
        tags = dict(zip(PARENT_TAGS, (commit, str(round), repository, repository_id, kind), strict=True))

        with self._session() as client:
            from mlflow.entities import Metric, Param

            experiment = self._experiment(client, repository, repository_id)
            existing = self._finished_run(client, experiment, repository_id, commit)
            if existing is not None:
                return existing
            self._delete_unfinished(client, experiment, repository_id, commit)
            now = int(time.time() * 1000)
            parent = client.create_run(experiment, run_name=f"{kind} r{round} {commit[:8]}", tags=tags).info.run_id
            client.log_batch(parent, metrics=[Metric(k, v, now, round) for k, v in metrics.items()],
                             params=[Param(k, v) for k, v in run_params.items()])
            for u, label, child_metrics in children:
                child_tags = dict(zip(UPDATE_TAGS, (u.update, u.author, repository_id, str(round), "update"),
                                      strict=True))
                child = client.create_run(experiment, run_name=f"update {u.update[:8]} {label}",
                                          tags={**child_tags, "mlflow.parentRunId": parent}).info.run_id
                client.log_batch(child, metrics=[Metric(k, v, now, round) for k, v in child_metrics.items()])
                client.set_terminated(child)
            # FINISHED last: a run a crash interrupted above stays RUNNING, and is not taken for the commit's run
            client.set_terminated(parent)
            return str(parent)

    # -- internals ----------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        """An MLflow client on this store; any failure inside becomes a :class:`TrackingError`."""
        with _mlflow_session():
            try:
                from mlflow import MlflowClient

                yield MlflowClient(tracking_uri=self._uri)
            except FederityError:
                raise
            except Exception as exc:
                raise self._error(exc) from exc

    def _error(self, exc: Exception) -> TrackingError:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        password = urllib.parse.urlsplit(self._uri).password
        if password:
            detail = detail.replace(password, "***")
        if len(detail) > 400:
            detail = detail[:400] + "…"
        uri = self.display_uri
        if self.is_server:
            return TrackingError(f"the MLflow tracking server {uri} failed: {detail}",
                                 "start the server (or fix MLFLOW_TRACKING_URI; unset it to track in the "
                                 f"repository's {DEFAULT_DB}), then run `federity track` again")
        return TrackingError(f"the MLflow tracking store {uri} failed: {detail}",
                             "check that the database file and its directory are writable and hold an MLflow store "
                             "(move a damaged file aside to start a new one), then run `federity track` again")

    def _find_experiment(self, client: Any, repository_id: str) -> str | None:
        if repository_id in self._experiments:
            return self._experiments[repository_id]
        from mlflow.entities import ViewType

        found = client.search_experiments(view_type=ViewType.ALL, max_results=1,
                                          filter_string=f"tags.`federity.repository_id` = '{repository_id}'")
        if not found:
            return None
        experiment = found[0]
        if experiment.lifecycle_stage == "deleted":  # deleted in the UI: the next commit brings it back
            client.restore_experiment(experiment.experiment_id)
        self._experiments[repository_id] = str(experiment.experiment_id)
        return self._experiments[repository_id]

    def _experiment(self, client: Any, repository: str, repository_id: str) -> str:
        """The repository's experiment, created on first use as ``federity/<name>`` (suffixed by the id if taken)."""
        existing = self._find_experiment(client, repository_id)
        if existing is not None:
            return existing
        from mlflow.exceptions import MlflowException

        names = [f"{EXPERIMENT_PREFIX}{repository}", f"{EXPERIMENT_PREFIX}{repository} ({repository_id[:8]})",
                 f"{EXPERIMENT_PREFIX}{repository} ({repository_id})"]
        name = next((n for n in names if client.get_experiment_by_name(n) is None), names[-1])
        tags = {"federity.repository_id": repository_id, "federity.repository": repository}
        try:
            experiment = str(client.create_experiment(name, tags=tags, **self._artifact_location(repository_id)))
        except MlflowException:
            # another process created it meanwhile
            experiment = self._find_experiment(client, repository_id)
            if experiment is None:
                raise
        self._experiments[repository_id] = experiment
        return experiment

    def _artifact_location(self, repository_id: str) -> dict[str, str]:
        """Keep a SQLite store's artifact root beside the database, not in ``./mlruns`` of whoever created it."""
        if self.is_server or not self._uri.startswith("sqlite:///"):
            return {}
        db = Path(self._uri.removeprefix("sqlite:///")).resolve()
        return {"artifact_location": (db.parent / "mlartifacts" / repository_id).as_uri()}

    @staticmethod
    def _commit_runs(client: Any, experiment: str, repository_id: str, commit: str, status: str) -> list[Any]:
        return list(client.search_runs(
            [experiment], order_by=["attributes.start_time ASC"],
            filter_string=f"tags.`federity.repository_id` = '{repository_id}' and "
                          f"tags.`federity.commit` = '{commit}' and attributes.status {status}"))

    def _finished_run(self, client: Any, experiment: str, repository_id: str, commit: str) -> str | None:
        runs = self._commit_runs(client, experiment, repository_id, commit, "= 'FINISHED'")
        return str(runs[0].info.run_id) if runs else None

    def _delete_unfinished(self, client: Any, experiment: str, repository_id: str, commit: str) -> None:
        """Delete the runs of ``commit`` that a crash left unfinished, with their nested runs."""
        for run in self._commit_runs(client, experiment, repository_id, commit, "!= 'FINISHED'"):
            run_id = run.info.run_id
            for child in client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"):
                client.delete_run(child.info.run_id)
            client.delete_run(run_id)
