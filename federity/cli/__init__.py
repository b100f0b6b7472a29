"""The ``federity`` command line (click): one small module per command group; each handler parses, calls one
library function and prints human text, or one JSON document with ``--json``.

Exit codes: 0 ok, 1 a Federity error (stderr says what happened and what to do), 2 usage.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from federity.builders import code_notice, repository_code
from federity.config import parse_pairs
from federity.errors import FederityError
from federity.identity import Wallet
from federity.repo import Repository


@dataclass
class CliState:
    """Global options; they may stand before or after the command name."""

    repo: Path | None = None
    wallet: Path | None = None
    json: bool = False


def _global_options() -> list[click.Option]:
    return [
        click.Option(["--repo"], type=click.Path(path_type=Path), default=None,
                     help="Repository directory (default: the current directory)."),
        click.Option(["--wallet"], type=click.Path(path_type=Path), default=None,
                     help="Solana keypair file (default: $FEDERITY_WALLET, else ~/.config/solana/id.json)."),
        click.Option(["--json"], is_flag=True, default=False, help="Print one JSON document on stdout."),
    ]


class _GlobalOptions:
    """Mixin: add the global options to a command or group and move their values into :class:`CliState`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options())  # type: ignore[attr-defined]

    def invoke(self, ctx: click.Context) -> Any:
        cli_state = ctx.ensure_object(CliState)
        for name in ("repo", "wallet", "json"):
            value = ctx.params.pop(name, None)
            if value:
                setattr(cli_state, name, value)
        return super().invoke(ctx)  # type: ignore[misc]


class FederityCommand(_GlobalOptions, click.Command):
    """A command that accepts the global options."""


class FederityGroup(_GlobalOptions, click.Group):
    """A group whose commands and subgroups accept the global options."""

    command_class = FederityCommand
    group_class = type


def state() -> CliState:
    """The global options of this invocation."""
    return click.get_current_context().ensure_object(CliState)


def open_repo() -> Repository:
    """The repository ``--repo`` names, or the one containing the current directory; a private repository's
    weights are read with the wallet ``--wallet`` names (or the default one)."""
    return Repository.open(state().repo or Path.cwd(), wallet_path=state().wallet)


def load_wallet() -> Wallet:
    """The wallet ``--wallet`` names, or the default one."""
    return Wallet.load(state().wallet)


console = Console(highlight=False, soft_wrap=True)


def strategy_parameters(pairs: tuple[str, ...]) -> dict[str, Any] | None:
    """``--strategy-param KEY=VALUE`` options as strategy parameters; ``None`` when none were given (the
    repository's own apply)."""
    return parse_pairs(list(pairs), "strategy parameter", "--strategy-param fraction=0.2") if pairs else None


def emit(data: dict[str, Any], human: Callable[[], None] | str) -> None:
    """Print ``data`` as JSON with ``--json``; otherwise the human rendering."""
    if state().json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif isinstance(human, str):
        console.print(human)
    else:
        human()


def show_repository_code(repo: Repository, rev: str) -> None:
    """Say on stderr (stdout stays the JSON document) which of the repository's own modules the configuration at
    ``rev`` runs; a configuration that cannot be read is said too (the command itself reports it if it needs it)."""
    try:
        notice = code_notice(repository_code(repo.config(repo.git.resolve(rev))))
    except FederityError as exc:
        notice = f"cannot tell which of its own code this repository runs at {rev}: {exc.message}"
    if notice:
        sys.stderr.write(f"notice: {notice}\n")


@click.group(cls=FederityGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Federity: version control and collaborative training for ML models on private data."""


def _load_commands() -> None:
    from federity.cli import (
        demo,
        export,
        history,
        members,
        nft,
        refs,
        repository,
        rounds,
        train,
        updates,
        verify,
        wallet,
    )

    for command in (
        wallet.wallet, repository.init, repository.clone, repository.pull, repository.push, repository.commit,
        repository.models, members.members, history.log, history.show, history.diff, export.export, refs.checkout,
        refs.branch, refs.tag, refs.revert, refs.merge, verify.verify, train.train, updates.updates, updates.review,
        updates.aggregate, updates.track, rounds.round_group, rounds.agent, demo.demo, nft.nft,
    ):
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    _load_commands()
    try:
        code = cli.main(args, prog_name="federity", standalone_mode=False)
    except FederityError as exc:
        if "--json" in args:
            sys.stdout.write(json.dumps({"error": {"type": type(exc).__name__, "message": exc.message,
                                                   "hint": exc.hint}}) + "\n")
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    if isinstance(code, int):  # a handler's click.exceptions.Exit, returned in non-standalone mode
        sys.exit(code)
