"""The edge agent: a Prefect worker next to one site's private data.

``federity agent start --pool NAME --data PATH`` runs :func:`serve`. It creates the site's work pool ``NAME`` and
its deployment ``local-train/NAME`` on the Prefect server named by ``PREFECT_API_URL``, loads what training needs
once, and then runs each round's training in this process when the owner's round flow asks for it
(:mod:`agents.worker`). The Prefect UI shows the agent as the pool's worker, online or offline. The data path,
wallet and workspace stay in this process's environment: Prefect never sees them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from agents.worker import FederityWorker, deploy, run_worker, warm_up
from federity.contract import load_great_expectations
from federity.errors import ConfigError
from federity.identity import Wallet
from federity.training.torch_trainer import warm_up as torch_warm_up
from flows.local_train import AGENT_DATA, AGENT_REMOTE, AGENT_WORKSPACE, local_train

SITE_MODULES = ("federity.site", "federity.repo.train", "dvc.repo", "torch", "federity.training.torch_trainer",
                "federity.weights.torch_adapter")
"""What a round's training imports (a TensorFlow repository's modules load at its first round)."""


def serve(pool: str, data: Path, workspace: Path, wallet_path: Path | None = None, remote: str | None = None,
          progress: Callable[[str], None] = lambda _: None) -> None:
    """Register ``local-train/<pool>`` and run the site's training runs until interrupted, one at a time; with
    ``remote``, only rounds of that repository (otherwise: of the repository the workspace was first cloned
    from)."""
    data = Path(data).resolve()
    if not data.exists():
        raise ConfigError(f"the agent's data path {data} does not exist", "pass --data with the site's dataset")
    wallet = Wallet.load(wallet_path)  # fail now, not at the first round, if the wallet is unusable
    os.environ[AGENT_DATA] = str(data)
    os.environ[AGENT_WORKSPACE] = str(Path(workspace).resolve())
    os.environ["FEDERITY_WALLET"] = str(wallet.path)
    if remote is not None:
        os.environ[AGENT_REMOTE] = remote
    load_great_expectations()
    warm_up(SITE_MODULES)
    torch_warm_up()
    deploy(local_train, name=pool, pool=pool)
    progress(f"local-train/{pool} is registered (work pool {pool}); training here when a round asks, until "
             "interrupted.")
    run_worker(FederityWorker(pool, [local_train], name=f"site {pool}"))
