"""The embedded ledger: the real Solana runtime (LiteSVM, from ``solders.litesvm``) in-process.

LiteSVM keeps its state in memory and has no snapshot API, so Federity persists what its transactions change: after
each transaction, every account the transaction could write (and every airdropped payer) is read back and stored.
One ledger directory is shared by every repository and clone on the machine (``$FEDERITY_LEDGER``, else
``$XDG_DATA_HOME/federity/ledger``, else ``~/.local/share/federity/ledger``)::

    ledger.json   {"format": 1, "sessions": N, "accounts": {address: {lamports, owner, executable, rent_epoch, data}}}
    ledger.lock   an exclusive ``flock`` held from load to save, so concurrent processes take turns

A session loads the accounts into a fresh LiteSVM, advances its clock and blockhash past every earlier session (so a
transaction signed in one session can't be replayed in the next), runs, and writes the file atomically (temporary
file, fsync, rename). Payers are funded by airdrop: lamports on the embedded ledger are not real SOL, and an NFT on it
proves nothing to anyone who does not trust this machine.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from solders.account import Account
from solders.clock import Clock
from solders.hash import Hash
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata
from spl.token.constants import TOKEN_2022_PROGRAM_ID

from federity.chain.ledger import Ledger
from federity.chain.token2022 import ACCOUNT_LEN, parse_token_account
from federity.chain.transactions import check_size
from federity.errors import LedgerError, TransactionError

LEDGER_ENV = "FEDERITY_LEDGER"
STATE_FILE = "ledger.json"
LOCK_FILE = "ledger.lock"
FORMAT = 1
_ACCOUNT_TYPE_TOKEN_ACCOUNT = 2


def default_ledger_dir() -> Path:
    """The machine's shared ledger directory: ``$FEDERITY_LEDGER``, else under the user's data directory."""
    if os.environ.get(LEDGER_ENV):
        return Path(os.environ[LEDGER_ENV]).expanduser()
    data_home = Path(os.environ.get("XDG_DATA_HOME") or "~/.local/share").expanduser()
    return data_home / "federity" / "ledger"


def _writable_keys(transaction: Transaction) -> list[Pubkey]:
    """The accounts a transaction may write, from its message header."""
    message = transaction.message
    header = message.header
    keys = message.account_keys
    signed = header.num_required_signatures
    writable = list(keys[: signed - header.num_readonly_signed_accounts])
    writable += keys[signed : len(keys) - header.num_readonly_unsigned_accounts]
    return writable


def _encode(account: Account) -> dict[str, object]:
    return {
        "lamports": account.lamports,
        "owner": str(account.owner),
        "executable": account.executable,
        "rent_epoch": account.rent_epoch,
        "data": base64.b64encode(bytes(account.data)).decode(),
    }


def _decode(entry: dict) -> Account:
    return Account(
        entry["lamports"], base64.b64decode(entry["data"]), Pubkey.from_string(entry["owner"]),
        entry["executable"], entry["rent_epoch"],
    )


class EmbeddedLedger(Ledger):
    """LiteSVM in-process, persisted in a ledger directory (see the module docstring).

    Processes (and separate instances) are serialised by the directory's lock; one instance is not meant to be
    shared between threads: give each thread its own.
    """

    name = "embedded"
    version = 1

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_ledger_dir()
        self._svm: LiteSVM | None = None
        self._depth = 0
        self._sessions = 0
        self._accounts: dict[str, dict[str, object]] = {}
        self._touched: set[Pubkey] = set()

    @contextmanager
    def session(self) -> Iterator[EmbeddedLedger]:
        """Hold the ledger directory's lock, load its state, and save what changed on the way out (re-entrant)."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = open(self.path / LOCK_FILE, "a+b")  # noqa: SIM115 - held across the generator's yield
        except OSError as e:
            raise LedgerError(
                f"cannot open the embedded ledger at {self.path}: {e.strerror}",
                f"make the directory writable, or point {LEDGER_ENV} at another directory",
            ) from e
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._load()
            self._depth = 1
            try:
                yield self
            finally:
                self._depth = 0
                try:
                    if self._touched:
                        self._save()
                finally:
                    self._svm = None
                    self._touched = set()

    def _load(self) -> None:
        state_file = self.path / STATE_FILE
        state: dict = {"format": FORMAT, "sessions": 0, "accounts": {}}
        if state_file.exists():
            try:
                state = json.loads(state_file.read_text())
                accounts = {key: _decode(entry) for key, entry in state["accounts"].items()}
            except (ValueError, KeyError, TypeError) as e:
                raise LedgerError(
                    f"the embedded ledger state {state_file} is unreadable ({e})",
                    "restore it from a backup, or move it away to start an empty ledger (its SOL and NFTs are local)",
                ) from e
        else:
            accounts = {}
        svm = LiteSVM()
        self._sessions = state["sessions"] + 1
        clock = svm.get_clock()
        svm.set_clock(Clock(clock.slot + self._sessions, clock.epoch_start_timestamp, clock.epoch,
                            clock.leader_schedule_epoch, int(time.time())))
        for _ in range(self._sessions):
            svm.expire_blockhash()
        for key, account in accounts.items():
            svm.set_account(Pubkey.from_string(key), account)
        self._accounts = state["accounts"]
        self._svm = svm

    def _save(self) -> None:
        assert self._svm is not None
        for key in self._touched:
            account = self._svm.get_account(key)
            if account is None or account.lamports == 0:
                self._accounts.pop(str(key), None)
            else:
                self._accounts[str(key)] = _encode(account)
        state = {"format": FORMAT, "sessions": self._sessions, "accounts": self._accounts}
        tmp = self.path / f"{STATE_FILE}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / STATE_FILE)

    @property
    def svm(self) -> LiteSVM:
        """The loaded LiteSVM; only valid inside :meth:`session`."""
        if self._svm is None:
            raise RuntimeError("the embedded ledger is used outside a session")
        return self._svm

    def latest_blockhash(self) -> Hash:
        """The current blockhash of this session."""
        with self.session():
            return self.svm.latest_blockhash()

    def rent_exempt_minimum(self, size: int) -> int:
        """Lamports for ``size`` bytes to be rent-exempt, from LiteSVM's rent sysvar."""
        with self.session():
            return self.svm.minimum_balance_for_rent_exemption(size)

    def get_account(self, address: Pubkey) -> Account | None:
        """The account at ``address``, or ``None``."""
        with self.session():
            return self.svm.get_account(address)

    def get_balance(self, address: Pubkey) -> int:
        """Lamports at ``address``."""
        with self.session():
            return self.svm.get_balance(address) or 0

    def token_accounts(self, mint: Pubkey) -> list[tuple[Pubkey, Account]]:
        """Token-2022 accounts of ``mint`` with a non-zero amount (scans the program's accounts)."""
        with self.session():
            found = []
            for address, account in self.svm.get_program_accounts(TOKEN_2022_PROGRAM_ID):
                data = bytes(account.data)
                is_token_account = len(data) == ACCOUNT_LEN or (
                    len(data) > ACCOUNT_LEN and data[ACCOUNT_LEN] == _ACCOUNT_TYPE_TOKEN_ACCOUNT
                )
                if is_token_account and data[:32] == bytes(mint) and parse_token_account(account).amount > 0:
                    found.append((address, account))
            return found

    def send(self, transaction: Transaction) -> Signature:
        """Execute ``transaction`` in LiteSVM; a failure raises ``TransactionError`` with the program's logs."""
        check_size(transaction)
        with self.session():
            result = self.svm.send_transaction(transaction)
            if isinstance(result, FailedTransactionMetadata):
                logs = "\n    ".join(result.meta().logs()[-6:])
                raise TransactionError(
                    f"the embedded ledger rejected the transaction: {result.err()}\n    {logs}",
                    "read the program log above; nothing after the failed transaction was sent",
                )
            self._touched.update(_writable_keys(transaction))
            return result.signature()

    def fund(self, address: Pubkey, lamports: int) -> None:
        """Airdrop local (not real) lamports so that ``address`` holds at least ``lamports``."""
        with self.session():
            missing = lamports - (self.svm.get_balance(address) or 0)
            if missing > 0:
                result = self.svm.airdrop(address, missing)
                if isinstance(result, FailedTransactionMetadata):
                    raise LedgerError(f"the embedded airdrop failed: {result.err()}", "report this as a bug")
                self._touched.add(address)
