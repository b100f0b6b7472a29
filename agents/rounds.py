"""The owner's round server: a repository's rounds as a Prefect deployment, run by the process holding the
owner's wallet.

``federity round serve`` runs :func:`serve_rounds`. It creates the deployment ``federated-round/<name>`` in the
work pool ``rounds-<name>``, with the round's parameters and an optional schedule, and then runs every flow run
of it (started from the Prefect UI, by the schedule, or through the API) in this process (:mod:`agents.worker`).
A manual review pauses the run with its form in the UI, as with ``federity round run``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.worker import FederityWorker, RunRefused, deploy, run_worker, warm_up
from federity.errors import ConfigError
from federity.tracking import Tracker
from flows.round import federated_round

OWNER_MODULES = ("federity.rounds", "federity.repo.aggregate", "federity.repo.verify", "federity.repo.track",
                 "federity.tracking", "mlflow", "dvc.repo", "torch")
"""What a round's collect, checks, aggregation and tracking import."""
DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def round_pool(name: str) -> str:
    """The work pool of the rounds deployment ``name``."""
    return f"rounds-{name}"


def deployment_name(name: str) -> str:
    """``name`` as a deployment name (letters, digits, ``.``, ``_``, ``-``), refused otherwise."""
    if not DEPLOYMENT_NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a deployment name (1 to 100 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit)", "pass --name, e.g. --name breast-cancer")
    return name


def serve_rounds(repo_root: Path, name: str, parameters: dict[str, Any], *, cron: str | None = None,
                 interval: float | None = None, paused: bool = False,
                 progress: Callable[[str], None] = lambda _: None) -> None:
    """Register ``federated-round/<name>`` for the repository at ``repo_root`` with ``parameters`` (the round
    flow's, without ``repo``) and the schedule, then run its flow runs here until interrupted, one at a time."""
    root = str(Path(repo_root).resolve())
    name = deployment_name(name)

    def admit(_flow: str, run_parameters: dict[str, Any]) -> None:
        if Path(str(run_parameters.get("repo", ""))).resolve() != Path(root):
            raise RunRefused(f"this round server runs rounds of the repository at {root}, not of "
                             f"{run_parameters.get('repo')!r}: start the run from its own deployment")

    warm_up(OWNER_MODULES)
    Tracker(Path(root), os.environ.get("MLFLOW_TRACKING_URI")).check()  # a new MLflow store: migrated now
    deploy(federated_round, name=name, pool=round_pool(name),
           parameters={**parameters, "repo": root}, cron=cron, interval=interval, paused=paused)
    progress(f"federated-round/{name} is registered (work pool {round_pool(name)}); start, schedule or pause its "
             "rounds in the Prefect UI. Running them here until interrupted.")
    run_worker(FederityWorker(round_pool(name), [federated_round], admit=admit, name=f"owner {name}"))
