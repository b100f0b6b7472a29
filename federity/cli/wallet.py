"""``federity wallet new|show``."""

from __future__ import annotations

from pathlib import Path

import click

from federity.cli import FederityGroup, emit, load_wallet, state
from federity.identity import Wallet


def _emit(wallet: Wallet, verb: str) -> None:
    emit({"pubkey": wallet.pubkey, "path": str(wallet.path)}, f"{verb} {wallet.pubkey}  ({wallet.path})")


@click.group(cls=FederityGroup)
def wallet() -> None:
    """Create or show the Solana wallet that signs your commits."""


@wallet.command("new")
@click.option("--path", type=click.Path(path_type=Path), help="Where to write the keypair (default: the wallet path).")
@click.option("--force", is_flag=True, help="Replace an existing keypair (its key is lost).")
def new(path: Path | None, force: bool) -> None:
    """Create a new keypair in the Solana CLI format."""
    _emit(Wallet.create(path or state().wallet, force=force), "created wallet")


@wallet.command("show")
def show() -> None:
    """Show the wallet's public key."""
    _emit(load_wallet(), "wallet")
