"""Local training at the sites: start each site's local-train run and wait for them. A site that fails or does
not finish in time is left out of the round (its run is cancelled), and the round goes on with the others; an
update that arrives late carries the round's nonce but finds the round closed."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import task
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled

POLL_SECONDS = 1.0


def wait_for_site_runs(runs: dict[str, FlowRun], timeout: float) -> dict[str, str]:
    """Poll each site's flow run until it is final or ``timeout`` seconds pass; returns each site's state name
    (``TIMED OUT`` for a run cancelled at the deadline)."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    pending: dict[str, UUID] = {pool: run.id for pool, run in runs.items()}
    with get_client(sync_client=True) as client:
        while pending and time.monotonic() < deadline:
            for pool, run_id in list(pending.items()):
                state = client.read_flow_run(run_id).state
                if state is not None and state.is_final():
                    states[pool] = state.name
                    del pending[pool]
            if pending:
                time.sleep(POLL_SECONDS)
        for pool, run_id in pending.items():
            client.set_flow_run_state(run_id, Cancelled(message=f"no result within {timeout:.0f} s"), force=True)
            states[pool] = "TIMED OUT"
    return states


@task(name="local training at sites")
def train_at_sites(pools: list[str], pin: dict[str, Any], timeout: float) -> dict[str, str]:
    """Start the ``local-train/<pool>`` deployment of every pool with the round's pin (remote, base, round, nonce)
    and wait up to ``timeout``; returns each pool's state (``NOT SERVED`` for a pool no agent registered)."""
    runs, states = {}, {}
    for pool in pools:
        try:
            runs[pool] = run_deployment(f"local-train/{pool}", parameters=pin, timeout=0)
        except ObjectNotFound:
            states[pool] = "NOT SERVED"
    return {**states, **wait_for_site_runs(runs, timeout)}
