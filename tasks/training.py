"""The tasks of a site's local-train flow, one per stage of :func:`federity.site.train_at_site`, so that the
Prefect UI times each one: bring the clone to the round's base, check the data contract, train (and prove), commit
the update, push it. The stages hand one :class:`~federity.repo.train.LocalTraining` along, in the agent's process:
nothing of it is stored or sent (no cache, no persisted results)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from federity.identity import Wallet
from federity.repo.train import LocalTraining, UpdateResult

STAGE = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="sync workspace", **STAGE)
def start_training(remote: str, workspace: str, data: str, base: str, nonce: str, branch: str,
                   epochs: int | None, pinned: str | None) -> LocalTraining:
    """Fetch the round's base into the site's clone (of the agent's repository only) and read what training needs
    from it."""
    from federity.site import start_training as start

    return start(remote, Path(workspace), Wallet.load(), Path(data), base=base, nonce=nonce, branch=branch,
                 epochs=epochs, pinned=pinned)


@task(name="check data contract", **STAGE)
def check_data(training: LocalTraining) -> None:
    """Check the site's dataset against the base's data contract (the outcome says which expectations failed,
    never a value)."""
    training.check_data()


@task(name="train", **STAGE)
def fit(training: LocalTraining) -> dict[str, Any] | None:
    """Train (when the repository requires proofs: train the head in the circuit and prove the audited steps, with
    the proving progress in the run's log); returns the proof's timings, or None."""
    training.fit(progress=get_run_logger().info)
    summary = training.proof_summary
    return None if summary is None else {k: summary[k] for k in ("training_seconds", "prove_seconds")}


@task(name="commit update", **STAGE)
def commit_update(training: LocalTraining) -> UpdateResult:
    """Commit the trained weights as the site's signed update."""
    return training.commit()


@task(name="push update", **STAGE)
def publish(training: LocalTraining, update: UpdateResult) -> dict[str, Any]:
    """Push the update; returns what may leave the site (ids, counts, metrics, the proof summary)."""
    from federity.site import publish as push

    return push(training, update)
