"""Prefect tasks of a federated round: each wraps one coarse step of :mod:`federity.rounds` or
:mod:`federity.site`. Only ids, hashes, URIs and metrics go in and out; results are not persisted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from federity.identity import Wallet
from federity.repo import Repository


def _owner(repo_dir: str) -> tuple[Repository, Wallet]:
    return Repository.open(repo_dir), Wallet.load()


@task(name="pin round", retries=2, retry_delay_seconds=2)
def pin_round(repo_dir: str, branch: str) -> dict[str, Any]:
    """Pin the round's branch, base commit, round number and nonce."""
    from federity.rounds import pin_round as pin

    return pin(Repository.open(repo_dir), branch).to_json()


@task(name="train at site")
def train_at_site(remote: str, workspace: str, data: str, base: str, nonce: str, branch: str,
                  epochs: int | None = None) -> dict[str, Any]:
    """Train on the site's data and push the update (runs inside the agent's local-train flow); proving progress
    goes to the run's log."""
    from federity.site import train_at_site as train

    return train(remote, Path(workspace), Wallet.load(), Path(data), base=base, nonce=nonce, branch=branch,
                 epochs=epochs, progress=get_run_logger().info)


@task(name="collect and check updates", retries=2, retry_delay_seconds=2)
def collect_updates(repo_dir: str, pin: dict[str, Any]) -> list[dict[str, Any]]:
    """Pull the round's updates and check them; returns each with its status and reason."""
    from federity.rounds import RoundPin
    from federity.rounds import collect_updates as collect

    repo, wallet = _owner(repo_dir)
    return [u.to_json() for u in collect(repo, wallet, RoundPin(**pin))]


@task(name="record review decisions")
def record_decisions(repo_dir: str, pin: dict[str, Any], decisions: dict[str, bool] | None,
                     reason: str | None = None) -> list[str]:
    """Approve the verified updates (all, or those ``decisions`` approves); returns the approved ids."""
    from federity.repo.updates import list_updates
    from federity.rounds import approve_verified

    repo, wallet = _owner(repo_dir)
    mine = [u for u in list_updates(repo) if u.nonce == pin["nonce"]]
    return [u.id for u in approve_verified(repo, wallet, mine, decisions, reason)]


@task(name="aggregate, commit and push", retries=2, retry_delay_seconds=2)
def finalise_round(repo_dir: str, pin: dict[str, Any], approved: list[str], strategy: str | None,
                   strategy_params: dict[str, Any] | None, quorum: int) -> dict[str, Any]:
    """Aggregate the approved updates on the round's branch and push (idempotent per round)."""
    from federity.repo.updates import list_updates
    from federity.rounds import RoundPin
    from federity.rounds import finalise_round as finalise

    repo, wallet = _owner(repo_dir)
    chosen = [u for u in list_updates(repo) if u.id in approved]
    return finalise(repo, wallet, RoundPin(**pin), chosen, strategy=strategy, parameters=strategy_params,
                    quorum=quorum)


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
