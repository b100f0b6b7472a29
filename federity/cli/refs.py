"""``federity checkout|branch|tag|revert|merge``: moving through, undoing and joining history."""

from __future__ import annotations

import click

from federity.cli import FederityCommand, emit, load_wallet, open_repo, strategy_parameters
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


@click.command(cls=FederityCommand)
@click.argument("branch")
@click.option("--strategy", help="Merge method (default: average): average, weighted, task-arithmetic, ties, dare, "
                                 "or a plugin's.")
@click.option("--strategy-param", "params", multiple=True, metavar="KEY=VALUE",
              help="A merge method parameter, e.g. --strategy-param scale=0.5 (repeatable).")
@click.option("-m", "--message", help="Commit message (default: Merge BRANCH into <current> (<method>)).")
def merge(branch: str, strategy: str | None, params: tuple[str, ...], message: str | None) -> None:
    """Merge BRANCH's model into the current branch's: a signed two-parent merge commit (needs maintainer)."""
    repo, wallet = open_repo(), load_wallet()
    result = repo.merge(wallet, branch, strategy=strategy, parameters=strategy_parameters(params), message=message)
    mint_new_commits(repo, wallet)
    emit(result.to_json(), f"merge commit {result.commit[:12]}  {result.strategy}  base {result.merge_base[:12]}  "
                           f"weights {result.weights_sha256[:12]}")
