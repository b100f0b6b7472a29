"""``federity updates|review|aggregate``: updates reviewed like pull requests, and aggregated into main."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.table import Table

from federity.cli import FederityCommand, FederityGroup, console, emit, load_wallet, open_repo, strategy_parameters
from federity.repo.nft import mint_new_commits
from federity.repo.updates import STATUSES


@click.command(cls=FederityCommand)
@click.option("--status", type=click.Choice(STATUSES), help="Only updates with this status.")
@click.option("--check", is_flag=True, help="Check pending updates first and record the outcome (maintainer).")
def updates(status: str | None, check: bool) -> None:
    """List updates with their status and the reason for it."""
    repo = open_repo()
    if check:
        repo.check_updates(load_wallet())
    listed = repo.updates(status)

    def human() -> None:
        if not listed:
            console.print("no updates" + (f" with status {status}" if status else ""))
            return
        table = Table("update", "for", "round", "author", "samples", "status", "reason")
        for u in listed:
            table.add_row(u.id[:12], u.target, str(u.round), u.author[:12], str(u.n_samples), u.status,
                          u.reason or "")
        console.print(table)

    emit({"updates": [u.to_json() for u in listed]}, human)


@click.group(cls=FederityGroup)
def review() -> None:
    """Approve or reject an update with a signed review."""


@review.command()
@click.argument("update")
@click.option("--reason", help="Why (optional for an approval).")
def approve(update: str, reason: str | None) -> None:
    """Check UPDATE and approve it."""
    _review(update, True, reason)


@review.command()
@click.argument("update")
@click.option("--reason", required=True, help="Why it is rejected.")
def reject(update: str, reason: str) -> None:
    """Reject UPDATE, saying why."""
    _review(update, False, reason)


def _review(update: str, approve: bool, reason: str | None) -> None:
    """Record the review; then, when a Prefect server is configured, answer a paused round flow that waits on it."""
    repo = open_repo()
    info = repo.review(load_wallet(), update, approve, reason)
    resumed = None
    if os.environ.get("PREFECT_API_URL"):
        from tasks.review_gate import resume_waiting_round

        resumed = resume_waiting_round(repo.root, {u.id: u.status for u in repo.updates()})
    text = f"{info.status} {info.id[:12]}" + (f": {info.reason}" if info.reason else "")
    text += f"; resumed the paused round flow run {resumed}" if resumed else "; publish with `federity push`"
    emit({"update": info.id, "status": info.status, "resumed_flow_run": resumed}, text)


@click.command(cls=FederityCommand)
@click.option("--strategy", help="Aggregation strategy (default: federity.yaml's), e.g. fedavg, trimmed-mean@1.")
@click.option("--strategy-param", "params", multiple=True, metavar="KEY=VALUE",
              help="A strategy parameter, e.g. --strategy-param fraction=0.2 (repeatable; default: federity.yaml's).")
def aggregate(strategy: str | None, params: tuple[str, ...]) -> None:
    """Aggregate the approved updates trained for the current branch into its next commit."""
    repo, wallet = open_repo(), load_wallet()
    result = repo.aggregate(wallet, strategy=strategy, parameters=strategy_parameters(params))
    if result.created:
        mint_new_commits(repo, wallet)
    emit(result.to_json(), f"round {result.round}: aggregate {result.commit[:12]} of {len(result.updates)} "
                           "update(s); publish with `federity push`")


@click.command(cls=FederityCommand)
@click.argument("rev", default="HEAD")
@click.option("--validation", type=click.Path(path_type=Path),
              help="Your validation set: the global model's loss and accuracy on it are logged too.")
def track(rev: str, validation: Path | None) -> None:
    """Log a commit to MLflow (once per commit) and note the run id on it."""
    repo = open_repo()
    commit = repo.git.resolve(rev)
    run_id = repo.track(commit, validation=validation)
    emit({"commit": commit, "mlflow_run": run_id}, f"{commit[:12]}: MLflow run {run_id}")
