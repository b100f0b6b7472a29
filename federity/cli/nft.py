"""``federity nft show|transfer|sync``: the commits' NFTs on the repository's ledger."""

from __future__ import annotations

import json

import click

from federity.cli import FederityGroup, console, emit, load_wallet, open_repo


@click.group(cls=FederityGroup)
def nft() -> None:
    """Commit NFTs on Solana: who holds a commit, and the repository (its genesis NFT)."""


@nft.command("show")
@click.argument("rev", default="HEAD")
def show(rev: str) -> None:
    """A commit's NFT as the ledger holds it: mint, owner, metadata, lamports spent."""
    data = open_repo().nft_show(rev)

    def human() -> None:
        console.print(f"commit  {data['commit']}\nmint    {data['mint']} ({data['ledger']} ledger)\n"
                      f"owner   {data['owner']}\nspent   {data['lamports_spent']} lamports\n"
                      f"metadata {json.dumps(data['metadata'], indent=2)}", markup=False)

    emit(data, human)


@nft.command("transfer")
@click.argument("rev")
@click.option("--to", "to", required=True, help="The receiving wallet's public key.")
def transfer(rev: str, to: str) -> None:
    """Transfer a commit's NFT you hold; the genesis NFT transfers the repository's ownership."""
    data = open_repo().nft_transfer(load_wallet(), rev, to)
    extra = (f"; members commit {data['members_commit'][:12]} makes {to} the sole owner and removes you"
             if data["members_commit"] else "")
    if data.get("pushed") is False:
        extra += "; not pushed to origin: run `federity push`"
    emit(data, f"transferred the NFT of {data['commit'][:12]} ({data['mint']}) to {to}{extra}")


@nft.command("sync")
def sync() -> None:
    """Mint every queued NFT (main-line commits and aggregated updates without one)."""
    report = open_repo().nft_sync(load_wallet())
    data = report.to_json()
    text = f"minted {len(report.minted)} NFT(s); {len(report.queued)} still queued"
    emit(data, text + (f": {report.error}" if report.error else ""))
    if report.error:  # the queue is kept: nothing is lost, and the next sync or round retries
        click.echo(f"error: {report.error}", err=True)
        raise SystemExit(1)
