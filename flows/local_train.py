"""The local-train flow each edge agent runs: train the round's base model on the site's private data and push
the update, each stage a task run. The data path, the wallet, the workspace and the repository it serves are the
agent's own settings (environment variables set by ``federity agent start``); they never travel as parameters."""

from __future__ import annotations

import os
from typing import Any

from prefect import flow
from prefect.utilities.annotations import quote

from tasks.training import check_data, commit_update, fit, publish, start_training

AGENT_DATA = "FEDERITY_AGENT_DATA"
AGENT_WORKSPACE = "FEDERITY_AGENT_WORKSPACE"
AGENT_REMOTE = "FEDERITY_AGENT_REMOTE"


@flow(name="local-train", persist_result=False, log_prints=False)
def local_train(remote: str, base: str, round: int, nonce: str, branch: str = "main",
                epochs: int | None = None) -> dict[str, Any]:
    """Train for round ``round`` of ``branch`` from commit ``base``; returns the update id, sample count and local
    metrics."""
    training = start_training(remote, os.environ[AGENT_WORKSPACE], os.environ[AGENT_DATA], base, nonce, branch,
                              epochs, os.environ.get(AGENT_REMOTE))
    check_data(quote(training))
    fit(quote(training))
    update = commit_update(quote(training))
    return publish(quote(training), update)
