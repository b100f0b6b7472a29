"""``federity demo``: a whole federation on one machine, with zero setup (the parts that need no Prefect).

An owner and N hospital wallets; a breast-cancer classification repository (logistic regression) with a local
git remote and DVC storage; each hospital's shard only in its own directory; a local Prefect server and one agent
process per hospital; R rounds of the round flow (auto review, FedAvg); per round, the global model's accuracy
on the owner's held-out set beside the same model trained centrally on all the data. With ``proofs``, the
repository requires a proof of training (one audited step, offline SRS) with every update, and the round flow
verifies each one before review.

This module builds the federation, starts agent processes and measures accuracy; the orchestration through
Prefect (the local server, waiting for the agents' deployments, the round flow) is :func:`flows.demo.run_demo`,
since the library never imports Prefect (docs/architecture.md).
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
from typing import TYPE_CHECKING, Any

from federity.identity import Wallet

if TYPE_CHECKING:
    from federity.repo import Repository

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
        """The keys docs/cli.md fixes for ``demo``, plus the work directory and the wall time."""
        return {"rounds": self.rounds, "centralized_accuracy": self.centralized_accuracy,
                "prefect_ui": self.prefect_ui, "mlflow_ui": self.mlflow_ui, "workdir": self.workdir,
                "seconds": self.seconds}


def centralized_accuracy(repo: Repository, shards: list[Path], heldout: Path, rounds: int) -> float:
    """Train the repository's genesis model on the union of the shards, as many passes as the federation made
    (rounds times local epochs), with the same optimiser; its accuracy on the held-out set."""
    import pandas as pd

    from federity.data import load_dataset
    from federity.training import TrainingParams, evaluate, train_locally
    from federity.weights import read_tensors

    repo_root = repo.root
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


def start_agent(pool: str, hospital: Path, wallet: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A hospital's agent process (``federity agent start``) serving work pool ``pool``, logging to
    ``<hospital>/agent.log``."""
    log = (hospital / "agent.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "federity", "--wallet", str(wallet), "agent", "start", "--pool", pool,
         "--data", str(hospital / "data" / "train.csv"), "--workspace", str(hospital / "workspace")],
        cwd=hospital, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@dataclass
class Federation:
    """The demo's parties on disk: the owner's repository (pushed to a local remote) and held-out set, and per
    hospital its work pool, directory (with its shard), wallet and training shard."""

    workdir: Path
    repo: Repository
    heldout: Path
    pools: list[str]
    hospital_dirs: list[Path]
    sites: list[Wallet]
    shards: list[Path]


def prepare_federation(workdir: Path, hospitals: int = 3, proofs: bool = False,
                       progress: Callable[[str], None] = lambda _: None) -> Federation:
    """Create, in ``workdir`` (which must be new or empty), the owner's and the hospitals' wallets, the
    breast-cancer data split across the hospitals, and the repository with a local remote, every hospital a
    contributor. Sets ``FEDERITY_LEDGER`` (the demo's NFTs stay in its directory) and ``FEDERITY_WALLET`` (the
    owner's wallet) in this process's environment."""
    from federity.contract import default_suite
    from federity.demo_data import LABEL, split_breast_cancer, write_split
    from federity.proofs.policy import ProofPolicy
    from federity.repo import Repository
    from federity.repo.paths import require_empty_dir

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
    return Federation(workdir, repo, heldout, pools, hospital_dirs, sites, shards)


def round_summary(federation: Federation, result: dict[str, Any]) -> dict[str, Any]:
    """One round's line of :class:`DemoSummary`: the new global model's accuracy on the held-out set."""
    from federity.repo.track import evaluate_commit

    accuracy = evaluate_commit(federation.repo, result["commit"], federation.heldout)["accuracy"]
    return {"round": result["round"], "accuracy": accuracy, "commit": result["commit"],
            "updates": len(result["updates"]), "mlflow_run": result["mlflow_run"]}


def finish(federation: Federation, summary: DemoSummary, rounds: int, started: float) -> DemoSummary:
    """Add the central baseline, the MLflow UI command and the wall time since ``started`` (monotonic)."""
    from federity.tracking import Tracker

    summary.centralized_accuracy = centralized_accuracy(federation.repo, federation.shards, federation.heldout,
                                                        rounds)
    summary.mlflow_ui = Tracker(federation.repo.root).ui_command()
    summary.seconds = round(time.monotonic() - started, 1)
    return summary
