"""``federity round run``, ``federity round serve`` and ``federity agent start``: rounds orchestrated by Prefect,
and the edge agent."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from federity.cli import FederityGroup, emit, open_repo, state, strategy_parameters


@click.group(cls=FederityGroup, name="round")
def round_group() -> None:
    """Federated rounds orchestrated by Prefect (PREFECT_API_URL names the server)."""


def round_options(command: Callable[..., None]) -> Callable[..., None]:
    """The round flow's options, shared by ``round run`` and ``round serve``."""
    options = [
        click.option("--pool", "pools", multiple=True, required=True, help="A site's agent pool (repeatable)."),
        click.option("--rounds", default=1, show_default=True, type=click.IntRange(min=1),
                     help="Rounds one run of the flow makes."),
        click.option("--review", type=click.Choice(["auto", "manual"]), default="auto", show_default=True),
        click.option("--quorum", default=1, show_default=True, type=click.IntRange(min=1),
                     help="Fewest accepted updates a round needs; below it the round fails and the branch is "
                          "unchanged."),
        click.option("--strategy", help="Aggregation strategy (default: federity.yaml's)."),
        click.option("--strategy-param", "params", multiple=True, metavar="KEY=VALUE",
                     help="A strategy parameter, e.g. --strategy-param fraction=0.2 (repeatable; default: "
                          "federity.yaml's)."),
        click.option("--train-timeout", default=600.0, show_default=True, help="Seconds to wait for the sites."),
        click.option("--review-timeout", default=3600, show_default=True,
                     help="Seconds to wait for a manual review."),
        click.option("--validation", type=click.Path(path_type=Path),
                     help="The owner's validation set, for MLflow."),
        click.option("--branch", default="main", show_default=True,
                     help="The branch the sites train from and the aggregates land on (a variant, pushed to "
                          "origin)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def flow_parameters(pools: tuple[str, ...], rounds: int, review: str, quorum: int, strategy: str | None,
                    params: tuple[str, ...], train_timeout: float, review_timeout: int, validation: Path | None,
                    branch: str) -> dict[str, Any]:
    """The round flow's parameters from the options (``repo`` aside), as Prefect stores them."""
    return {"pools": list(pools), "rounds": rounds, "review": review, "quorum": quorum, "strategy": strategy,
            "strategy_params": strategy_parameters(params), "train_timeout": train_timeout,
            "review_timeout": review_timeout, "validation": str(validation.resolve()) if validation else None,
            "branch": branch}


def _sign_with_the_global_wallet() -> None:
    if state().wallet:  # the flow's tasks sign with the wallet this process names
        os.environ["FEDERITY_WALLET"] = str(state().wallet.resolve())


@round_group.command()
@round_options
@click.option("--live/--no-live", default=None,
              help="Show each site's state and phase while the rounds run (default: when stderr is a terminal).")
def run(live: bool | None, **options: Any) -> None:
    """Run federated rounds with the sites' agents here; your wallet signs reviews and aggregates."""
    from flows.live import LiveRoundView
    from flows.round import federated_round
    from flows.settings import flow_settings

    repo = open_repo()
    _sign_with_the_global_wallet()
    view = LiveRoundView(repo.root, list(options["pools"])) if (sys.stderr.isatty() if live is None else live) \
        else contextlib.nullcontext()
    with view, flow_settings():
        summary = federated_round(repo=str(repo.root), **flow_parameters(**options))
    emit({"rounds": summary}, "\n".join(f"round {r['round']}: {r['commit'][:12]} from {len(r['updates'])} "
                                        f"update(s); sites {r['sites']}" for r in summary))


@round_group.command()
@round_options
@click.option("--name", help="The deployment's name: federated-round/NAME (default: the repository's name).")
@click.option("--cron", help="Start a run on this cron schedule, e.g. '0 2 * * *' (02:00 every day, UTC).")
@click.option("--interval", type=click.FloatRange(min=1), help="Start a run every INTERVAL seconds.")
@click.option("--paused", is_flag=True, help="Register the schedule paused (resume it in the Prefect UI).")
def serve(name: str | None, cron: str | None, interval: float | None, paused: bool, **options: Any) -> None:
    """Register this repository's rounds as a Prefect deployment and run them until interrupted.

    Start, schedule, pause and watch the rounds in the Prefect UI (federated-round/NAME); this process holds
    your wallet and runs each round, one at a time."""
    if cron and interval:
        raise click.UsageError("give --cron or --interval, not both")
    from agents.rounds import serve_rounds

    repo = open_repo()
    _sign_with_the_global_wallet()
    serve_rounds(repo.root, name or repo.config().name, flow_parameters(**options), cron=cron,
                 interval=interval, paused=paused, progress=lambda line: click.echo(line, err=True))


@click.group(cls=FederityGroup)
def agent() -> None:
    """The edge agent a site runs next to its private data."""


@agent.command()
@click.option("--pool", required=True, help="This site's name; the round flow runs local-train/POOL.")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="The site's private dataset.")
@click.option("--workspace", type=click.Path(path_type=Path), default=Path("federity-workspace"),
              show_default=True, help="Where the agent keeps its clone of the repository.")
@click.option("--remote", help="The repository's git URL: rounds naming another are refused (default: the one the "
                               "workspace is first cloned from).")
def start(pool: str, data: Path, workspace: Path, remote: str | None) -> None:
    """Serve local training for the round flow until interrupted."""
    from agents.agent import serve

    serve(pool, data, workspace, state().wallet, remote, progress=lambda line: click.echo(line, err=True))
