"""Local training at the sites: start each site's local-train run, then wait for them. A site that fails or does
not finish in time is left out of the round (its run is cancelled), and the round goes on with the others; an
update that arrives late carries the round's nonce but finds the round closed."""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from prefect import task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled

POLL_SECONDS = 0.25
NOT_SERVED = "NOT SERVED"
TIMED_OUT = "TIMED OUT"


@task(name="dispatch to sites")
def dispatch(pools: list[str], pin: dict[str, Any]) -> dict[str, str]:
    """Start the ``local-train/<pool>`` deployment of every pool with the round's pin (remote, base, round,
    nonce), all at once; returns each pool's flow run id, or ``NOT SERVED`` for a pool no agent registered."""
    def start(pool: str) -> str:
        try:
            return str(run_deployment(f"local-train/{pool}", parameters=pin, timeout=0).id)
        except ObjectNotFound:
            return NOT_SERVED

    with ThreadPoolExecutor(max_workers=len(pools)) as threads:  # each thread in this task's context: the site
        runs = [threads.submit(contextvars.copy_context().run, start, pool) for pool in pools]  # runs link to it
        return {pool: run.result() for pool, run in zip(pools, runs, strict=True)}


@task(name="wait for sites")
def wait_for_sites(runs: dict[str, str], timeout: float) -> dict[str, str]:
    """Poll each site's flow run until it is final or ``timeout`` seconds pass; returns each site's state name
    (``TIMED OUT`` for a run cancelled at the deadline, ``NOT SERVED`` as :func:`dispatch` found)."""
    deadline = time.monotonic() + timeout
    states = {pool: run for pool, run in runs.items() if run == NOT_SERVED}
    pending = {pool: UUID(run) for pool, run in runs.items() if run != NOT_SERVED}
    with get_client(sync_client=True) as client:
        while pending and time.monotonic() < deadline:
            by_id = {run_id: pool for pool, run_id in pending.items()}
            for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(by_id)))):
                if run.state is not None and run.state.is_final():
                    states[by_id[run.id]] = run.state.name
                    del pending[by_id[run.id]]
            if pending:
                time.sleep(POLL_SECONDS)
        for pool, run_id in pending.items():
            client.set_flow_run_state(run_id, Cancelled(message=f"no result within {timeout:.0f} s"), force=True)
            states[pool] = TIMED_OUT
    return states
