"""Rounds on the scaled-out topology (``infra/launch.py``): Prefect server on PostgreSQL, MLflow tracking server on
PostgreSQL with artifacts in S3, DVC storage on S3, the git remote served over the network by ``git daemon``;
the owner and each site a process of its own, with its own home, workspace, wallet and data. And the privacy
canary there: a string and a value unique to one site's data appear nowhere outside that site's directory: not
in any file, git object, S3 object, or in the Prefect and MLflow databases."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from mlflow.tracking import MlflowClient

from federity.identity import Wallet
from federity.repo import Repository
from infra.launch import S3_CREDENTIALS, Topology, launch
from tests.conftest import canary_leaks, write_canary_csv, write_csv

pytestmark = pytest.mark.e2e

CANARY_TEXT = "CANARY-7c4f2e19"  # in site A's directory name, which must never travel
CANARY_VALUE = "1.414213562373"  # a feature value only site A's data holds


@dataclass
class Deployment:
    root: Path
    topology: Topology
    owner_env: dict[str, str]
    owner_root: Path
    site_dirs: list[Path]
    remote: str


def _process_env(topology: Topology, home: Path, **extra: str) -> dict[str, str]:
    """A party's own environment: its home (git, DVC and Prefect state), the topology's addresses, nothing else
    of this test process's (no shared FEDERITY_LEDGER, no wallet)."""
    home.mkdir(parents=True, exist_ok=True)
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "PYTHONPATH") if k in os.environ}
    return {**keep, **topology.env(), "HOME": str(home), "PREFECT_HOME": str(home / ".prefect"),
            "DVC_NO_ANALYTICS": "1", "PREFECT_LOGGING_LEVEL": "WARNING", **extra}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("topology")
    with launch(root / "services") as topology:
        owner_home = root / "owner"
        owner_env = _process_env(topology, owner_home, FEDERITY_LEDGER=str(owner_home / "ledger"))
        owner = Wallet.create(owner_home / "wallet.json")
        sites = [Wallet.create(root / "sites" / d / "wallet.json") for d in (f"a-{CANARY_TEXT}", "b")]
        site_dirs = [root / "sites" / f"a-{CANARY_TEXT}", root / "sites" / "b"]
        write_canary_csv(site_dirs[0] / "data" / "train.csv", CANARY_VALUE)
        write_csv(site_dirs[1] / "data" / "train.csv", 60, seed=2)
        remote = topology.repository_url("model")
        init = subprocess.run(
            [sys.executable, "-m", "federity", "--wallet", str(owner.path), "init", str(owner_home / "repo"),
             "--name", "topology", "--model", "logistic-regression", "--model-arg", "in_features=4",
             "--remote", remote, "--storage", topology.storage_url("model"), "--storage-endpoint",
             topology.s3_endpoint],
            env=owner_env, capture_output=True, text=True, timeout=300)
        assert init.returncode == 0, init.stderr
        auditor = Wallet.create(root / "auditor" / "wallet.json")
        for member, role in [*((site, "contributor") for site in sites), (auditor, "reader")]:
            added = subprocess.run([sys.executable, "-m", "federity", "--wallet", str(owner.path), "members", "add",
                                    member.pubkey, "--role", role], cwd=owner_home / "repo", env=owner_env,
                                   capture_output=True, text=True, timeout=120)
            assert added.returncode == 0, added.stderr
        pushed = subprocess.run([sys.executable, "-m", "federity", "push"], cwd=owner_home / "repo", env=owner_env,
                                capture_output=True, text=True, timeout=120)
        assert pushed.returncode == 0, pushed.stderr
        agents = []
        for pool, directory, wallet in zip(["site-a", "site-b"], site_dirs, sites, strict=True):
            env = _process_env(topology, directory / "home")
            log = (directory / "agent.log").open("wb")
            agents.append(subprocess.Popen(
                [sys.executable, "-m", "federity", "--wallet", str(wallet.path), "agent", "start", "--pool", pool,
                 "--data", str(directory / "data" / "train.csv"), "--workspace", str(directory / "workspace"),
                 "--remote", remote], cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        try:
            _wait_online(topology, ["site-a", "site-b"], agents)
            yield Deployment(root, topology, {**owner_env, "FEDERITY_WALLET": str(owner.path)}, owner_home / "repo",
                             site_dirs, remote)
        finally:
            for agent in agents:
                agent.terminate()
                agent.wait(timeout=30)


def test_rounds_run_across_the_topology_and_a_fresh_clone_verifies(deployment: Deployment,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "federity", "--json", "round", "run", "--pool", "site-a", "--pool", "site-b",
         "--quorum", "2", "--rounds", "2", "--train-timeout", "120"], cwd=deployment.owner_root,
        env=deployment.owner_env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:] + "\n" + "\n".join(_site_runs(deployment.topology))
    rounds = json.loads(out.stdout)["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and all(len(r["updates"]) == 2 for r in rounds)
    assert all(r["sites"] == {"site-a": "Completed", "site-b": "Completed"} for r in rounds)
    assert time.monotonic() - started < 300
    # MLflow: one run per aggregate on the tracking server, in its PostgreSQL store
    client = MlflowClient(deployment.topology.mlflow_url)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {r.data.tags.get("federity.commit") for r in runs} >= {r["commit"] for r in rounds}
    # the weights are in S3 and the history on the git server: a fresh clone from the network verifies
    keys = _s3_objects(deployment.topology)
    assert any(k.startswith("dvc/model/files/md5/") for k in keys)
    for key, value in S3_CREDENTIALS.items():  # an auditor with read access to the storage
        monkeypatch.setenv(key, value)
    # and to the ledger: the embedded one lives at the owner's (a deployment names a cluster in federity.yaml)
    monkeypatch.setenv("FEDERITY_LEDGER", deployment.owner_env["FEDERITY_LEDGER"])
    auditor = Wallet.load(deployment.root / "auditor" / "wallet.json")  # a reader: the repository is private
    clone = Repository.clone(deployment.remote, deployment.root / "auditor" / "clone", wallet=auditor)
    assert clone.head() == rounds[-1]["commit"]
    report = clone.verify()
    assert report.ok, report.failures
    # every version is opened and checked; the sites' updates are sealed to their authors and the owner only
    [sealed] = [u["reason"] for u in report.unchecked if u["check"] == "weights"]
    assert "hold weights sealed to members this wallet is not among" in sealed


def test_the_canary_in_one_sites_data_appears_nowhere_outside_that_site(deployment: Deployment) -> None:
    site_a = deployment.site_dirs[0]
    needles = [CANARY_TEXT.encode(), CANARY_VALUE.encode(), CANARY_VALUE.rstrip("0").encode()]
    blobs = {f"s3://{key}": body for key, body in _s3_objects(deployment.topology).items()}
    blobs |= {f"the {db} database": deployment.topology.postgres.dump(db) for db in ("prefect", "mlflow")}
    leaks = canary_leaks(site_a, deployment.root, needles, [
        deployment.topology.git_root / "model.git", deployment.owner_root, deployment.site_dirs[1] / "workspace"],
        blobs)
    assert leaks == [], "site A's data leaked:\n" + "\n".join(leaks)
    assert CANARY_VALUE.encode() in (site_a / "data" / "train.csv").read_bytes()  # the canary is really there
    assert _s3_objects(deployment.topology) and b"local-train" in deployment.topology.postgres.dump("prefect")


def _api(topology: Topology, path: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{topology.prefect.api_url}{path}", b"{}", {"Content-Type": "application/json"},
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return list(json.loads(response.read()))


def _wait_online(topology: Topology, pools: list[str], agents: list[subprocess.Popen[bytes]],
                 timeout: float = 180) -> None:
    """Wait until every pool's agent is an online worker (it has loaded what training needs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert all(a.poll() is None for a in agents), "an agent exited while starting: see its agent.log"
        with contextlib.suppress(urllib.error.HTTPError):  # a pool its agent has not created yet
            if all(any(w["status"] == "ONLINE" for w in _api(topology, f"/work_pools/{p}/workers/filter"))
                   for p in pools):
                return
        time.sleep(1)
    raise AssertionError("the agents did not come online")


def _site_runs(topology: Topology) -> list[str]:
    """Every flow run's state and message, as the Prefect UI shows them (for a failure's message)."""
    return [f"{r['name']}: {r['state']['type']} {r['state']['message']}" for r in _api(topology, "/flow_runs/filter")]


def _s3_objects(topology: Topology) -> dict[str, bytes]:
    """Every object in the topology's S3 server: ``bucket/key`` → its bytes."""
    s3 = boto3.client("s3", endpoint_url=topology.s3_endpoint, aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                      region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"])
    objects = {}
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                objects[f"{bucket}/{item['Key']}"] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return objects
