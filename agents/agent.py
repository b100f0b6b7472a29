"""The edge agent: serves the local-train flow for one site, next to its private data.

``federity agent start --pool NAME --data PATH`` runs :func:`serve`. It registers the deployment
``local-train/NAME`` with the Prefect server named by ``PREFECT_API_URL`` and runs each round's training when
the owner's round flow asks for it. The data path, wallet and workspace stay in this process's environment:
Prefect never sees them.
"""

from __future__ import annotations

import os
from pathlib import Path

from federity.errors import ConfigError
from federity.identity import Wallet
from flows.local_train import AGENT_DATA, AGENT_WORKSPACE, local_train


def serve(pool: str, data: Path, workspace: Path, wallet_path: Path | None = None) -> None:
    """Serve ``local-train/<pool>`` until interrupted; one training run at a time."""
    data = Path(data).resolve()
    if not data.exists():
        raise ConfigError(f"the agent's data path {data} does not exist", "pass --data with the site's dataset")
    wallet = Wallet.load(wallet_path)  # fail now, not at the first round, if the wallet is unusable
    os.environ[AGENT_DATA] = str(data)
    os.environ[AGENT_WORKSPACE] = str(Path(workspace).resolve())
    os.environ["FEDERITY_WALLET"] = str(wallet.path)
    local_train.serve(name=pool, limit=1, print_starting_message=False)
