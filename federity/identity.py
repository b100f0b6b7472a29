"""Wallets: Solana keypair files (a JSON array of 64 integers: 32-byte ed25519 seed, then the public key).

The default wallet is the Solana CLI's ``~/.config/solana/id.json``; ``FEDERITY_WALLET`` or ``--wallet``
override it. Signatures are ed25519 and travel as base58 strings, like Solana's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from federity.errors import WalletError

DEFAULT_WALLET_PATH = Path("~/.config/solana/id.json")
WALLET_ENV = "FEDERITY_WALLET"


def default_wallet_path() -> Path:
    """The wallet used when none is given: ``$FEDERITY_WALLET``, else the Solana CLI default."""
    return Path(os.environ.get(WALLET_ENV) or DEFAULT_WALLET_PATH).expanduser()


@dataclass(frozen=True)
class Wallet:
    """A loaded keypair and the file it came from."""

    keypair: Keypair
    path: Path

    @property
    def pubkey(self) -> str:
        """The base58 public key: the wallet's identity in every Federity record."""
        return str(self.keypair.pubkey())

    def sign(self, message: bytes) -> str:
        """Sign ``message`` with ed25519 and return the base58 signature."""
        return str(self.keypair.sign_message(message))

    @classmethod
    def load(cls, path: Path | None = None) -> Wallet:
        """Read a Solana keypair file; any other content is refused with a clear error."""
        path = Path(path).expanduser() if path else default_wallet_path()
        if not path.is_file():
            raise WalletError(
                f"no wallet file at {path}",
                "create one with `federity wallet new`, or point --wallet / FEDERITY_WALLET at a Solana keypair",
            )
        try:
            values = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            values = None
        if not (
            isinstance(values, list)
            and len(values) == 64
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values)
        ):
            raise WalletError(
                f"{path} is not a Solana keypair file (expected a JSON array of 64 integers from 0 to 255)",
                "pass the keypair file written by `solana-keygen new` or `federity wallet new`",
            )
        try:
            keypair = Keypair.from_bytes(bytes(values))
        except ValueError:
            raise WalletError(
                f"{path} is not a valid keypair: its public half does not match its secret half",
                "the file is damaged; restore it from a backup or create a new wallet",
            ) from None
        return cls(keypair, path)

    @classmethod
    def create(cls, path: Path | None = None, force: bool = False) -> Wallet:
        """Write a new random keypair to ``path`` (mode 0600); an existing file is kept unless ``force``."""
        path = Path(path).expanduser() if path else default_wallet_path()
        if path.exists() and not force:
            raise WalletError(
                f"a wallet already exists at {path}",
                "use it as it is, choose another --path, or pass --force to replace it (its key is lost)",
            )
        keypair = Keypair()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(list(bytes(keypair)), f)
        os.replace(tmp, path)
        return cls(keypair, path)


def is_pubkey(text: str) -> bool:
    """Whether ``text`` is a base58 ed25519 public key."""
    try:
        Pubkey.from_string(text)
    except ValueError:
        return False
    return True


def verify_signature(pubkey: str, message: bytes, signature: str) -> bool:
    """Whether ``signature`` (base58) is ``pubkey``'s ed25519 signature of ``message``."""
    try:
        return Signature.from_string(signature).verify(Pubkey.from_string(pubkey), message)
    except ValueError:
        return False
