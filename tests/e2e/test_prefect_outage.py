"""A flow run outlives its Prefect server's database restarting under it."""

from __future__ import annotations

import threading
from pathlib import Path

from prefect import flow
from prefect.settings import PREFECT_API_URL, temporary_settings

from federity.postgres import LocalPostgres
from federity.prefect_server import local_prefect
from flows.settings import flow_settings

OUTAGE_SECONDS = 3.0


def _outage(postgres: LocalPostgres) -> None:
    """Stop PostgreSQL now, start it again after OUTAGE_SECONDS: meanwhile the server answers 500."""
    postgres.stop(remove=False)
    threading.Timer(OUTAGE_SECONDS, postgres.start).start()


def test_a_flow_run_that_ends_while_the_database_is_down_completes_once_it_is_back(tmp_path: Path) -> None:
    with local_prefect(tmp_path / "prefect") as server, temporary_settings({PREFECT_API_URL: server.api_url}):
        postgres = server.postgres
        assert postgres is not None

        @flow(name="ends-during-an-outage", persist_result=False)
        def ends_during_an_outage() -> str:
            _outage(postgres)
            return "trained and pushed"  # the run's final state reaches the server only once PostgreSQL is back

        with flow_settings():
            state = ends_during_an_outage(return_state=True)
        assert state.is_completed(), state
        assert state.result() == "trained and pushed"
