"""MLflow tracking against a real SQLite store: one run per commit, nested runs per update, idempotent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from federity.tracking import Tracker, TrackingError, UpdateMetrics

UPDATES = [UpdateMetrics("a" * 40, "Alice1111xyz", 90, {"accuracy": 0.9, "loss": 0.3}),
           UpdateMetrics("b" * 40, "Bob22222xyz", 30, {"accuracy": 0.8, "loss": 0.5})]


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated MLflow SQLite database, made once (migration takes seconds) and copied per test."""
    root = tmp_path_factory.mktemp("mlflow-template")
    Tracker(root).run_for_commit("template", "0" * 32, "0" * 40)
    return root / ".federity" / "mlflow.db"


@pytest.fixture
def tracker(tmp_path: Path, migrated_db: Path) -> Tracker:
    (tmp_path / ".federity").mkdir()
    shutil.copy(migrated_db, tmp_path / ".federity" / "mlflow.db")
    return Tracker(tmp_path)


def _log(tracker: Tracker, commit: str = "c" * 40, updates: list[UpdateMetrics] = UPDATES) -> str:
    return tracker.log_commit(repository="demo", repository_id="f" * 32, commit=commit, round=3, kind="aggregate",
                              params={"lr": 0.1, "epochs": 2}, strategy="fedavg",
                              global_metrics={"accuracy": 0.95}, updates=updates)


def test_a_commit_gets_one_run_with_its_tags_params_metrics_and_a_nested_run_per_update(tracker: Tracker) -> None:
    from mlflow import MlflowClient

    run_id = _log(tracker)
    client = MlflowClient(tracking_uri=tracker.tracking_uri)
    run = client.get_run(run_id)
    federity_tags = {k: v for k, v in run.data.tags.items() if k.startswith("federity.")}
    assert federity_tags == {"federity.commit": "c" * 40, "federity.round": "3", "federity.repository": "demo",
                             "federity.repository_id": "f" * 32, "federity.kind": "aggregate",
                             "federity.parent": "true"}
    assert run.data.params == {"lr": "0.1", "epochs": "2", "strategy": "fedavg"}
    assert run.data.metrics == {
        "global.accuracy": 0.95, "n_updates": 2, "n_samples": 120,
        "contributor.Alice111.accuracy": 0.9, "contributor.Alice111.loss": 0.3, "contributor.Alice111.n_samples": 90,
        "contributor.Bob22222.accuracy": 0.8, "contributor.Bob22222.loss": 0.5, "contributor.Bob22222.n_samples": 30,
    }
    children = client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    assert sorted(c.data.tags["federity.update"] for c in children) == ["a" * 40, "b" * 40]
    assert all(c.data.metrics["n_samples"] in (90, 30) for c in children)


def test_logging_a_commit_again_returns_the_same_run(tracker: Tracker) -> None:
    first = _log(tracker)
    assert _log(tracker) == first
    assert tracker.run_for_commit("demo", "f" * 32, "c" * 40) == first
    assert _log(tracker, commit="d" * 40) != first


def test_an_unreachable_tracking_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrackingError, match=r"MLflow tracking store http://127\.0\.0\.1:9 failed"):
        _log(Tracker(tmp_path, "http://127.0.0.1:9"))
