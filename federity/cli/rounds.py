"""``federity round run`` and ``federity agent start``: rounds orchestrated by Prefect, and the edge agent."""

from __future__ import annotations

import os
from pathlib import Path

import click

from federity.cli import FederityGroup, emit, open_repo, state, strategy_parameters


@click.group(cls=FederityGroup, name="round")
def round_group() -> None:
    """Federated rounds orchestrated by Prefect (PREFECT_API_URL names the server)."""


@round_group.command()
@click.option("--pool", "pools", multiple=True, required=True, help="A site's agent pool (repeatable).")
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--review", type=click.Choice(["auto", "manual"]), default="auto", show_default=True)
@click.option("--quorum", default=1, show_default=True, type=click.IntRange(min=1),
              help="Fewest accepted updates a round needs; below it the round fails and the branch is unchanged.")
@click.option("--strategy", help="Aggregation strategy (default: federity.yaml's).")
@click.option("--strategy-param", "params", multiple=True, metavar="KEY=VALUE",
              help="A strategy parameter, e.g. --strategy-param fraction=0.2 (repeatable; default: federity.yaml's).")
@click.option("--train-timeout", default=600.0, show_default=True, help="Seconds to wait for the sites.")
@click.option("--review-timeout", default=3600, show_default=True, help="Seconds to wait for a manual review.")
@click.option("--validation", type=click.Path(path_type=Path), help="The owner's validation set, for MLflow.")
@click.option("--branch", default="main", show_default=True,
              help="The branch the sites train from and the aggregates land on (a variant, pushed to origin).")
def run(pools: tuple[str, ...], rounds: int, review: str, quorum: int, strategy: str | None,
        params: tuple[str, ...], train_timeout: float, review_timeout: int, validation: Path | None,
        branch: str) -> None:
    """Run federated rounds with the sites' agents; your wallet signs reviews and aggregates."""
    from flows.round import federated_round

    repo = open_repo()
    if state().wallet:  # the flow's tasks sign with the wallet this process names
        os.environ["FEDERITY_WALLET"] = str(state().wallet.resolve())
    summary = federated_round(
        repo=str(repo.root), pools=list(pools), rounds=rounds, review=review, quorum=quorum, strategy=strategy,
        strategy_params=strategy_parameters(params), train_timeout=train_timeout, review_timeout=review_timeout,
        validation=str(validation.resolve()) if validation else None, branch=branch,
    )
    emit({"rounds": summary}, "\n".join(f"round {r['round']}: {r['commit'][:12]} from {len(r['updates'])} "
                                        f"update(s); sites {r['sites']}" for r in summary))


@click.group(cls=FederityGroup)
def agent() -> None:
    """The edge agent a site runs next to its private data."""


@agent.command()
@click.option("--pool", required=True, help="This site's name; the round flow runs local-train/POOL.")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="The site's private dataset.")
@click.option("--workspace", type=click.Path(path_type=Path), default=Path("federity-workspace"),
              show_default=True, help="Where the agent keeps its clone of the repository.")
def start(pool: str, data: Path, workspace: Path) -> None:
    """Serve local training for the round flow until interrupted."""
    from agents.agent import serve

    serve(pool, data, workspace, state().wallet)
