"""The Prefect worker behind every Federity process that executes flows: a site's agent (``local-train``) and the
owner's round server (``federated-round``).

Prefect's own process worker and ``flow.serve`` start a new Python process for every flow run, which then imports
Prefect, PyTorch, great-expectations and DVC again: seconds per run, for a training step that takes
milliseconds. This worker runs each flow run inside its own process, which imported all of that once when it
started, one run at a time. It polls its work pool like any Prefect worker, so the Prefect UI lists it under the
pool with its heartbeat (online or offline), and the flow runs, their task runs and their logs appear there as
usual.

It runs only the flows it was given, looked up by the flow's name. A deployment's entrypoint, storage or
job variables, which anyone who can write to the Prefect server can change, are never loaded or executed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import anyio
from prefect import Flow
from prefect.client.schemas.objects import FlowRun
from prefect.flow_engine import run_flow
from prefect.settings import PREFECT_WORKER_QUERY_SECONDS, temporary_settings
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult

from federity.errors import ConfigError
from flows.settings import flow_settings

WORKER_TYPE = "federity"
POLL_SECONDS = 0.5
"""How often the worker asks its pool for runs (Prefect's default, 10 s, would add up to 10 s to every round)."""
API_WAIT_SECONDS = 180.0
"""How long an agent or round server started before the Prefect server waits for its API."""


class RunRefused(RuntimeError):
    """A flow run this worker will not execute; Prefect records the message as the run's crash reason."""


class FlowRunResult(BaseWorkerResult):
    """How one flow run ended in this process (0: the engine ran it; its state says whether it succeeded)."""


class FederityWorker(BaseWorker[BaseJobConfiguration, BaseVariables, FlowRunResult]):
    """Runs the given flows' runs from work pool ``pool`` in this process, one at a time.

    ``admit`` sees each run's parameters before it starts and raises :class:`RunRefused` for a run this process
    must not execute (e.g. one naming another repository than the one it serves).
    """

    type = WORKER_TYPE
    _description = ("Runs Federity's flows (a site's local training, an owner's rounds) inside the worker's own "
                    "process, one run at a time, with its modules already loaded.")

    def __init__(self, pool: str, flows: Iterable[Flow[..., Any]],
                 admit: Callable[[str, dict[str, Any]], None] | None = None, name: str | None = None) -> None:
        super().__init__(work_pool_name=pool, name=name, limit=1,
                         base_job_template=self.get_default_base_job_template())
        self._flows = {f.name: f for f in flows}
        self._admit = admit

    async def run(self, flow_run: FlowRun, configuration: BaseJobConfiguration,
                  task_status: anyio.abc.TaskStatus[str] | None = None) -> FlowRunResult:
        """Run ``flow_run`` here, in a thread of this process, and wait for it."""
        name = (await self.client.read_flow(flow_run.flow_id)).name
        flow = self._flows.get(name)
        if flow is None:
            raise RunRefused(f"this worker runs only {', '.join(sorted(self._flows))}, not {name!r}")
        if self._admit is not None:
            self._admit(name, dict(flow_run.parameters))
        if task_status is not None:
            task_status.started(f"{socket.gethostname()}:{os.getpid()}")
        try:
            await anyio.to_thread.run_sync(partial(run_flow, flow, flow_run=flow_run, return_type="state"))
        except Exception:  # the engine records the flow's own failures; this is the engine itself failing
            self.get_flow_run_logger(flow_run).exception("the flow run's engine failed")
            return FlowRunResult(identifier=str(flow_run.id), status_code=1)
        return FlowRunResult(identifier=str(flow_run.id), status_code=0)


def warm_up(modules: Iterable[str]) -> None:
    """Import ``modules`` now, so that no flow run pays for them."""
    for module in modules:
        importlib.import_module(module)


def run_worker(worker: FederityWorker) -> None:
    """Poll and run until interrupted."""
    with temporary_settings({PREFECT_WORKER_QUERY_SECONDS: POLL_SECONDS}), flow_settings():
        anyio.run(partial(worker.start, printer=lambda *_: None))


def wait_for_api(timeout: float = API_WAIT_SECONDS) -> None:
    """Wait until the Prefect API (``PREFECT_API_URL``) answers: an agent may start before the server does."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            error = client.api_healthcheck()
        if error is None:
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"the Prefect API at {PREFECT_API_URL.value()} did not answer within {timeout:.0f} s "
                              f"({error})", "check PREFECT_API_URL and that the Prefect server is running")
        time.sleep(0.5)


def deploy(flow: Flow[..., Any], name: str, pool: str, **options: Any) -> str:
    """Once the API answers (:func:`wait_for_api`), create work pool ``pool`` for this kind of worker if it does
    not exist, and create (or update) ``flow``'s deployment ``name`` in it with ``options`` (parameters,
    schedule: see ``Flow.to_deployment``). Returns the deployment's id."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    wait_for_api()
    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectAlreadyExists):  # created by an earlier start: its type is checked below
            client.create_work_pool(WorkPoolCreate(name=pool, type=WORKER_TYPE,
                                                   base_job_template=FederityWorker.get_default_base_job_template()))
        kind = client.read_work_pool(pool).type
    if kind != WORKER_TYPE:
        raise ConfigError(f"the Prefect work pool {pool!r} exists with type {kind!r}, not {WORKER_TYPE!r}",
                          "choose another pool name, or delete that pool (`prefect work-pool delete`)")
    return str(flow.to_deployment(name=name, work_pool_name=pool, **options).apply())
