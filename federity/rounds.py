"""A federated round, step by step, as the round flow composes it (flows hold no domain logic).

finish an interrupted round → pin → (sites train) → collect → check → review gate → aggregate (idempotent) →
push; tracking is :meth:`federity.repo.Repository.track`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federity.errors import UpdateError
from federity.identity import Wallet
from federity.repo import MAIN_BRANCH, Repository
from federity.repo.branches import require_model_branch
from federity.repo.commits import read_commit
from federity.repo.updates import UpdateInfo, list_updates, record_review


@dataclass
class RoundPin:
    """What every site trains from in one round."""

    remote: str
    base: str
    round: int
    nonce: str
    branch: str = MAIN_BRANCH
    """The branch the round trains and aggregates on (main, or a variant)."""

    def to_json(self) -> dict[str, Any]:
        """As flow parameters carry it."""
        return {"remote": self.remote, "base": self.base, "round": self.round, "nonce": self.nonce,
                "branch": self.branch}


def _on_branch(repo: Repository, branch: str) -> None:
    if repo.git.current_branch() != require_model_branch(branch):
        repo.checkout(branch)


def pin_round(repo: Repository, branch: str = MAIN_BRANCH) -> RoundPin:
    """Pull ``branch`` (origin must have it: the sites train from origin's), then pin its head as the base of the
    next round, with a fresh nonce."""
    _on_branch(repo, branch)
    repo.pull()
    base = repo.head()
    meta = read_commit(repo, base).meta
    if meta is None:
        raise UpdateError(f"{branch}'s head {base[:12]} carries no Federity metadata", "run `federity verify`")
    remote = repo.git.run("remote", "get-url", "origin")
    return RoundPin(remote, base, meta.round + 1, secrets.token_hex(16), branch)


def finish_interrupted_round(repo: Repository, branch: str = MAIN_BRANCH,
                             validation: Path | None = None) -> str | None:
    """Finish what an interrupted round left on ``branch`` (the owner's process killed after aggregating): push
    an aggregate committed here but not on origin, and track it in MLflow if it is not yet. Returns that
    aggregate, or ``None`` when there was nothing to finish. Its NFT, queued when it was committed, is minted with
    the next round's (``mint`` mints every queued NFT)."""
    from federity.records import parse_mlflow_note
    from federity.repo.notes import MLFLOW, read_note
    from federity.repo.sync import fetch_checked

    _on_branch(repo, branch)
    fetch_checked(repo)
    head = repo.head()
    meta = read_commit(repo, head).meta
    if meta is None or meta.kind != "aggregate":
        return None
    upstream = repo.git.try_resolve(f"refs/remotes/origin/{branch}")
    unpushed = upstream != head and (upstream is None or repo.git.run("merge-base", head, upstream) == upstream)
    untracked = read_note(repo, MLFLOW, head, parse_mlflow_note) is None
    if unpushed:
        repo.push()
    if untracked:
        repo.track(head, validation=validation)
    return head if unpushed or untracked else None


def collect_updates(repo: Repository, pin: RoundPin) -> list[UpdateInfo]:
    """Pull the sites' updates for this round: those carrying its nonce, not aggregated yet."""
    repo.pull()
    return [u for u in list_updates(repo) if u.nonce == pin.nonce and u.status != "aggregated"]


def approve_verified(repo: Repository, wallet: Wallet, updates: list[UpdateInfo],
                     decisions: dict[str, bool] | None = None, reason: str | None = None) -> list[UpdateInfo]:
    """The review gate's outcome: approve each verified update (all of them under the ``auto`` policy, or
    those ``decisions`` approves), reject the rest with ``reason``. Returns the approved updates."""
    approved = []
    for update in updates:
        if update.status not in ("verified", "approved"):
            continue
        if decisions is None or decisions.get(update.id, False):
            record_review(repo, wallet, update, "approved", None)
            approved.append(update)
        else:
            record_review(repo, wallet, update, "rejected", reason or "not approved by the round's reviewer")
    return approved


def aggregate_round(repo: Repository, wallet: Wallet, pin: RoundPin, updates: list[UpdateInfo], *,
                    strategy: str | None = None, parameters: dict[str, Any] | None = None,
                    quorum: int = 1) -> dict[str, Any]:
    """Aggregate the round's approved updates on the round's branch (with ``strategy`` and its ``parameters``, by
    default federity.yaml's); a re-run returns the same commit. Push it with :func:`push_round`."""
    _on_branch(repo, pin.branch)
    result = repo.aggregate(wallet, strategy=strategy, parameters=parameters, round=pin.round,
                            updates=[u.id for u in updates], min_updates=quorum)
    return result.to_json()


def push_round(repo: Repository, pin: RoundPin) -> None:
    """Push the round's branch (its aggregate) and the review notes."""
    _on_branch(repo, pin.branch)
    repo.push()
