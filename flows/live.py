"""A live view of the rounds ``federity round run`` is running: the owner's current phase and, per site, its run's
state and current phase, redrawn from the Prefect API twice a second (rich, on standard error; ``--json`` output
on standard output stays one JSON document). On a terminal the table changes in place; elsewhere (a log file)
only the last state is printed, when the rounds end."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

REFRESH_SECONDS = 0.5
ROUND_FLOW = "federated-round"
SITE_FLOW = "local-train"


def _latest_task(task_runs: list[Any], flow_run_id: Any) -> tuple[str, str]:
    """The most recently started task run of ``flow_run_id``: its name (without Prefect's suffix) and state."""
    mine = [t for t in task_runs if t.flow_run_id == flow_run_id and t.start_time is not None]
    if not mine:
        return "", ""
    latest = max(mine, key=lambda t: t.start_time)
    return latest.name.rsplit("-", 1)[0], latest.state.name if latest.state else ""


def add_row(table: Table, *cells: str) -> None:
    """A row of plain text: names and states come from the Prefect server, whose writers could put rich markup
    in a task's name (``[link=…]``, or markup that does not parse and would stop the view)."""
    table.add_row(*(Text(cell) for cell in cells))


def round_table(repo_root: Path, pools: list[str], since: datetime) -> Table:
    """The view now: the newest round flow run of the repository at ``repo_root`` started after ``since``, and
    the site runs it dispatched."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentTaskRunId,
        FlowRunFilterStartTime,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    table = Table(title="federated round", expand=False)
    for column in ("party", "run", "phase", "phase state"):
        table.add_column(column)
    root = str(Path(repo_root).resolve())
    with get_client(sync_client=True) as client:
        rounds = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[ROUND_FLOW])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
            sort=FlowRunSort.START_TIME_DESC, limit=20)
        current = next((r for r in rounds if str(r.parameters.get("repo")) == root), None)
        if current is None:
            add_row(table, "owner", "starting", "", "")
            return table
        owner_tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[current.id])))
        add_row(table, "owner", current.state.name if current.state else "", *_latest_task(owner_tasks, current.id))
        sites = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(
            any_=[t.id for t in owner_tasks])))
        site_ids = FlowRunFilterId(any_=[s.id for s in sites])
        site_tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=site_ids)) if sites else []
        pool_of = {d.id: d.name for d in client.read_deployments(  # local-train/<pool>
            flow_filter=FlowFilter(name=FlowFilterName(any_=[SITE_FLOW])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=pools)))}
    by_pool = {pool_of.get(s.deployment_id): s for s in sorted(sites, key=lambda s: s.created)}  # the newest
    if sites:
        table.title = f"federated round {max(sites, key=lambda s: s.created).parameters.get('round')}"
    for pool in pools:
        run = by_pool.get(pool)
        if run is None:
            add_row(table, pool, "waiting", "", "")
        else:
            add_row(table, pool, run.state.name if run.state else "", *_latest_task(site_tasks, run.id))
    return table


class LiveRoundView:
    """Redraws :func:`round_table` on standard error until the block ends."""

    def __init__(self, repo_root: Path, pools: list[str]) -> None:
        self._repo_root, self._pools = repo_root, pools
        self._since = datetime.now(UTC)
        self._stop = threading.Event()
        self._live = Live(console=Console(stderr=True), auto_refresh=False, transient=False)
        self._thread = threading.Thread(target=self._refresh, name="round view", daemon=True)

    def _refresh(self) -> None:
        while not self._stop.is_set():
            self._draw()
            self._stop.wait(REFRESH_SECONDS)

    def _draw(self) -> None:
        with contextlib.suppress(Exception):  # the view never fails the round: the next refresh tries again
            self._live.update(round_table(self._repo_root, self._pools, self._since), refresh=True)

    def __enter__(self) -> LiveRoundView:
        self._live.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._draw()  # the rounds' last state
        self._live.stop()
