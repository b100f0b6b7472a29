"""infra/compose.yaml agrees with what is tested: the services infra/launch.py starts (and tests/e2e/test_topology.py
runs rounds on), the versions the project pins, and command lines the `federity` command accepts. The compose file
itself cannot run here (no container runtime), so these are the checks that keep it from drifting."""

from __future__ import annotations

import re
import warnings
from importlib.metadata import version
from pathlib import Path

import click
import pytest
import yaml

from federity.cli import _load_commands, cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def test_the_compose_file_has_every_service_the_launcher_starts_and_the_parties() -> None:
    launcher = (ROOT / "infra" / "launch.py").read_text()
    started = set(re.findall(r'\bstart\("([a-z0-9-]+)"', launcher))
    assert started == {"s3", "mlflow", "git"}  # beside PostgreSQL and the Prefect server, started as objects
    assert {"postgres", "prefect-server", *started, "owner", "site"} <= set(SERVICES)


def test_the_compose_file_pins_what_the_project_pins() -> None:
    assert SERVICES["prefect-server"]["image"] == f"prefecthq/prefect:{version('prefect')}-python3.11"
    assert SERVICES["s3"]["image"] == f"motoserver/moto:{version('moto')}"
    assert SERVICES["postgres"]["image"] == "postgres:15"
    assert "--constraint constraints.txt" in (ROOT / "infra" / "Dockerfile").read_text()
    assert "postgresql+psycopg://" in " ".join(SERVICES["mlflow"]["command"])
    import psycopg  # noqa: F401  (the driver of that URL is installed with the project's infra extra)


@pytest.mark.parametrize("service", ["owner", "site"])
def test_the_parties_command_lines_are_ones_federity_accepts(service: str) -> None:
    argv = [re.sub(r"\$\{[A-Z_]+[^}]*\}", "x", arg) for arg in SERVICES[service]["command"]]
    assert argv[0] == "federity"
    _load_commands()
    command: click.Command = cli
    context = cli.make_context("federity", argv[1:])
    with warnings.catch_warnings():  # click 8.2 deprecates protected_args, which still holds the subcommand
        warnings.simplefilter("ignore", DeprecationWarning)
        while isinstance(command, click.Group):  # down to the subcommand: each level parses its own options
            name, found, rest = command.resolve_command(context, [*context.protected_args, *context.args])
            assert found is not None and name is not None
            command, context = found, found.make_context(name, rest, parent=context)
    assert context.args == []  # every option and argument was one the command takes
