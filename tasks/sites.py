"""Waiting for the sites' local-train runs: a site that fails or does not finish in time is left out of the round
(its run is cancelled, so a late update cannot join), and the round goes on with the others."""

from __future__ import annotations

import time
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
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
