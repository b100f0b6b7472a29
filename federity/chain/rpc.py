"""The cluster ledger: any Solana cluster by its JSON-RPC URL (devnet, mainnet, a local validator), via solana-py.

solana-py 0.41 only has an asynchronous client; a :meth:`RpcLedger.session` runs one event loop and one client for
its span, and each call outside a session opens its own. Transactions are the same signed bytes the embedded ledger
executes; they are sent with preflight simulation and awaited until ``confirmed``. Nothing is airdropped: the payer
must hold real (or devnet) SOL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

from federity.chain.ledger import Ledger
from federity.chain.transactions import check_size
from federity.errors import LedgerError, TransactionError

T = TypeVar("T")
TIMEOUT_SECONDS = 30.0


def _describe(error: RPCException) -> str:
    """An RPC error's message and, for a failed preflight simulation, the end of the program log."""
    detail = error.args[0] if error.args else error
    message = getattr(detail, "message", str(detail))
    logs = getattr(getattr(detail, "data", None), "logs", None) or []
    return message + "".join(f"\n    {line}" for line in logs[-6:])


class RpcLedger(Ledger):
    """A Solana cluster reached through its JSON-RPC endpoint."""

    name = "rpc"
    version = 1

    def __init__(self, url: str) -> None:
        self.url = url
        self._runner: asyncio.Runner | None = None
        self._client: AsyncClient | None = None

    @contextmanager
    def session(self) -> Iterator[RpcLedger]:
        """One event loop and one HTTP client for a span of calls (re-entrant)."""
        if self._runner is not None:
            yield self
            return
        with asyncio.Runner() as runner:
            self._runner = runner
            self._client = AsyncClient(self.url, commitment=Confirmed, timeout=TIMEOUT_SECONDS,
                                       max_transport_retries=1)
            try:
                yield self
            finally:
                runner.run(self._client.close())
                self._runner = self._client = None

    def _call(self, request: Callable[[AsyncClient], Awaitable[T]]) -> T:
        with self.session():
            assert self._runner is not None and self._client is not None
            client = self._client
            try:
                return self._runner.run(request(client))  # type: ignore[arg-type]
            except SolanaRpcException as e:
                cause = e.__cause__ or e
                raise LedgerError(
                    f"the Solana RPC at {self.url} is unreachable: {type(cause).__name__}: {cause}",
                    "check the URL and the network, or use the embedded ledger (`ledger: embedded` in "
                    "federity.yaml); commits stand, and `federity nft sync` mints what is queued",
                ) from e
            except RPCException as e:
                raise LedgerError(f"the Solana RPC at {self.url} returned an error: {e}",
                                  "check that the URL is a Solana JSON-RPC endpoint") from e

    def latest_blockhash(self) -> Hash:
        """The cluster's latest confirmed blockhash."""
        return self._call(lambda c: c.get_latest_blockhash()).value.blockhash

    def rent_exempt_minimum(self, size: int) -> int:
        """The cluster's rent-exempt minimum for ``size`` bytes."""
        return self._call(lambda c: c.get_minimum_balance_for_rent_exemption(size)).value

    def get_account(self, address: Pubkey) -> Account | None:
        """The account at ``address``, or ``None``."""
        return self._call(lambda c: c.get_account_info(address)).value

    def get_balance(self, address: Pubkey) -> int:
        """Lamports at ``address``."""
        return self._call(lambda c: c.get_balance(address)).value

    def token_accounts(self, mint: Pubkey) -> list[tuple[Pubkey, Account]]:
        """Token accounts of ``mint`` with a non-zero amount (``getTokenLargestAccounts``)."""
        balances = self._call(lambda c: c.get_token_largest_accounts(mint)).value
        addresses = [b.address for b in balances if int(b.amount.amount) > 0]
        if not addresses:
            return []
        accounts = self._call(lambda c: c.get_multiple_accounts(addresses)).value
        return [(address, account) for address, account in zip(addresses, accounts, strict=True) if account]

    def send(self, transaction: Transaction) -> Signature:
        """Send with preflight, wait for ``confirmed``; a rejected or failed transaction raises TransactionError."""
        check_size(transaction)

        async def send_and_confirm(client: AsyncClient) -> Signature:
            try:
                sent = await client.send_raw_transaction(
                    bytes(transaction), TxOpts(skip_confirmation=True, preflight_commitment=Confirmed)
                )
            except RPCException as e:
                raise TransactionError(f"{self.url} rejected the transaction: {_describe(e)}",
                                       "read the program log above; nothing after it was sent") from e
            statuses = await client.confirm_transaction(sent.value, Confirmed, sleep_seconds=0.2)
            status = statuses.value[0]
            if status is None or status.err is not None:
                raise TransactionError(
                    f"the transaction {sent.value} failed on {self.url}: {status.err if status else 'not found'}",
                    "inspect it with `solana confirm -v`; nothing after it was sent",
                )
            return sent.value

        return self._call(send_and_confirm)

    def fund(self, address: Pubkey, lamports: int) -> None:
        """Check that ``address`` holds at least ``lamports``; a cluster's SOL is never airdropped by Federity."""
        balance = self.get_balance(address)
        if balance < lamports:
            raise LedgerError(
                f"{address} holds {balance} lamports on {self.url}, and this needs about {lamports}",
                f"fund the wallet (on devnet: `solana airdrop 1 {address} --url devnet`), then retry "
                "or run `federity nft sync`",
            )
