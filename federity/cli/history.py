"""``federity log|show|diff``: reading the history."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from federity.cli import FederityCommand, console, emit, open_repo
from federity.repo.log import NO_PROOF


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


@click.command(cls=FederityCommand)
@click.argument("rev", required=False)
@click.option("--graph", is_flag=True, help="Draw the commit graph, as `git log --graph`.")
@click.option("--all", "all_refs", is_flag=True, help="Every branch, tag and remote-tracking branch.")
def log(rev: str | None, graph: bool, all_refs: bool) -> None:
    """List commits with their kind, author, round and weights hash."""
    repo = open_repo()
    records = repo.log(rev, all=all_refs)

    def human() -> None:
        if graph:
            click.echo(repo.graph(rev, all=all_refs, color=sys.stdout.isatty()))
            return
        for r in records:
            kind, rnd, author = (r.meta.kind, r.meta.round, r.meta.author) if r.meta else ("UNSIGNED", "-", "?")
            first_line = r.message.splitlines()[0] if r.message else ""
            console.print(f"[yellow]{r.commit[:12]}[/] {kind:<9} round {rnd!s:<3} {author[:12]:<12} {first_line}")

    emit({"commits": [r.to_json() for r in records]}, human)


@click.command(cls=FederityCommand)
@click.argument("rev", default="HEAD")
def show(rev: str) -> None:
    """One commit's metadata, tensors and proof."""
    data = open_repo().show(rev)

    def human() -> None:
        proof = data["proof"]
        proof_text = (f"sha256:{proof['sha256']}\n  covers: {proof['covers']}\n"
                      f"  does not cover: {proof['does_not_cover']}\n  srs: {proof['srs']}") if proof else NO_PROOF
        console.print(f"commit  {data['commit']}\nkind    {data['kind']}\nauthor  {data['author']}\n"
                      f"round   {data['round']}\nparents {' '.join(data['parents']) or '-'}\n"
                      f"weights sha256:{data['weights_sha256']}\nproof   {proof_text}\n\n"
                      f"    {data['message']}\n", markup=False)
        table = Table("tensor", "shape", "dtype", "sha256")
        for t in data["tensors"]:
            table.add_row(t["name"], str(tuple(t["shape"])), t["dtype"], t["sha256"][:16])
        console.print(table)

    emit(data, human)


@click.command(cls=FederityCommand)
@click.argument("a")
@click.argument("b")
def diff(a: str, b: str) -> None:
    """Per-tensor difference between two revisions: status, L2 norm of the change, cosine similarity."""
    rows = open_repo().diff(a, b)

    def human() -> None:
        table = Table("tensor", "status", "l2", "cosine", title=f"{a} → {b}")
        for row in rows:
            table.add_row(row["name"], row["status"], _num(row["l2"]), _num(row["cosine"]))
        console.print(table)

    emit({"tensors": rows}, human)
