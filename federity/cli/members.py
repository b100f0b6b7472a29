"""``federity members add|remove|list``."""

from __future__ import annotations

import click

from federity.cli import FederityGroup, console, emit, load_wallet, open_repo
from federity.repo import Repository
from federity.repo.nft import mint_new_commits


def _emit(repo: Repository, commit: str | None = None) -> None:
    members = repo.list_members()

    def human() -> None:
        if commit:
            console.print(f"members commit {commit[:12]}")
        for m in members:
            console.print(f"{m['role']:<12} {m['pubkey']}")

    emit({"members": members, **({"commit": commit} if commit else {})}, human)


@click.group(cls=FederityGroup)
def members() -> None:
    """Manage who may read, contribute to, maintain and own the repository."""


@members.command("add")
@click.argument("pubkey")
@click.option("--role", required=True, help="owner, maintainer, contributor or reader.")
def add(pubkey: str, role: str) -> None:
    """Grant a role to a wallet (a signed members commit)."""
    repo, wallet = open_repo(), load_wallet()
    record = repo.add_member(wallet, pubkey, role)
    mint_new_commits(repo, wallet)
    _emit(repo, record.commit)


@members.command("remove")
@click.argument("pubkey")
def remove(pubkey: str) -> None:
    """Revoke a wallet's role (a signed members commit)."""
    repo, wallet = open_repo(), load_wallet()
    record = repo.remove_member(wallet, pubkey)
    mint_new_commits(repo, wallet)
    _emit(repo, record.commit)


@members.command("list")
def list_members() -> None:
    """List members and their roles at the checked-out commit."""
    _emit(open_repo())
