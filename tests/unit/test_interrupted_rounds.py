"""The owner's process killed at each step of finalising a round (after aggregate, after push, after track, after
mint): the next run of the round flow finishes that round first, with exactly one commit, one MLflow run and one
NFT, and nothing lost. Real git, DVC, MLflow (SQLite) and the embedded Solana ledger; the round's steps are the
library functions the flow's tasks call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.updates import check_updates
from federity.rounds import (
    aggregate_round,
    approve_verified,
    collect_updates,
    finish_interrupted_round,
    pin_round,
    push_round,
)
from federity.site import train_at_site
from federity.tracking import DEFAULT_DB
from tests.conftest import git, write_csv

STEPS = ["aggregate", "push", "track", "mint"]


@pytest.mark.parametrize("killed_after", STEPS)
def test_a_round_interrupted_after_each_finalising_step_is_finished_once_by_the_next_run(
        killed_after: str, federation: dict[str, Repository], owner: Wallet, contributor: Wallet, site_b: Wallet,
        tmp_path: Path, own_ledger: Path, seed_mlflow_db: Callable[[Path], Path]) -> None:
    repo = federation["owner"]
    seed_mlflow_db(repo.root)
    pin = pin_round(repo)
    for name, wallet, n in (("a", contributor, 30), ("b", site_b, 40)):
        train_at_site(pin.remote, tmp_path / f"ws-{name}", wallet, write_csv(tmp_path / name / "t.csv", n, seed=n),
                      base=pin.base, nonce=pin.nonce)
    updates = collect_updates(repo, pin)
    check_updates(repo, owner, updates, nonce=pin.nonce)
    aggregate = aggregate_round(repo, owner, pin, approve_verified(repo, owner, updates), quorum=2)["commit"]
    later_steps: dict[str, Callable[[], object]] = {
        "push": lambda: push_round(repo, pin), "track": lambda: repo.track(aggregate),
        "mint": lambda: repo.nft_sync(owner)}
    for step in STEPS[1:STEPS.index(killed_after) + 1]:
        later_steps[step]()
    # the owner's process dies here; the next run of the round flow starts in a new one
    reopened = Repository.open(repo.root)
    finished = finish_interrupted_round(reopened)
    assert finished == (aggregate if killed_after in ("aggregate", "push") else None)
    reopened.nft_sync(owner)  # the next round's mint task mints every queued NFT

    assert git(tmp_path / "remote.git", "rev-parse", "main") == aggregate
    assert git(tmp_path / "remote.git", "rev-list", "--count", f"{pin.base}..main") == "3"  # the aggregate + 2 updates
    client = MlflowClient(tracking_uri=f"sqlite:///{repo.root / DEFAULT_DB}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string=f"tags.`federity.commit` = '{aggregate}'")
    assert len(runs) == 1
    assert reopened.nft_show(aggregate)["mint"]
    again = reopened.nft_sync(owner)
    assert (again.minted, again.queued) == ([], [])  # one NFT: nothing left to mint
    assert finish_interrupted_round(reopened) is None  # and nothing left to finish
    assert pin_round(reopened).base == aggregate  # the next round trains from it
    assert reopened.verify().ok
