"""``federity demo`` through Prefect: a local Prefect server, one agent process per hospital, and the round flow.

:mod:`federity.demo` builds the federation (wallets, data, repository) and measures it; this module runs it. It
lives outside the library because it imports Prefect (docs/architecture.md); ``federity demo`` imports it when
it runs.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from federity.demo import DemoSummary, finish, prepare_federation, round_summary, start_agent
from federity.errors import FederityError
from federity.prefect_server import local_prefect
from federity.tracking import Tracker


def wait_for_deployments(pools: list[str], timeout: float, agents: list[subprocess.Popen[bytes]]) -> None:
    """Wait until every pool's agent has registered its deployment with the Prefect server."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if any(a.poll() is not None for a in agents):
                raise FederityError("an agent process exited while starting",
                                    "see agent.log in the hospital's directory of the demo's work directory")
            names = {d.name for d in client.read_deployments()}
            if set(pools) <= names:
                return
            time.sleep(0.5)
    raise FederityError(f"the agents did not register within {timeout:.0f} s",
                        "see agent.log in each hospital's directory")


def run_demo(workdir: Path, hospitals: int = 3, rounds: int = 5, proofs: bool = False,
             progress: Callable[[str], None] = lambda _: None) -> DemoSummary:
    """Build the federation in ``workdir`` (which must be new or empty) and run ``rounds`` rounds of the round
    flow (auto review, FedAvg) through a local Prefect server and one agent per hospital; see
    :mod:`federity.demo`."""
    started = time.monotonic()
    federation = prepare_federation(workdir, hospitals, proofs, progress)
    progress("starting a local Prefect server (on its own PostgreSQL) and one agent process per hospital")
    with local_prefect(federation.workdir / "prefect", progress, wait=False) as server:
        env = {**os.environ, **server.env()}
        os.environ.update(server.env())
        # Prefect reads its settings on import: after the server's are set
        from flows.round import federated_round
        from flows.settings import flow_settings

        agents = [start_agent(p, d, w.path, env)  # they load what training needs while the server starts
                  for p, d, w in zip(federation.pools, federation.hospital_dirs, federation.sites, strict=True)]
        # while the agents load: create the MLflow store the rounds track into (seconds of migrations)
        tracking = threading.Thread(target=Tracker(federation.repo.root, os.environ.get("MLFLOW_TRACKING_URI")).check,
                                    name="mlflow store")
        tracking.start()
        try:
            server.wait()
            tracking.join()
            wait_for_deployments(federation.pools, 120, agents)
            summary = DemoSummary(prefect_ui=server.ui_url, workdir=str(federation.workdir))
            progress(f"Prefect UI: {server.ui_url}  (open it while the rounds run)")
            for _ in range(rounds):
                with flow_settings():
                    [result] = federated_round(repo=str(federation.repo.root), pools=federation.pools, rounds=1,
                                               review="auto", quorum=1, validation=str(federation.heldout))
                line = round_summary(federation, result)
                summary.rounds.append(line)
                progress(f"round {line['round']}: accuracy {line['accuracy']:.4f} on the held-out set, "
                         f"{line['updates']} update(s){' with verified proofs' if proofs else ''}, "
                         f"commit {line['commit'][:12]}")
        finally:
            for a in agents:
                a.terminate()
            for a in agents:
                a.wait(timeout=30)
    return finish(federation, summary, rounds, started)
