"""Prefect tasks of the owner's round flow: each wraps one step of :mod:`federity.rounds`, so that the Prefect UI
times each phase. Only ids, hashes, URIs and metrics go in and out; results are not persisted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from federity.identity import Wallet
from federity.repo import Repository


def _owner(repo_dir: str) -> tuple[Repository, Wallet]:
    return Repository.open(repo_dir), Wallet.load()


@task(name="finish interrupted round", retries=2, retry_delay_seconds=2)
def finish_interrupted_round(repo_dir: str, branch: str, validation: str | None) -> str | None:
    """Push and track an aggregate an interrupted round left unpushed or untracked; returns it, or None."""
    from federity.rounds import finish_interrupted_round as finish

    return finish(Repository.open(repo_dir), branch, Path(validation) if validation else None)


@task(name="pin round", retries=2, retry_delay_seconds=2)
def pin_round(repo_dir: str, branch: str) -> dict[str, Any]:
    """Pin the round's branch, base commit, round number and nonce."""
    from federity.rounds import pin_round as pin

    return pin(Repository.open(repo_dir), branch).to_json()


@task(name="collect updates", retries=2, retry_delay_seconds=2)
def collect_updates(repo_dir: str, pin: dict[str, Any]) -> list[str]:
    """Pull the round's updates; returns their ids."""
    from federity.rounds import RoundPin
    from federity.rounds import collect_updates as collect

    return [u.id for u in collect(Repository.open(repo_dir), RoundPin(**pin))]


@task(name="check updates", retries=2, retry_delay_seconds=2)
def check_updates(repo_dir: str, pin: dict[str, Any], ids: list[str]) -> list[dict[str, Any]]:
    """Check the round's updates (signatures, roles, base, nonce, tensors, proofs); returns each with its status
    and reason."""
    from federity.repo.updates import check_updates as check
    from federity.repo.updates import list_updates

    repo, wallet = _owner(repo_dir)
    updates = [u for u in list_updates(repo) if u.id in ids]
    check(repo, wallet, updates, nonce=pin["nonce"])  # recorded in signed review notes
    return [u.to_json() for u in updates]


@task(name="record review decisions")
def record_decisions(repo_dir: str, pin: dict[str, Any], decisions: dict[str, bool] | None,
                     reason: str | None = None) -> list[str]:
    """Approve the verified updates (all, or those ``decisions`` approves); returns the approved ids."""
    from federity.repo.updates import list_updates
    from federity.rounds import approve_verified

    repo, wallet = _owner(repo_dir)
    mine = [u for u in list_updates(repo) if u.nonce == pin["nonce"]]
    return [u.id for u in approve_verified(repo, wallet, mine, decisions, reason)]


@task(name="aggregate", retries=2, retry_delay_seconds=2)
def aggregate_round(repo_dir: str, pin: dict[str, Any], approved: list[str], strategy: str | None,
                    strategy_params: dict[str, Any] | None, quorum: int) -> dict[str, Any]:
    """Aggregate the approved updates into the round's signed commit on its branch (idempotent per round)."""
    from federity.repo.updates import list_updates
    from federity.rounds import RoundPin
    from federity.rounds import aggregate_round as aggregate

    repo, wallet = _owner(repo_dir)
    chosen = [u for u in list_updates(repo) if u.id in approved]
    return aggregate(repo, wallet, RoundPin(**pin), chosen, strategy=strategy, parameters=strategy_params,
                     quorum=quorum)


@task(name="push", retries=2, retry_delay_seconds=2)
def push_round(repo_dir: str, pin: dict[str, Any]) -> None:
    """Push the round's aggregate and review notes to origin."""
    from federity.rounds import RoundPin
    from federity.rounds import push_round as push

    push(Repository.open(repo_dir), RoundPin(**pin))


@task(name="track in MLflow", retries=2, retry_delay_seconds=2)
def track_round(repo_dir: str, commit: str, validation: str | None) -> str:
    """Log the round's commit to MLflow; returns the run id."""
    return Repository.open(repo_dir).track(commit, validation=Path(validation) if validation else None)


@task(name="mint NFTs")
def mint(repo_dir: str, commit: str) -> str | None:
    """Mint every queued NFT (this round's, and any an earlier round left queued), publish the mint records, and
    return ``commit``'s mint. An unreachable ledger leaves them queued for the next round or `federity nft sync`:
    the round's commit stands."""
    from federity.repo.nft import mint_address
    from federity.repo.sync import push_notes

    repo, wallet = _owner(repo_dir)
    report = repo.nft_sync(wallet)
    if report.minted:
        push_notes(repo)
    if report.error:
        get_run_logger().warning("%d NFT(s) queued, not minted: %s", len(report.queued), report.error)
    return mint_address(repo, commit)
