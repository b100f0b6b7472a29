"""A federated round, step by step, as the round flow composes it (flows hold no domain logic).

pin → (sites train) → collect and check → review gate → finalise (aggregate + push, idempotent); tracking is
:meth:`federity.repo.Repository.track`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from federity.errors import UpdateError
from federity.identity import Wallet
from federity.repo import MAIN_BRANCH, Repository
from federity.repo.branches import require_model_branch
from federity.repo.commits import read_commit
from federity.repo.updates import UpdateInfo, check_updates, list_updates, record_review


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


def collect_updates(repo: Repository, wallet: Wallet, pin: RoundPin) -> list[UpdateInfo]:
    """Pull the sites' updates for this round (those carrying its nonce) and check them; the outcome is
    recorded in signed review notes (``verified`` or ``rejected`` with the reason)."""
    repo.pull()
    mine = [u for u in list_updates(repo) if u.nonce == pin.nonce and u.status != "aggregated"]
    check_updates(repo, wallet, mine, nonce=pin.nonce)
    return mine


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


def finalise_round(repo: Repository, wallet: Wallet, pin: RoundPin, updates: list[UpdateInfo], *,
                   strategy: str | None = None, parameters: dict[str, Any] | None = None,
                   quorum: int = 1) -> dict[str, Any]:
    """Aggregate the round's approved updates on the round's branch (with ``strategy`` and its ``parameters``, by
    default federity.yaml's) and push; a re-run returns the same commit."""
    _on_branch(repo, pin.branch)
    result = repo.aggregate(wallet, strategy=strategy, parameters=parameters, round=pin.round,
                            updates=[u.id for u in updates], min_updates=quorum)
    repo.push()
    return result.to_json()

