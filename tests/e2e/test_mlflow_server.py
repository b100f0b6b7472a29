"""Tracking through a real MLflow tracking server on localhost (``mlflow server`` on SQLite), as when scaled out."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from federity.tracking import Tracker, UpdateMetrics

STARTUP_TIMEOUT = 120  # seconds; the server starts in ≈9 s on this machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group (``mlflow server`` runs uvicorn in a child process)."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """The URL of an MLflow tracking server on a SQLite file, started for the test and stopped after it."""
    port, log = _free_port(), tmp_path / "mlflow-server.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner and its eight huey processes
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--default-artifact-root", str(tmp_path / "artifacts")]
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                  start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer within {STARTUP_TIMEOUT} s:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        _stop(server)


@pytest.mark.e2e
def test_a_commit_is_tracked_through_a_tracking_server(mlflow_server: str, tmp_path: Path,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    tracker = Tracker(tmp_path / "repo", mlflow_server)
    updates = [UpdateMetrics("a" * 40, "Alice1111xyz", 90, {"accuracy": 0.9}),
               UpdateMetrics("b" * 40, "Bob22222xyz", 30, {"accuracy": 0.8})]
    args = {"repository": "demo", "repository_id": "f" * 32, "commit": "c" * 40, "round": 1, "kind": "aggregate",
            "params": {"lr": 0.1}, "strategy": "fedavg", "global_metrics": {"accuracy": 0.95}, "updates": updates}

    run_id = tracker.log_commit(**args)

    assert capfd.readouterr().out == ""  # MLflow prints "View run ... at: <url>" on stdout unless told not to
    assert tracker.log_commit(**args) == run_id == tracker.run_for_commit("f" * 32, "c" * 40)
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1", "strategy": "fedavg"}
    assert run.data.metrics["global.accuracy"] == 0.95 and run.data.metrics["n_samples"] == 120
    assert client.get_experiment(run.info.experiment_id).name == "federity/demo"
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert sorted(c.data.tags["federity.update"] for c in children) == ["a" * 40, "b" * 40]
    assert tracker.ui_command() == mlflow_server
    assert not (tmp_path / "repo").exists()  # a server store writes nothing into the repository
