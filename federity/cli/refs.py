"""``federity checkout|branch|tag|revert``: moving through and undoing history."""

from __future__ import annotations

import click

from federity.cli import FederityCommand, emit, load_wallet, open_repo
from federity.repo.nft import mint_new_commits


@click.command(cls=FederityCommand)
@click.argument("rev")
def checkout(rev: str) -> None:
    """Switch the working tree and weights to a branch, tag or commit."""
    commit = open_repo().checkout(rev)
    emit({"commit": commit}, f"checked out {rev} ({commit[:12]})")


@click.command(cls=FederityCommand)
@click.argument("name")
@click.argument("rev", required=False)
def branch(name: str, rev: str | None) -> None:
    """Create a branch at REV (default: HEAD) without switching to it."""
    commit = open_repo().branch(name, rev)
    emit({"commit": commit}, f"branch {name} at {commit[:12]}")


@click.command(cls=FederityCommand)
@click.argument("name")
@click.argument("rev", required=False)
def tag(name: str, rev: str | None) -> None:
    """Tag REV (default: HEAD)."""
    commit = open_repo().tag(name, rev)
    emit({"commit": commit}, f"tag {name} at {commit[:12]}")


@click.command(cls=FederityCommand)
@click.argument("rev")
@click.option("-m", "--message", help="Commit message (default: Revert <commit>: <its message>).")
def revert(rev: str, message: str | None) -> None:
    """Commit the current weights with REV's change undone, as `git revert`."""
    repo, wallet = open_repo(), load_wallet()
    record = repo.revert(wallet, rev, message)
    mint_new_commits(repo, wallet)
    emit({"commit": record.commit, "weights_sha256": record.meta.weights_sha256},
         f"revert commit {record.commit[:12]}  weights {record.meta.weights_sha256[:12]}")
