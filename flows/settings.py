"""Prefect settings every Federity process that runs flows uses (:func:`flow_settings`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect.settings import PREFECT_CLIENT_RETRY_EXTRA_CODES, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

SERVER_ERROR = 500


@contextlib.contextmanager
def flow_settings() -> Iterator[None]:
    """Run flows without Prefect's heartbeat thread, and retry the API's 500s.

    - The heartbeat thread sleeps in 1 s steps, and each flow run waits for it to wake before ending: a second
      added to every round and to every site's run, for heartbeats only an automation would read. A round times
      its sites out itself, and the next run finishes an interrupted one.
    - The Prefect server answers 500 while its database restarts. Prefect's client retries 502/503 (2, 4, 8, 16,
      32 s apart) but not 500, so a site whose training ended in that moment failed its run after pushing its
      update. A request the server could not write to its database changed nothing there: repeating it is safe.
    """
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                             PREFECT_CLIENT_RETRY_EXTRA_CODES: {*PREFECT_CLIENT_RETRY_EXTRA_CODES.value(),
                                                                SERVER_ERROR}}):
        yield
