"""A hostile Prefect server, or anyone who can write to it: it can ask a site's agent to train the agent's own
repository, never to run other code or to fetch another repository. The attacks are made as such a party would,
through the server's REST API: a flow of their own deployed into the site's work pool (with an entrypoint that
would leave a marker file), a round naming a repository of their own, and task names carrying terminal markup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federity.errors import RemoteError
from federity.identity import Wallet
from federity.prefect_server import local_prefect
from federity.repo import Repository
from federity.site import workspace
from tests.conftest import write_csv

pytestmark = pytest.mark.e2e
SERVED = "/srv/git/model.git"  # the repository the agent serves (--remote); never fetched by these tests


def _api(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(f"{url}{path}", None if body is None else json.dumps(body).encode(),
                                     {"Content-Type": "application/json"}, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[str]:
    """A real agent (``federity agent start``) serving pool ``site-x``; yields the Prefect API URL."""
    wallet = Wallet.create(tmp_path / "site.json")
    data = write_csv(tmp_path / "data" / "train.csv", 20, seed=1)
    with local_prefect(tmp_path / "prefect") as server:
        env = {**os.environ, **server.env(), "HOME": str(tmp_path / "home")}
        process = subprocess.Popen(
            [sys.executable, "-m", "federity", "--wallet", str(wallet.path), "agent", "start", "--pool", "site-x",
             "--data", str(data), "--workspace", str(tmp_path / "workspace"), "--remote", SERVED], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                workers = _api(server.api_url, "POST", "/work_pools/site-x/workers/filter", {}) \
                    if _pool_exists(server.api_url) else []
                if any(w["status"] == "ONLINE" for w in workers):
                    break
                time.sleep(0.5)
            else:
                raise AssertionError("the agent did not come online")
            yield server.api_url
        finally:
            process.terminate()
            process.wait(timeout=30)


def _pool_exists(url: str) -> bool:
    try:
        _api(url, "GET", "/work_pools/site-x")
    except urllib.error.HTTPError:
        return False
    return True


def test_a_flow_deployed_into_a_sites_pool_by_someone_else_is_refused_and_its_code_never_runs(
        agent: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.py"
    evil.write_text(f"from pathlib import Path\nfrom prefect import flow\n\n@flow(name='evil')\n"
                    f"def evil():\n    Path({str(marker)!r}).write_text('ran')\n")
    flow_id = _api(agent, "POST", "/flows/", {"name": "evil"})["id"]
    deployment = _api(agent, "POST", "/deployments/", {
        "name": "site-x", "flow_id": flow_id, "work_pool_name": "site-x", "entrypoint": f"{evil}:evil",
        "path": str(tmp_path), "job_variables": {"command": f"python -c \"open('{marker}', 'w')\""}})
    run = _api(agent, "POST", f"/deployments/{deployment['id']}/create_flow_run", {})
    state = _final_state(agent, run["id"])
    assert state["type"] == "CRASHED"
    assert "this worker runs only local-train, not 'evil'" in state["message"]
    assert not marker.exists()


def test_a_round_naming_another_repository_is_refused_before_anything_is_fetched(
        agent: str, tmp_path: Path, repo: Repository) -> None:
    hostile = str(repo.root.parent / "remote.git")  # a real repository, which the agent must not clone
    deployment = _api(agent, "GET", "/deployments/name/local-train/site-x")
    run = _api(agent, "POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {
        "remote": hostile, "base": repo.head(), "round": 1, "nonce": "0" * 32}})
    state = _final_state(agent, run["id"])
    assert state["type"] == "FAILED"
    assert f"but this agent serves {SERVED!r}" in state["message"], state
    assert not (tmp_path / "workspace").exists()


def test_a_workspace_only_ever_fetches_the_repository_it_was_cloned_from(
        federation: dict[str, Repository], contributor: Wallet, tmp_path: Path) -> None:
    ours = str(tmp_path / "remote.git")
    clone = workspace(ours, tmp_path / "ws", contributor)
    refs = clone.git.run("for-each-ref")
    other = tmp_path / "other.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", ours, str(other)], check=True)
    with pytest.raises(RemoteError, match="but this agent's workspace is a clone of"):
        workspace(str(other), tmp_path / "ws", contributor)
    assert clone.git.run("for-each-ref") == refs


def _final_state(url: str, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = dict(_api(url, "GET", f"/flow_runs/{run_id}")["state"])
        if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def test_the_live_view_shows_names_from_the_server_as_text_never_as_markup() -> None:
    from rich.console import Console
    from rich.table import Table

    from flows.live import add_row

    table = Table()
    for column in ("party", "run", "phase", "phase state"):
        table.add_column(column)
    add_row(table, "site-a", "Running", "[link=https://evil.example]train[/link]", "[/bold] unbalanced")
    console = Console(record=True, width=200)
    console.print(table)
    shown = console.export_text()
    assert "[link=https://evil.example]train[/link]" in shown and "[/bold] unbalanced" in shown
