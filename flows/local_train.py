"""The local-train flow each edge agent serves: train the round's base model on the site's private data and push
the update. The data path, the wallet and the workspace are the agent's own settings (environment variables set
by ``federity agent start``); they never travel as parameters."""

from __future__ import annotations

import os
from typing import Any

from prefect import flow

from tasks.rounds import train_at_site

AGENT_DATA = "FEDERITY_AGENT_DATA"
AGENT_WORKSPACE = "FEDERITY_AGENT_WORKSPACE"


@flow(name="local-train", persist_result=False, log_prints=False)
def local_train(remote: str, base: str, round: int, nonce: str, branch: str = "main",
                epochs: int | None = None) -> dict[str, Any]:
    """Train for round ``round`` of ``branch`` from commit ``base``; returns the update id, sample count and local
    metrics."""
    return train_at_site(remote, os.environ[AGENT_WORKSPACE], os.environ[AGENT_DATA], base, nonce, branch, epochs)
