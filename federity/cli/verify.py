"""``federity verify``: check the whole history; list rejected updates and unchecked items apart."""

from __future__ import annotations

import click

from federity.cli import FederityCommand, console, emit, open_repo


@click.command(cls=FederityCommand)
def verify() -> None:
    """Walk the whole history and report every failed check; exit 1 if any fails."""
    report = open_repo().verify()

    def human() -> None:
        for f in report.failures:
            console.print(f"[red]FAIL[/] {f['commit'][:12]} {f['check']}: {f['reason']}")
        for r in report.rejected:
            console.print(f"[yellow]REJECTED UPDATE[/] {r['update'][:12]} ({r['branch']}): {'; '.join(r['reasons'])}")
        for u in report.unchecked:
            console.print(f"[yellow]UNCHECKED[/] {u['check']}: {u['reason']}")
        verdict = "[green]ok[/]" if report.ok else f"[red]{len(report.failures)} failure(s)[/]"
        console.print(f"{report.commits_checked} commits checked: {verdict}")

    emit(report.to_json(), human)
    if not report.ok:
        raise click.exceptions.Exit(1)
