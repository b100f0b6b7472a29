"""Prefect glue under a Prefect test server: the manual review gate and waiting for sites."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from tasks.review_gate import ROUND_FLOW, build_review_form, resume_waiting_round, review_form
from tasks.sites import NOT_SERVED, wait_for_sites

UPDATES = [{"id": "a" * 40, "author": "Alice", "n_samples": 10, "metrics": {"accuracy": 0.9}},
           {"id": "b" * 40, "author": "Bob", "n_samples": 20, "metrics": {"accuracy": 0.8}}]


@pytest.fixture(scope="module", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_the_review_form_approves_nothing_unless_a_reviewer_ticks_it() -> None:
    form = build_review_form(UPDATES)
    assert form().model_dump() == {f"approve_{'a' * 12}": False, f"approve_{'b' * 12}": False, "reason": ""}
    schema = form.model_json_schema()["properties"][f"approve_{'a' * 12}"]
    assert "Alice" in schema["description"] and "10 samples" in schema["description"]


@flow(name=ROUND_FLOW)
def _paused_round(repo: str) -> Any:
    return review_form(UPDATES, round=1, timeout=120)


def test_a_paused_round_resumes_only_when_every_update_has_a_decision(tmp_path: Path) -> None:
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=_paused_round(str(tmp_path))))
    runner.start()
    deadline = time.monotonic() + 60
    resumed = None
    while resumed is None and time.monotonic() < deadline:
        assert resume_waiting_round(tmp_path, {"a" * 40: "approved", "b" * 40: "verified"}) is None
        resumed = resume_waiting_round(tmp_path, {"a" * 40: "approved", "b" * 40: "rejected"})
        time.sleep(0.5)
    runner.join(timeout=60)
    assert resumed is not None
    decisions, _ = outcome["result"]
    assert decisions == {"a" * 40: True, "b" * 40: False}


def test_a_site_run_that_never_starts_is_cancelled_at_the_deadline() -> None:
    @flow(name="never-served")
    def never_served() -> None: ...

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(never_served)
        started = time.monotonic()
        states = wait_for_sites.fn({"site-x": str(run.id), "site-y": NOT_SERVED}, timeout=2)
        assert states == {"site-x": "TIMED OUT", "site-y": "NOT SERVED"}
        assert time.monotonic() - started < 10
        assert client.read_flow_run(run.id).state.is_final()
