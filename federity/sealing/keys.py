"""Keys sealed to wallets: a Solana wallet's ed25519 key used as an X25519 key, and one secret key sealed to many
wallets at once.

A wallet's ed25519 key pair converts to an X25519 key pair (libsodium's ``crypto_sign_ed25519_*_to_curve25519``,
through PyNaCl): a member's public key in ``federity.yaml`` is all anyone needs to seal a key to it, and its
wallet file is all it needs to open one. Nothing new for a user to keep.

:func:`seal` seals one 32-byte key to several wallets with one ephemeral X25519 key: for each recipient, a
key-encryption key is derived from the Diffie-Hellman secret of the ephemeral key and the recipient's (BLAKE2b,
keyed by the secret, over both public keys and the ``context``), and wraps the key with ChaCha20-Poly1305 (a
fresh key-encryption key each time, so the nonce is zero; ``context`` is the associated data). Each recipient
costs 56 bytes: an 8-byte fingerprint of its public key and the 48-byte wrapped key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl import bindings
from nacl.exceptions import CryptoError
from solders.pubkey import Pubkey

from federity.errors import SealingError
from federity.identity import Wallet

KEY_BYTES = 32
TAG_BYTES = 16
WRAPPED_BYTES = KEY_BYTES + TAG_BYTES
FINGERPRINT_BYTES = 8
ENTRY_BYTES = FINGERPRINT_BYTES + WRAPPED_BYTES
ZERO_NONCE = bytes(12)


def x25519_public(pubkey: str) -> bytes:
    """The X25519 public key of the wallet whose base58 ed25519 public key is ``pubkey``. A string that is no
    ed25519 public key (or a point of small order) raises :class:`SealingError`."""
    try:
        return bindings.crypto_sign_ed25519_pk_to_curve25519(bytes(Pubkey.from_string(pubkey)))
    except (ValueError, CryptoError):
        raise SealingError(f"{pubkey[:60]!r} is not a wallet's public key that keys can be sealed to",
                           "members must be Solana wallets (base58 ed25519 public keys)") from None


def x25519_secret(wallet: Wallet) -> bytes:
    """The X25519 secret key of ``wallet`` (from its ed25519 secret key)."""
    return bindings.crypto_sign_ed25519_sk_to_curve25519(bytes(wallet.keypair))


def fingerprint(pubkey: str) -> bytes:
    """The 8 bytes that name ``pubkey`` among a sealed key's recipients."""
    return hashlib.blake2b(bytes(Pubkey.from_string(pubkey)), digest_size=FINGERPRINT_BYTES,
                           person=b"federity-member").digest()


def key_commitment(key: bytes, purpose: bytes) -> bytes:
    """32 bytes that bind ``key`` without revealing it: whoever opens the key checks it against this."""
    return hashlib.blake2b(key, digest_size=32, person=b"federity-commit", salt=purpose[:16].ljust(16, b"\0")).digest()


def new_key() -> bytes:
    """A fresh random 32-byte key."""
    return os.urandom(KEY_BYTES)


@dataclass(frozen=True)
class SealedKey:
    """One key sealed to several wallets: the ephemeral X25519 public key, and each recipient's fingerprint with
    its wrapped key (``entries``: ``ENTRY_BYTES`` per recipient, in the order sealed)."""

    ephemeral: bytes
    entries: bytes

    def fingerprints(self) -> list[bytes]:
        """The recipients' fingerprints, in order."""
        return [self.entries[i:i + FINGERPRINT_BYTES] for i in range(0, len(self.entries), ENTRY_BYTES)]

    def sealed_to(self, pubkey: str) -> bool:
        """Whether one of the entries names ``pubkey``."""
        return fingerprint(pubkey) in self.fingerprints()

    @classmethod
    def parsed(cls, ephemeral: bytes, entries: bytes) -> SealedKey:
        """A sealed key read from another party's file: sizes checked (:class:`SealingError` otherwise)."""
        if len(ephemeral) != KEY_BYTES or len(entries) % ENTRY_BYTES:
            raise SealingError("a sealed key is damaged: its ephemeral key or entries have the wrong size",
                               "ask the repository's owner to seal the key again")
        return cls(ephemeral, entries)


def _key_encryption_key(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> bytes:
    return hashlib.blake2b(ephemeral + recipient + context, key=shared, digest_size=KEY_BYTES,
                           person=b"federity-seal").digest()


def seal(key: bytes, recipients: Iterable[str], context: bytes) -> SealedKey:
    """``key`` sealed to each wallet in ``recipients`` (base58 public keys), bound to ``context``."""
    ephemeral_secret = os.urandom(KEY_BYTES)
    ephemeral = bindings.crypto_scalarmult_base(ephemeral_secret)
    entries = bytearray()
    for pubkey in dict.fromkeys(recipients):
        recipient = x25519_public(pubkey)
        shared = bindings.crypto_scalarmult(ephemeral_secret, recipient)
        wrapping = ChaCha20Poly1305(_key_encryption_key(shared, ephemeral, recipient, context))
        entries += fingerprint(pubkey) + wrapping.encrypt(ZERO_NONCE, key, context)
    return SealedKey(ephemeral, bytes(entries))


def unseal(sealed: SealedKey, wallet: Wallet, context: bytes) -> bytes | None:
    """The key ``sealed`` holds for ``wallet``, or ``None`` when it is not sealed to it. An entry that names the
    wallet but does not open (damaged, or sealed for another context) raises :class:`SealingError`."""
    mine = fingerprint(wallet.pubkey)
    for index, name in enumerate(sealed.fingerprints()):
        if name != mine:
            continue
        wrapped = sealed.entries[index * ENTRY_BYTES + FINGERPRINT_BYTES:(index + 1) * ENTRY_BYTES]
        secret = x25519_secret(wallet)
        try:
            shared = bindings.crypto_scalarmult(secret, sealed.ephemeral)
            recipient = bindings.crypto_scalarmult_base(secret)
            return ChaCha20Poly1305(_key_encryption_key(shared, sealed.ephemeral, recipient, context)).decrypt(
                ZERO_NONCE, wrapped, context)
        except (InvalidTag, CryptoError):
            raise SealingError(f"the key sealed to {wallet.pubkey} does not open: it is damaged, or was sealed "
                               "by someone else than the repository's members", "run `federity verify`, and ask "
                               "the repository's owner to seal the key again") from None
    return None


def wrap(key: bytes, under: bytes, salt: bytes, context: bytes) -> bytes:
    """``key`` wrapped under the secret ``under`` (a group key) with a fresh ``salt`` (16 bytes): 48 bytes."""
    return ChaCha20Poly1305(_salted(under, salt)).encrypt(ZERO_NONCE, key, context)


def unwrap(wrapped: bytes, under: bytes, salt: bytes, context: bytes) -> bytes | None:
    """The key :func:`wrap` wrapped, or ``None`` when it does not open under ``under`` with ``context``."""
    try:
        return ChaCha20Poly1305(_salted(under, salt)).decrypt(ZERO_NONCE, wrapped, context)
    except InvalidTag:
        return None


def _salted(key: bytes, salt: bytes) -> bytes:
    return hashlib.blake2b(salt, key=key, digest_size=KEY_BYTES, person=b"federity-wrap").digest()
