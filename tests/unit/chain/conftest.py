"""Chain fixtures: an embedded ledger in a temporary directory, wallets, commit records, a local JSON-RPC server."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from solders.keypair import Keypair

from federity.chain.embedded import EmbeddedLedger
from federity.chain.nft import NftRecord
from federity.identity import Wallet

REPOSITORY_ID = "5f1c0ffee5f1c0ffee5f1c0ffee5f1c0"


@pytest.fixture
def ledger(tmp_path: Path) -> EmbeddedLedger:
    """An empty embedded ledger of its own."""
    return EmbeddedLedger(tmp_path / "ledger")


def wallet(name: str) -> Wallet:
    """A wallet derived from ``name``, so a subprocess can rebuild it (it is never written to disk)."""
    return Wallet(Keypair.from_seed(hashlib.sha256(name.encode()).digest()), Path(f"{name}.json"))


def commit_id(n: int) -> str:
    """A 40-hex commit id, distinct per ``n``."""
    return hashlib.sha1(str(n).encode()).hexdigest()


def record(author: Wallet, n: int = 0, **overrides: object) -> NftRecord:
    """Commit ``n``'s record with every field set; keyword arguments override."""
    fields: dict[str, object] = {
        "repository": REPOSITORY_ID,
        "name": "breast-cancer",
        "commit": commit_id(n),
        "kind": "aggregate",
        "author": author.pubkey,
        "weights_sha256": hashlib.sha256(f"weights {n}".encode()).hexdigest(),
        "proof_sha256": hashlib.sha256(f"proof {n}".encode()).hexdigest(),
        "round": n,
        "parents": (commit_id(n + 1000),),
        "uri": "file:///srv/git/breast-cancer.git",
    }
    fields.update(overrides)
    return NftRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def make_wallet() -> Callable[[str], Wallet]:
    """:func:`wallet`, as a fixture."""
    return wallet


@pytest.fixture
def make_record() -> Callable[..., NftRecord]:
    """:func:`record`, as a fixture."""
    return record
