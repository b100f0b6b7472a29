"""MLflow tracking against a real SQLite store: one run per commit, a nested run per update, idempotent, private."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from federity.tracking import DEFAULT_DB, Tracker, TrackingError, UpdateMetrics, contributor_labels

REPO_ID = "f" * 32
ALICE, BOB = "Alice1111xyzAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "Bob22222xyzBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
UPDATES = [UpdateMetrics("a" * 40, ALICE, 90, {"accuracy": 0.9, "loss": 0.3}),
           UpdateMetrics("b" * 40, BOB, 30, {"accuracy": 0.8, "loss": 0.5})]
# the only tags MLflow adds itself when runs are made through an explicit MlflowClient
MLFLOW_SYSTEM_TAGS = {"mlflow.runName", "mlflow.parentRunId"}


@pytest.fixture
def tracker(tmp_path: Path, seed_mlflow_db: Callable[[Path], Path]) -> Tracker:
    seed_mlflow_db(tmp_path)
    return Tracker(tmp_path)


def _log(tracker: Tracker, commit: str = "c" * 40, updates: list[UpdateMetrics] = UPDATES, **overrides: Any) -> str:
    args: dict[str, Any] = {"repository": "demo", "repository_id": REPO_ID, "commit": commit, "round": 3,
                            "kind": "aggregate", "params": {"lr": 0.1, "epochs": 2}, "strategy": "fedavg",
                            "global_metrics": {"accuracy": 0.95}, "updates": updates}
    return tracker.log_commit(**{**args, **overrides})


def _client(tracker: Tracker) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracker.tracking_uri)


def _runs(tracker: Tracker, *, deleted: bool = False) -> list[Any]:
    from mlflow.entities import ViewType

    client = _client(tracker)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(experiments, run_view_type=ViewType.ALL if deleted else ViewType.ACTIVE_ONLY)


def _children(tracker: Tracker, run_id: str) -> list[Any]:
    return sorted((r for r in _runs(tracker) if r.data.tags.get("mlflow.parentRunId") == run_id),
                  key=lambda r: r.data.tags["federity.update"])


def test_a_commit_gets_one_finished_run_with_its_tags_params_and_metrics(tracker: Tracker) -> None:
    run_id = _log(tracker)

    run = _client(tracker).get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "aggregate r3 cccccccc"
    assert run.data.tags == {"federity.commit": "c" * 40, "federity.round": "3", "federity.repository": "demo",
                             "federity.repository_id": REPO_ID, "federity.kind": "aggregate",
                             "mlflow.runName": "aggregate r3 cccccccc"}
    assert run.data.params == {"lr": "0.1", "epochs": "2", "strategy": "fedavg"}
    assert run.data.metrics == {
        "global.accuracy": 0.95, "n_updates": 2, "n_samples": 120,
        "contributor.Alice111.accuracy": 0.9, "contributor.Alice111.loss": 0.3, "contributor.Alice111.n_samples": 90,
        "contributor.Bob22222.accuracy": 0.8, "contributor.Bob22222.loss": 0.5, "contributor.Bob22222.n_samples": 30,
    }
    history = _client(tracker).get_metric_history(run_id, "global.accuracy")
    assert [m.step for m in history] == [3]
    experiment = _client(tracker).get_experiment(run.info.experiment_id)
    assert experiment.name == "federity/demo"
    assert experiment.tags == {"federity.repository_id": REPO_ID, "federity.repository": "demo"}


def test_each_update_gets_a_nested_run_with_its_local_metrics(tracker: Tracker) -> None:
    run_id = _log(tracker)

    alice, bob = _children(tracker, run_id)
    assert alice.info.status == bob.info.status == "FINISHED"
    assert alice.data.tags == {"federity.update": "a" * 40, "federity.author": ALICE, "federity.round": "3",
                               "federity.repository_id": REPO_ID, "federity.kind": "update",
                               "mlflow.parentRunId": run_id, "mlflow.runName": "update aaaaaaaa Alice111"}
    assert alice.data.metrics == {"accuracy": 0.9, "loss": 0.3, "n_samples": 90}
    assert bob.data.metrics == {"accuracy": 0.8, "loss": 0.5, "n_samples": 30}
    assert alice.data.params == bob.data.params == {}


def test_nothing_but_the_given_ids_and_numbers_is_logged(tracker: Tracker, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _log(tracker)

    runs = _runs(tracker, deleted=True)
    assert len(runs) == 3
    given = {"c" * 40, "3", "demo", REPO_ID, "aggregate", "update", "a" * 40, "b" * 40, ALICE, BOB}
    for run in runs:
        system = {k for k in run.data.tags if k.startswith("mlflow.")}
        assert system <= MLFLOW_SYSTEM_TAGS
        assert {v for k, v in run.data.tags.items() if k not in system} <= given
        assert run.info.user_id == "unknown"  # no OS user name
        assert not run.inputs.dataset_inputs
        assert _client(tracker).list_artifacts(run.info.run_id) == []
    assert {p for r in runs for p in r.data.params.values()} == {"0.1", "2", "fedavg"}
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / ".federity" / "mlartifacts").exists()


def test_logging_a_commit_again_returns_its_run_and_logs_nothing_new(tracker: Tracker) -> None:
    first = _log(tracker)

    assert _log(tracker, global_metrics={"accuracy": 0.1}, updates=UPDATES[:1]) == first
    assert len(_runs(tracker, deleted=True)) == 3
    assert _client(tracker).get_run(first).data.metrics["global.accuracy"] == 0.95


def test_a_run_a_crash_left_unfinished_is_replaced_by_a_complete_one(tracker: Tracker) -> None:
    from mlflow.entities import ViewType

    client = _client(tracker)
    experiment = client.get_experiment(client.get_run(_log(tracker, commit="d" * 40)).info.experiment_id)
    crashed = client.create_run(experiment.experiment_id, tags={"federity.commit": "c" * 40,
                                                               "federity.repository_id": REPO_ID}).info.run_id
    child = client.create_run(experiment.experiment_id, tags={"mlflow.parentRunId": crashed}).info.run_id
    assert tracker.run_for_commit(REPO_ID, "c" * 40) is None

    run_id = _log(tracker)

    assert run_id != crashed and tracker.run_for_commit(REPO_ID, "c" * 40) == run_id
    assert client.get_run(crashed).info.lifecycle_stage == client.get_run(child).info.lifecycle_stage == "deleted"
    active = client.search_runs([experiment.experiment_id], "tags.`federity.commit` = '" + "c" * 40 + "'",
                                run_view_type=ViewType.ACTIVE_ONLY)
    assert [r.info.run_id for r in active] == [run_id]


def test_two_commits_get_two_runs_in_one_experiment(tracker: Tracker) -> None:
    first, second = _log(tracker, commit="c" * 40), _log(tracker, commit="d" * 40, round=4)

    client = _client(tracker)
    assert first != second
    assert client.get_run(first).info.experiment_id == client.get_run(second).info.experiment_id
    assert tracker.run_for_commit(REPO_ID, "c" * 40) == first
    assert tracker.run_for_commit(REPO_ID, "d" * 40) == second
    assert tracker.run_for_commit(REPO_ID, "e" * 40) is None
    parents = [r for r in _runs(tracker) if "federity.commit" in r.data.tags]
    assert sorted(r.info.run_name for r in parents) == ["aggregate r3 cccccccc", "aggregate r4 dddddddd"]


def test_run_for_commit_of_an_untracked_repository_is_none_and_creates_nothing(tracker: Tracker) -> None:
    assert tracker.run_for_commit("0" * 32, "c" * 40) is None
    assert [e.name for e in _client(tracker).search_experiments()] == ["Default"]


def test_two_repositories_with_one_name_get_two_experiments(tracker: Tracker) -> None:
    mine = _log(tracker)
    theirs = _log(tracker, repository_id="0123456789" * 3 + "ab")

    client = _client(tracker)
    names = {client.get_experiment(client.get_run(r).info.experiment_id).name for r in (mine, theirs)}
    assert names == {"federity/demo", "federity/demo (01234567)"}


def test_a_renamed_repository_keeps_its_experiment(tracker: Tracker, tmp_path: Path) -> None:
    first = _log(tracker)
    second = _log(Tracker(tmp_path), commit="d" * 40, repository="renamed")

    client = _client(tracker)
    assert client.get_run(first).info.experiment_id == client.get_run(second).info.experiment_id


def test_an_experiment_deleted_in_the_ui_is_restored_by_the_next_commit(tracker: Tracker, tmp_path: Path) -> None:
    client = _client(tracker)
    experiment = client.get_run(_log(tracker)).info.experiment_id
    client.delete_experiment(experiment)

    run_id = _log(Tracker(tmp_path), commit="d" * 40)

    assert client.get_run(run_id).info.experiment_id == experiment
    assert client.get_experiment(experiment).lifecycle_stage == "active"


def test_params_are_flattened_and_written_as_json_scalars(tracker: Tracker) -> None:
    run_id = _log(tracker, params={"lr": 0.1, "dp": {"enabled": True, "clip": 1.0, "noise": None}, "hidden": [4, 8]})

    assert _client(tracker).get_run(run_id).data.params == {
        "lr": "0.1", "dp.enabled": "true", "dp.clip": "1.0", "dp.noise": "null", "hidden": "[4, 8]",
        "strategy": "fedavg"}


def test_contributor_metrics_that_are_not_numbers_are_left_out_and_odd_names_made_valid(
        tracker: Tracker, caplog: pytest.LogCaptureFixture) -> None:
    odd = UpdateMetrics("a" * 40, ALICE, 10, {"f1 score": 0.7, "auc/roc!": 0.6, "note": "hello", "flag": True})

    run_id = _log(tracker, updates=[odd])

    [child] = _children(tracker, run_id)
    assert child.data.metrics == {"f1 score": 0.7, "auc_roc_": 0.6, "n_samples": 10}
    assert "'note' is not a number" in caplog.text and "'flag' is not a number" in caplog.text
    assert "hello" not in caplog.text


def test_a_global_metric_that_is_not_a_number_is_refused(tracker: Tracker) -> None:
    with pytest.raises(TrackingError, match="global metric 'accuracy' is 'high', not a number"):
        _log(tracker, global_metrics={"accuracy": "high"})


@pytest.mark.parametrize("field", ["commit", "repository_id"])
def test_an_id_that_could_change_a_search_is_refused(tracker: Tracker, field: str) -> None:
    with pytest.raises(TrackingError, match="is not an id Federity tracks"):
        _log(tracker, **{field: "c' or tags.x != '"})


def test_contributors_with_one_prefix_or_several_updates_get_distinct_labels() -> None:
    updates = [UpdateMetrics("1" * 40, "Samepref1xxx", 1, {}), UpdateMetrics("2" * 40, "Samepref2xxx", 1, {}),
               UpdateMetrics("3" * 40, "Samepref1xxx", 1, {}), UpdateMetrics("4" * 40, "Other0000xxx", 1, {})]

    assert contributor_labels(updates) == ["Samepref1-11111111", "Samepref2", "Samepref1-33333333", "Other0000"]
    assert contributor_labels(UPDATES) == ["Alice111", "Bob22222"]


def test_mlflow_writes_nothing_to_stdout_or_stderr_and_leaves_the_environment_as_it_was(
        tracker: Tracker, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_DISABLE_TELEMETRY", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW")}

    _log(tracker)
    tracker.run_for_commit(REPO_ID, "c" * 40)

    assert capfd.readouterr() == ("", "")
    assert {k: v for k, v in os.environ.items() if k.startswith("MLFLOW")} == before


def test_a_fresh_store_is_created_silently_without_mlflow_at_import_or_telemetry(tmp_path: Path) -> None:
    # a child process: the first import of mlflow and a fresh migration, outside pytest (whose presence alone
    # turns MLflow's telemetry off)
    script = f"""
import json, sys
from pathlib import Path
import federity.tracking as tracking
imported_at_import = "mlflow" in sys.modules
tracker = tracking.Tracker(Path({str(tmp_path)!r}))
run_id = tracker.log_commit(repository="demo", repository_id="{REPO_ID}", commit="{"c" * 40}", round=1,
                            kind="aggregate", params={{}}, strategy="fedavg", global_metrics={{"accuracy": 0.5}},
                            updates=[])
from mlflow.telemetry.client import get_telemetry_client
print(json.dumps({{"mlflow_at_import": imported_at_import, "telemetry": get_telemetry_client() is not None,
                  "run": run_id == tracker.run_for_commit("{REPO_ID}", "{"c" * 40}")}}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "CI") and "MLFLOW" not in k}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    seconds = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"mlflow_at_import": False, "telemetry": False, "run": True}
    assert result.stdout.count("\n") == 1 and result.stderr == ""
    assert (tmp_path / DEFAULT_DB).is_file()
    assert seconds < 60


def test_the_default_store_is_sqlite_under_the_repository(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)

    assert tracker.tracking_uri == f"sqlite:///{tmp_path.resolve() / DEFAULT_DB}"
    assert (tmp_path / ".federity").is_dir() and not tracker.is_server
    assert tracker.ui_command() == f"mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve() / DEFAULT_DB}"


def test_a_server_store_is_shown_by_its_url_without_its_password(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path, "https://owner:s3cret@mlflow.example.org")

    assert tracker.is_server and tracker.ui_command() == tracker.display_uri == "https://owner:***@mlflow.example.org"
    assert tracker.tracking_uri == "https://owner:s3cret@mlflow.example.org"
    assert not (tmp_path / ".federity").exists()


def test_an_unreachable_tracking_server_is_a_clear_error_within_seconds(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    started = time.monotonic()

    with pytest.raises(TrackingError, match=r"tracking server http://owner:\*\*\*@127\.0\.0\.1:9 failed") as error:
        _log(Tracker(tmp_path, "http://owner:s3cret@127.0.0.1:9"))

    assert time.monotonic() - started < 10
    assert "s3cret" not in str(error.value) and "start the server" in error.value.hint


def test_a_store_directory_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".federity").write_text("not a directory")

    with pytest.raises(TrackingError, match=r"cannot create the MLflow store's directory .*\.federity") as error:
        Tracker(tmp_path)
    assert "MLFLOW_TRACKING_URI" in error.value.hint


def test_an_unwritable_database_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    tracker = Tracker(tmp_path, f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}")

    with pytest.raises(TrackingError, match=r"tracking store sqlite:///.*/file/mlflow\.db failed") as error:
        _log(tracker)
    assert "writable" in error.value.hint


def test_a_file_that_is_not_an_mlflow_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".federity").mkdir()
    (tmp_path / DEFAULT_DB).write_bytes(b"not a database" * 100)

    with pytest.raises(TrackingError, match="file is not a database") as error:
        Tracker(tmp_path).run_for_commit(REPO_ID, "c" * 40)
    assert "move a damaged file aside" in error.value.hint
