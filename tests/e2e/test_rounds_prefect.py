"""Federated rounds through a real Prefect server on localhost with two agent processes (the sites), driven by
`federity round run` in a subprocess — and the privacy canary: a string and a value unique to one site's data
appear nowhere outside that site's directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from federity.identity import Wallet
from federity.prefect_server import LocalPrefectServer, local_prefect
from federity.proofs.policy import ProofPolicy
from federity.repo import Repository
from federity.repo.commits import read_commit
from tests.conftest import canary_leaks, write_canary_csv, write_csv

pytestmark = pytest.mark.e2e

CANARY_TEXT = "CANARY-5d1e0a9c"  # in site A's directory name, which must never travel
CANARY_VALUE = "2.718281828459"  # a feature value only site A's data holds (in range: the round is proved)


@dataclass
class Federation:
    root: Path
    owner: Repository
    env: dict[str, str]
    pools: list[str]
    site_dirs: list[Path]
    server: LocalPrefectServer


def _run(env: dict[str, str], *args: str, cwd: Path | None = None, check: bool = True
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "federity", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"federity {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("federation")
    patch = pytest.MonkeyPatch()
    patch.setenv("FEDERITY_LEDGER", str(root / "ledger"))  # one ledger for this process and every subprocess
    env = {**os.environ, "HOME": str(root / "home"), "DVC_NO_ANALYTICS": "1"}
    env.pop("FEDERITY_WALLET", None)
    owner = Wallet.create(root / "wallets" / "owner.json")
    sites = [Wallet.create(root / "wallets" / f"site-{n}.json") for n in "ab"]
    repo, _ = Repository.init(root / "owner" / "repo", owner, name="e2e", framework="torch",
                              model="logistic-regression", model_args=["in_features=4"],
                              remote=str(root / "remote.git"), params={"lr": 0.1, "epochs": 2, "batch_size": 16,
                                                                       "seed": 0},
                              proofs=ProofPolicy(audits=1, scale=8))  # every update is proved at its site
    for site in sites:
        repo.add_member(owner, site.pubkey, "contributor")
    repo.push()
    site_dirs = [root / "sites" / f"a-{CANARY_TEXT}", root / "sites" / "b"]
    write_canary_csv(site_dirs[0] / "data" / "train.csv", CANARY_VALUE)
    write_csv(site_dirs[1] / "data" / "train.csv", 60, seed=2)

    # workers beat every 2 s and the server looks for silent ones every 2 s: a dead agent shows offline in seconds
    patch.setenv("PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS", "2")
    env["PREFECT_WORKER_HEARTBEAT_SECONDS"] = "2"
    with local_prefect(root / "prefect") as server:
        env.update(server.env())
        env["FEDERITY_WALLET"] = str(owner.path)
        agents = []
        for pool, directory, wallet in zip(["site-a", "site-b"], site_dirs, sites, strict=True):
            log = (directory / "agent.log").open("wb")
            agents.append(subprocess.Popen(
                [sys.executable, "-m", "federity", "--wallet", str(wallet.path), "agent", "start", "--pool", pool,
                 "--data", str(directory / "data" / "train.csv"), "--workspace", str(directory / "workspace")],
                cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        dead = subprocess.Popen(  # an agent that registers, then dies before any round
            [sys.executable, "-m", "federity", "--wallet", str(sites[1].path), "agent", "start", "--pool",
             "site-dead", "--data", str(site_dirs[1] / "data" / "train.csv"), "--workspace",
             str(root / "dead-workspace")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            _wait_for_deployments(env, ["site-a", "site-b", "site-dead"])
            os.killpg(dead.pid, signal.SIGKILL)
            dead.wait()
            yield Federation(root, repo, env, ["site-a", "site-b"], site_dirs, server)
        finally:
            for agent in agents:
                agent.terminate()
                agent.wait(timeout=30)
            patch.undo()


def _owner_repository(federation: Federation) -> Repository:
    """The owner's repository, reading its (private) weights with the owner's wallet, as the owner's CLI does."""
    return Repository.open(federation.owner.root, wallet_path=Path(federation.env["FEDERITY_WALLET"]))


def _wait_for_deployments(env: dict[str, str], pools: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-m", "prefect", "deployment", "ls"], env=env, capture_output=True,
                             text=True).stdout
        if all(f"local-train/{p}" in out for p in pools):
            return
        time.sleep(1)
    raise AssertionError("the agents did not register their deployments")


def test_an_auto_round_aggregates_both_sites_and_a_dead_site_is_left_out(federation: Federation) -> None:
    main = federation.owner.head()
    out = _run(federation.env, "--json", "round", "run", "--pool", "site-a", "--pool", "site-b", "--pool",
               "site-dead", "--pool", "site-unknown", "--train-timeout", "60", "--quorum", "2", "--live",
               cwd=federation.owner.root)

    [summary] = json.loads(out.stdout)["rounds"]
    assert summary["sites"] == {"site-a": "Completed", "site-b": "Completed", "site-dead": "TIMED OUT",
                                "site-unknown": "NOT SERVED"}
    # the live view (on stderr, its last state when stderr is not a terminal) shows each site's run and phase
    view = out.stderr[out.stderr.index("federated round"):]
    assert re.search(r"site-a\s*│\s*Completed\s*│\s*push update\s*│\s*Completed", view), view
    assert re.search(r"site-dead\s*│\s*Cancelled", view) and re.search(r"site-unknown\s*│\s*waiting", view), view
    assert re.search(r"owner\s*│\s*(Running|Completed)\s*│\s*mint NFTs", view), view
    # the Prefect UI shows the dead site's worker offline and its pool not ready; the live ones online
    assert _workers(federation.env, "site-dead") == ["OFFLINE"]
    assert _workers(federation.env, "site-a") == ["ONLINE"]
    assert _api(federation.env, "GET", "/work_pools/site-dead")["status"] == "NOT_READY"
    assert len(summary["updates"]) == 2 and summary["parents"][0] == main and summary["mlflow_run"]
    owner = _owner_repository(federation)
    assert owner.head() == summary["commit"]
    assert {u.status for u in owner.updates()} == {"aggregated"}
    assert owner.verify().ok  # re-verifies each update's proof of training, made by the agent at its site
    for update in owner.updates():
        assert len(owner.show(update.id)["proof"]["audited"]) == 1
        assert owner.nft_show(update.id)["owner"] == update.author  # an accepted update's NFT is its author's
    assert summary["nft"] == owner.nft_show(summary["commit"])["mint"]
    log = json.loads(_run(federation.env, "--json", "log", cwd=owner.root).stdout)["commits"]
    assert log[0]["kind"] == "aggregate" and log[0]["mlflow_run"] == summary["mlflow_run"]


def test_an_agent_killed_mid_training_is_left_out_after_the_timeout(federation: Federation) -> None:

    import psutil  # a dependency of DVC

    directory = federation.root / "sites" / "c"
    write_csv(directory / "data" / "train.csv", 60, seed=4)
    site_c = Wallet.load(federation.root / "wallets" / "site-b.json")
    agent = subprocess.Popen(
        [sys.executable, "-m", "federity", "--wallet", str(site_c.path), "agent", "start", "--pool", "site-c",
         "--data", str(directory / "data" / "train.csv"), "--workspace", str(directory / "workspace")],
        env=federation.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_deployments(federation.env, ["site-c"])
        round_proc = subprocess.Popen(
            [sys.executable, "-m", "federity", "--json", "round", "run", "--pool", "site-a", "--pool", "site-c",
             "--train-timeout", "45"], cwd=federation.owner.root, env=federation.env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _running(federation.env, "site-c"):
            time.sleep(0.2)
        for process in [*psutil.Process(agent.pid).children(recursive=True), psutil.Process(agent.pid)]:
            process.kill()
        out, err = round_proc.communicate(timeout=300)
    finally:
        agent.kill()
        agent.wait()
    assert round_proc.returncode == 0, err
    [summary] = json.loads(out)["rounds"]
    assert summary["sites"] == {"site-a": "Completed", "site-c": "TIMED OUT"}
    assert _owner_repository(federation).head() == summary["commit"]


def _api(env: dict[str, str], method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One call to the Prefect server's REST API, as the Prefect UI makes it."""
    request = urllib.request.Request(f"{env['PREFECT_API_URL']}{path}", None if body is None else
                                     json.dumps(body).encode(), {"Content-Type": "application/json"}, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def _running(env: dict[str, str], deployment: str) -> bool:
    """Whether a flow run of ``deployment`` is in the Running state (its engine started: training under way)."""
    body = {"deployments": {"name": {"any_": [deployment]}}, "flow_runs": {"state": {"name": {"any_": ["Running"]}}}}
    return bool(_api(env, "POST", "/flow_runs/filter", body))


def _workers(env: dict[str, str], pool: str, timeout: float = 30) -> list[str]:
    """The statuses of ``pool``'s workers, once none is still changing (a dead worker goes offline after three
    missed heartbeats)."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = sorted(w["status"] for w in _api(env, "POST", f"/work_pools/{pool}/workers/filter", {}))
        alive = [s for s in statuses if s == "ONLINE"]
        if time.monotonic() > deadline or (statuses and (len(alive) in (0, len(statuses)))):
            return statuses
        time.sleep(1)


def test_below_quorum_the_round_fails_and_main_is_unchanged(federation: Federation) -> None:
    main = federation.owner.head()
    proc = _run(federation.env, "round", "run", "--pool", "site-a", "--pool", "site-b", "--quorum", "3",
                cwd=federation.owner.root, check=False)
    assert proc.returncode != 0
    assert "2 approved update(s) can be aggregated, 3 needed" in proc.stdout + proc.stderr
    assert _owner_repository(federation).head() == main
    assert subprocess.run(["git", "rev-parse", "main"], cwd=federation.root / "remote.git", capture_output=True,
                          text=True).stdout.strip() == main


def test_a_manual_review_pauses_the_round_until_federity_review_answers(federation: Federation) -> None:
    owner_root = federation.owner.root
    main = federation.owner.head()
    round_proc = subprocess.Popen(
        [sys.executable, "-m", "federity", "round", "run", "--pool", "site-a", "--pool", "site-b", "--review",
         "manual", "--review-timeout", "300"], cwd=owner_root, env=federation.env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        updates = _wait_for_verified(federation, count=2)
        first, second = sorted(updates)
        rejected = _run(federation.env, "--json", "review", "reject", second, "--reason", "looks off",
                        cwd=owner_root)
        assert '"resumed_flow_run": null' in rejected.stdout  # one update still undecided: keep waiting
        approved = _run(federation.env, "--json", "review", "approve", first, cwd=owner_root)
        assert '"resumed_flow_run": "' in approved.stdout
        output, _ = round_proc.communicate(timeout=300)
    finally:
        round_proc.kill()
    assert round_proc.returncode == 0, output
    owner = _owner_repository(federation)
    parents = owner.git.run("log", "-1", "--format=%P", "main").split()
    assert parents == [main, first]
    statuses = {u.id: (u.status, u.reason) for u in owner.updates()}
    assert statuses[first][0] == "aggregated" and statuses[second] == ("rejected", "looks off")


def _wait_for_verified(federation: Federation, count: int, timeout: float = 240) -> list[str]:

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = _run(federation.env, "--json", "updates", "--status", "verified", cwd=federation.owner.root).stdout
        ids = [u["id"] for u in json.loads(out)["updates"]]
        if len(ids) >= count:
            return ids
        time.sleep(2)
    raise AssertionError("the round's updates were not verified in time")


def test_a_round_on_a_variant_branch_lands_there_and_merges_back_into_main(federation: Federation) -> None:

    owner_root = federation.owner.root
    owner = _owner_repository(federation)
    owner.branch("variant")
    owner.checkout("variant")
    owner.push()  # the sites train from origin's variant
    main = owner.git.resolve("main")
    out = _run(federation.env, "--json", "round", "run", "--pool", "site-a", "--pool", "site-b", "--quorum", "2",
               "--branch", "variant", cwd=owner_root)
    [summary] = json.loads(out.stdout)["rounds"]
    owner = _owner_repository(federation)
    assert summary["parents"][0] == main and len(summary["updates"]) == 2
    assert owner.git.resolve("variant") == summary["commit"] == owner.git.resolve("origin/variant")
    assert owner.git.resolve("main") == main  # the variant's round left main alone
    assert {u.target for u in owner.updates() if u.id in summary["updates"]} == {"variant"}
    owner.checkout("main")
    wallet = Wallet.load(Path(federation.env["FEDERITY_WALLET"]))
    merged = owner.merge(wallet, "variant", strategy="task-arithmetic")  # main has not moved: the variant, whole
    assert merged.parents == [main, summary["commit"]]
    assert merged.weights_sha256 == read_commit(owner, summary["commit"]).meta.weights_sha256
    owner.push()
    assert owner.verify().ok


def _serve_rounds(federation: Federation, name: str, *options: str) -> subprocess.Popen[bytes]:
    """``federity round serve`` for both sites in the owner's repository, logging to ``<name>.log``."""
    log = (federation.root / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "federity", "round", "serve", "--pool", "site-a", "--pool", "site-b", "--quorum", "2",
         "--name", name, *options], cwd=federation.owner.root, env=federation.env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _deployment(env: dict[str, str], name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return dict(_api(env, "GET", f"/deployments/name/federated-round/{name}"))
        except urllib.error.HTTPError:
            time.sleep(0.5)
    raise AssertionError(f"federated-round/{name} was not registered")


def _final(env: dict[str, str], run_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = _api(env, "GET", f"/flow_runs/{run_id}")
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return dict(run)
        time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} did not finish")


def _task_runs(env: dict[str, str], run_id: str) -> list[dict[str, Any]]:
    return list(_api(env, "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}}))


def _task_names(env: dict[str, str], run_id: str) -> set[str]:
    return {r["name"].rsplit("-", 1)[0] for r in _task_runs(env, run_id)}


ROUND_PHASES = {"pin round", "dispatch to sites", "wait for sites", "collect updates", "check updates",
                "record review decisions", "aggregate", "push", "track in MLflow", "mint NFTs"}
SITE_PHASES = {"sync workspace", "check data contract", "train", "commit update", "push update"}


def test_a_round_started_through_the_api_as_the_ui_does_runs_in_the_owners_round_server(
        federation: Federation) -> None:
    main = federation.owner.head()
    server = _serve_rounds(federation, "e2e-rounds")
    try:
        deployment = _deployment(federation.env, "e2e-rounds")
        assert deployment["work_pool_name"] == "rounds-e2e-rounds"
        assert deployment["parameters"]["pools"] == ["site-a", "site-b"]
        assert deployment["parameters"]["repo"] == str(federation.owner.root)
        run = _api(federation.env, "POST", f"/deployments/{deployment['id']}/create_flow_run", {})
        final = _final(federation.env, run["id"])
        assert _workers(federation.env, "rounds-e2e-rounds") == ["ONLINE"]
    finally:
        _stop(server)
    assert final["state"]["type"] == "COMPLETED", final["state"]
    owner = _owner_repository(federation)
    head = owner.git.resolve("origin/main")
    assert owner.git.run("log", "-1", "--format=%P", head).split()[0] == main
    assert read_commit(owner, head).meta.round == read_commit(owner, main).meta.round + 1
    assert _task_names(federation.env, run["id"]) >= ROUND_PHASES  # every phase is a task run the UI times
    links = {t["id"] for t in _task_runs(federation.env, run["id"])}
    site_runs = _api(federation.env, "POST", "/flow_runs/filter", {"flows": {"name": {"any_": ["local-train"]}}})
    sites = [r for r in site_runs if r["parent_task_run_id"] in links]  # the site runs this round dispatched
    assert len(sites) == 2 and all(s["state"]["type"] == "COMPLETED" for s in sites)
    assert all(_task_names(federation.env, s["id"]) >= SITE_PHASES for s in sites)


def test_a_scheduled_round_fires_and_a_run_naming_another_repository_is_refused(federation: Federation) -> None:
    main = federation.owner.head()
    server = _serve_rounds(federation, "e2e-scheduled", "--interval", "5")
    try:
        deployment = _deployment(federation.env, "e2e-scheduled")
        completed = _scheduled_runs(federation.env, deployment["id"], "COMPLETED")
        _api(federation.env, "POST", f"/deployments/{deployment['id']}/pause_deployment")
        assert completed[0]["auto_scheduled"]
        refused = _api(federation.env, "POST", f"/deployments/{deployment['id']}/create_flow_run",
                       {"parameters": {"repo": str(federation.root / "elsewhere")}})
        final = _final(federation.env, refused["id"])
        for run in _scheduled_runs(federation.env, deployment["id"], "RUNNING", wait=False):
            _final(federation.env, run["id"])  # let a round under way finish before the next test
    finally:
        _stop(server)
    _settle(federation.env, deployment["id"])
    assert final["state"]["type"] == "CRASHED"
    assert "this round server runs rounds of the repository at" in final["state"]["message"]
    owner = _owner_repository(federation)
    assert owner.git.resolve("origin/main") != main


def _settle(env: dict[str, str], deployment_id: str, timeout: float = 240) -> None:
    """Cancel the deployment's runs that have not started and wait until no flow run is pending or running (a
    site run a stopped round dispatched included), so that the next test's round meets idle sites."""
    for state in ("SCHEDULED", "PENDING"):
        for run in _scheduled_runs(env, deployment_id, state, wait=False):
            _api(env, "POST", f"/flow_runs/{run['id']}/set_state",
                 {"state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True})
    deadline = time.monotonic() + timeout
    while _api(env, "POST", "/flow_runs/filter", {"flow_runs": {"state": {"type": {
            "any_": ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING"]}}}}):
        if time.monotonic() > deadline:
            raise AssertionError("flow runs were still pending or running")
        time.sleep(1)


def _scheduled_runs(env: dict[str, str], deployment_id: str, state: str, wait: bool = True,
                    timeout: float = 240) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = _api(env, "POST", "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}},
                                                       "flow_runs": {"state": {"type": {"any_": [state]}}}})
        if runs or not wait:
            return list(runs)
        if time.monotonic() > deadline:
            raise AssertionError(f"no run of the deployment reached {state}")
        time.sleep(1)


def test_a_round_survives_the_prefect_server_and_postgresql_restarting_while_the_sites_train(
        federation: Federation) -> None:
    main = federation.owner.head()
    round_proc = subprocess.Popen(
        [sys.executable, "-m", "federity", "--json", "round", "run", "--pool", "site-a", "--pool", "site-b",
         "--quorum", "2"], cwd=federation.owner.root, env=federation.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _running(federation.env, "site-a"):
            time.sleep(0.1)
        federation.server.restart()  # the sites are proving: their runs report back to a restarted server
        assert federation.server.postgres is not None
        federation.server.postgres.restart()  # and every connection the server holds is cut
        out, err = round_proc.communicate(timeout=300)
    finally:
        round_proc.kill()
    assert round_proc.returncode == 0, err
    [summary] = json.loads(out)["rounds"]
    assert summary["sites"] == {"site-a": "Completed", "site-b": "Completed"}, err
    owner = _owner_repository(federation)
    assert owner.head() == summary["commit"] == owner.git.resolve("origin/main")
    assert summary["parents"][0] == main and len(summary["updates"]) == 2
    assert owner.verify().ok


def test_the_canary_in_one_sites_data_appears_nowhere_outside_that_site(federation: Federation) -> None:
    site_a = federation.site_dirs[0]
    needles = [CANARY_TEXT.encode(), CANARY_VALUE.encode(), CANARY_VALUE.rstrip("0").encode()]
    leaks = canary_leaks(site_a, federation.root, needles, [federation.root / "remote.git", federation.owner.root,
                                                            federation.site_dirs[1] / "workspace"])
    assert leaks == [], "site A's data leaked:\n" + "\n".join(leaks)
    # the test is only meaningful if the canary really is in site A's data and the rounds really ran
    assert CANARY_VALUE.encode() in (site_a / "data" / "train.csv").read_bytes()
    assert (federation.root / "prefect").is_dir() and list((federation.owner.root / ".federity").glob("*.db"))
