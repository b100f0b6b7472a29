"""Prefect settings every Federity process that runs flows uses."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings


@contextlib.contextmanager
def without_heartbeats() -> Iterator[None]:
    """Run flows without Prefect's heartbeat thread. It sleeps in 1 s steps, and each flow run waits for it to
    wake before ending: a second added to every round and to every site's run, for heartbeats only an
    automation would read. A round times its sites out itself, and the next run finishes an interrupted one."""
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
