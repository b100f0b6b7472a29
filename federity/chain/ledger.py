"""Ledgers: where Federity's NFTs live, behind one small interface.

Two plugins are registered by ``name`` in a :class:`~federity.plugins.Registry` (entry-point group
``federity.ledgers``): ``embedded`` (LiteSVM in-process, its state in a ledger directory shared by
the machine's repositories) and ``rpc`` (any Solana cluster by URL, through solana-py). Both take the same signed
transaction bytes. :func:`open_ledger` reads the ``ledger`` setting of ``federity.yaml``: ``embedded``, a cluster
alias (``devnet``, ``mainnet``, ``localnet``) or an ``http(s)://`` RPC URL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

from federity.errors import UnknownPluginError
from federity.plugins import Registry

CLUSTERS: dict[str, str] = {
    "devnet": "https://api.devnet.solana.com",
    "mainnet": "https://api.mainnet-beta.solana.com",
    "localnet": "http://127.0.0.1:8899",
}


class Ledger(ABC):
    """A Solana ledger Federity can read accounts from and send transactions to."""

    name: str
    version: int

    @contextmanager
    def session(self) -> Iterator[Ledger]:
        """A span of calls that see one consistent ledger (the embedded ledger holds its lock across it)."""
        yield self

    @abstractmethod
    def latest_blockhash(self) -> Hash:
        """A recent blockhash to sign transactions with."""

    @abstractmethod
    def rent_exempt_minimum(self, size: int) -> int:
        """Lamports an account of ``size`` bytes must hold to be rent-exempt, as the ledger computes it."""

    @abstractmethod
    def get_account(self, address: Pubkey) -> Account | None:
        """The account at ``address``, or ``None`` if it does not exist."""

    @abstractmethod
    def get_balance(self, address: Pubkey) -> int:
        """Lamports held by ``address`` (0 if it does not exist)."""

    @abstractmethod
    def token_accounts(self, mint: Pubkey) -> list[tuple[Pubkey, Account]]:
        """Token accounts of ``mint`` holding a non-zero amount."""

    @abstractmethod
    def send(self, transaction: Transaction) -> Signature:
        """Send a signed transaction and wait until it is confirmed; raise ``TransactionError`` if it fails."""

    @abstractmethod
    def fund(self, address: Pubkey, lamports: int) -> None:
        """Make sure ``address`` holds at least ``lamports`` (airdropped on the embedded ledger only)."""


LEDGERS: Registry[Ledger] = Registry("ledger", "federity.ledgers", {
    "embedded": "federity.chain.embedded:EmbeddedLedger",
    "rpc": "federity.chain.rpc:RpcLedger",
})


def installed_ledgers() -> list[str]:
    """Names of the available ledger plugins."""
    return LEDGERS.names()


def open_ledger(spec: str = "embedded", path: Path | None = None) -> Ledger:
    """The ledger named by ``spec``: ``embedded`` (in ``path``, else the default directory), a cluster alias, or
    an RPC URL."""
    if not isinstance(spec, str):
        raise UnknownPluginError(f"the ledger setting {spec!r} is not a name or URL",
                                 f"use one of: {', '.join(installed_ledgers())}, a cluster alias or an RPC URL")
    url = CLUSTERS.get(spec, spec)
    if url.startswith(("http://", "https://")):
        name, args = "rpc", (url,)
    elif spec == "embedded":
        name, args = spec, (path,)
    else:
        raise UnknownPluginError(
            f"unknown ledger {spec!r}",
            f"use one of: {', '.join(installed_ledgers())} (rpc as a cluster alias: {', '.join(CLUSTERS)}, "
            "or an http(s):// RPC URL)",
        )
    return LEDGERS.create(name, *args)
