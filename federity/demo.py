"""``federity demo``: a whole federation on one machine, with zero setup.

An owner and N hospital wallets; a breast-cancer classification repository (logistic regression) with a local
git remote and DVC storage; each hospital's shard only in its own directory; a local Prefect server and one agent
process per hospital; R rounds of the round flow (auto review, FedAvg); per round, the global model's accuracy
on the owner's held-out set beside the same model trained centrally on all the data. With ``proofs``, the
repository requires a proof of training (one audited step, offline SRS) with every update, and the round flow
verifies each one before review.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federity.errors import FederityError
from federity.identity import Wallet

LOCAL_EPOCHS = 2
DEMO_PARAMS = {"lr": 0.05, "epochs": LOCAL_EPOCHS, "batch_size": 16, "seed": 0}


@dataclass
class DemoSummary:
    """What ``federity demo --json`` prints."""

    rounds: list[dict[str, Any]] = field(default_factory=list)
    centralized_accuracy: float = 0.0
    prefect_ui: str = ""
    mlflow_ui: str = ""
    workdir: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The keys DESIGN.md fixes for ``demo``, plus the work directory and the wall time."""
        return {"rounds": self.rounds, "centralized_accuracy": self.centralized_accuracy,
                "prefect_ui": self.prefect_ui, "mlflow_ui": self.mlflow_ui, "workdir": self.workdir,
                "seconds": self.seconds}


def centralized_accuracy(repo_root: Path, shards: list[Path], heldout: Path, rounds: int) -> float:
    """Train the repository's genesis model on the union of the shards, as many passes as the federation made
    (rounds times local epochs), with the same optimiser; its accuracy on the held-out set."""
    import pandas as pd

    from federity.data import load_dataset
    from federity.repo import Repository
    from federity.training import TrainingParams, evaluate, train_locally
    from federity.weights import read_tensors

    repo = Repository.open(repo_root)
    genesis = repo.git.run("rev-list", "--max-parents=0", "main")
    config = repo.config(genesis)
    union = repo_root.parent / "centralized.csv"
    pd.concat([pd.read_csv(p) for p in shards]).to_csv(union, index=False)
    try:
        params = TrainingParams(**{**DEMO_PARAMS, "epochs": LOCAL_EPOCHS * rounds})
        result = train_locally(config, repo_root, read_tensors(repo.store.read(genesis), "genesis"),
                               load_dataset(union), params)
    finally:
        union.unlink()
    return evaluate(config, repo_root, result.tensors, load_dataset(heldout))["accuracy"]


def _start_agent(pool: str, hospital: Path, wallet: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (hospital / "agent.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "federity", "--wallet", str(wallet), "agent", "start", "--pool", pool,
         "--data", str(hospital / "data" / "train.csv"), "--workspace", str(hospital / "workspace")],
        cwd=hospital, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_deployments(pools: list[str], timeout: float, agents: list[subprocess.Popen[bytes]]) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if any(a.poll() is not None for a in agents):
                raise FederityError("an agent process exited while starting",
                                    "see agent.log in the hospital's directory of the demo's work directory")
            names = {d.name for d in client.read_deployments()}
            if set(pools) <= names:
                return
            time.sleep(0.5)
    raise FederityError(f"the agents did not register within {timeout:.0f} s",
                        "see agent.log in each hospital's directory")


def run_demo(workdir: Path, hospitals: int = 3, rounds: int = 5, proofs: bool = False,
             progress: Callable[[str], None] = lambda _: None) -> DemoSummary:
    """Build the federation in ``workdir`` (which must be new or empty) and run it; see the module docstring."""
    from federity.contract import default_suite
    from federity.demo_data import LABEL, split_breast_cancer, write_split
    from federity.prefect_server import LocalPrefectServer
    from federity.proofs.policy import ProofPolicy
    from federity.repo import Repository
    from federity.repo.paths import require_empty_dir
    from federity.repo.track import evaluate_commit
    from federity.tracking import Tracker

    started = time.monotonic()
    workdir = Path(workdir).resolve()
    require_empty_dir(workdir, "demo directory")
    pools = [f"hospital-{i + 1}" for i in range(hospitals)]
    owner_dir, hospital_dirs = workdir / "owner", [workdir / "hospitals" / p for p in pools]
    os.environ["FEDERITY_LEDGER"] = str(workdir / "ledger")  # the demo's commit NFTs stay in its directory
    progress(f"creating wallets and splitting the breast-cancer data across {hospitals} hospitals")
    owner = Wallet.create(workdir / "wallets" / "owner.json")
    sites = [Wallet.create(workdir / "wallets" / f"{p}.json") for p in pools]
    split = split_breast_cancer(hospitals)
    heldout, shards = write_split(split, owner_dir, hospital_dirs)
    suite_path = owner_dir / "contract.json"
    suite_path.write_text(json.dumps(default_suite(label=LABEL, num_classes=2, columns=split.columns)))

    progress("creating the repository (logistic regression, 30 features) with a local remote"
             + (", compiling its proof circuit and an offline SRS" if proofs else ""))
    repo, _ = Repository.init(owner_dir / "repo", owner, name="breast-cancer", framework="torch",
                              model="logistic-regression", model_args=[f"in_features={len(split.columns)}"],
                              remote=str(workdir / "remote.git"), contract=suite_path, params=DEMO_PARAMS,
                              proofs=ProofPolicy(audits=1) if proofs else None)
    for site in sites:
        repo.add_member(owner, site.pubkey, "contributor")
    repo.push()
    os.environ["FEDERITY_WALLET"] = str(owner.path)

    progress("starting a local Prefect server")
    with LocalPrefectServer(workdir / "prefect") as server:
        # agents look for work every second (Prefect's default is 10 s), so rounds do not wait on polling
        env = {**os.environ, **server.env(), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
        os.environ.update(server.env())
        progress(f"starting {hospitals} agent processes")
        agents = [_start_agent(p, d, w.path, env) for p, d, w in zip(pools, hospital_dirs, sites, strict=True)]
        try:
            _wait_for_deployments(pools, 120, agents)
            from flows.round import federated_round

            summary = DemoSummary(prefect_ui=server.ui_url, workdir=str(workdir))
            progress(f"Prefect UI: {server.ui_url}  (open it while the rounds run)")
            for _ in range(rounds):
                [result] = federated_round(repo=str(repo.root), pools=pools, rounds=1, review="auto", quorum=1,
                                           validation=str(heldout))
                accuracy = evaluate_commit(repo, result["commit"], heldout)["accuracy"]
                summary.rounds.append({"round": result["round"], "accuracy": accuracy, "commit": result["commit"],
                                       "updates": len(result["updates"]), "mlflow_run": result["mlflow_run"]})
                progress(f"round {result['round']}: accuracy {accuracy:.4f} on the held-out set, "
                         f"{len(result['updates'])} update(s){' with verified proofs' if proofs else ''}, "
                         f"commit {result['commit'][:12]}")
        finally:
            for a in agents:
                a.terminate()
            for a in agents:
                a.wait(timeout=30)
    summary.centralized_accuracy = centralized_accuracy(repo.root, shards, heldout, rounds)
    summary.mlflow_ui = Tracker(repo.root).ui_command()
    summary.seconds = round(time.monotonic() - started, 1)
    return summary
