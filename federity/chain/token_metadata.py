"""The SPL token-metadata interface: its state (Borsh) and the instructions Token-2022 implements.

Layouts follow ``solana-program/token-metadata`` (``interface/src/state.rs`` and ``interface/src/instruction.rs``):
every instruction starts with an 8-byte discriminator, ``sha256("spl_token_metadata_interface:<name>")[:8]``,
followed by its Borsh-encoded arguments. The state is::

    update_authority  32 bytes, all zeros for none (MaybeNull<Address>)
    mint              32 bytes
    name, symbol, uri Borsh strings (u32 little-endian length, then UTF-8)
    additional        Borsh Vec<(String, String)> (u32 count, then the pairs)

solana-py has no builders for this interface, hence this module.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

_NAMESPACE = "spl_token_metadata_interface"
_NO_PUBKEY = bytes(32)


def discriminator(name: str) -> bytes:
    """The 8-byte discriminator of the interface's instruction or state called ``name``."""
    return hashlib.sha256(f"{_NAMESPACE}:{name}".encode()).digest()[:8]


INITIALIZE = discriminator("initialize_account")
UPDATE_FIELD = discriminator("updating_field")
UPDATE_AUTHORITY = discriminator("update_the_authority")

# Borsh variant tags of ``Field``: Name, Symbol, Uri carry no payload; Key(String) names an additional field.
_FIELD_KEY = 3


def borsh_string(text: str) -> bytes:
    """``text`` as a Borsh string: u32 little-endian byte length, then its UTF-8 bytes."""
    data = text.encode()
    return struct.pack("<I", len(data)) + data


def _optional_pubkey(key: Pubkey | None) -> bytes:
    return bytes(key) if key is not None else _NO_PUBKEY


@dataclass(frozen=True)
class TokenMetadata:
    """A token's metadata as the token-metadata interface stores it."""

    update_authority: Pubkey | None
    mint: Pubkey
    name: str
    symbol: str
    uri: str
    additional: dict[str, str] = field(default_factory=dict)

    def pack(self) -> bytes:
        """The Borsh encoding stored in the mint's token-metadata extension."""
        out = [_optional_pubkey(self.update_authority), bytes(self.mint)]
        out += [borsh_string(self.name), borsh_string(self.symbol), borsh_string(self.uri)]
        out.append(struct.pack("<I", len(self.additional)))
        for key, value in self.additional.items():
            out += [borsh_string(key), borsh_string(value)]
        return b"".join(out)

    @classmethod
    def unpack(cls, data: bytes) -> TokenMetadata:
        """Decode the Borsh encoding; malformed data raises ``ValueError``."""
        reader = _Reader(data)
        authority = reader.take(32)
        mint = Pubkey.from_bytes(reader.take(32))
        name, symbol, uri = reader.string(), reader.string(), reader.string()
        additional = {}
        for _ in range(reader.u32()):
            key = reader.string()
            additional[key] = reader.string()
        return cls(
            update_authority=None if authority == _NO_PUBKEY else Pubkey.from_bytes(authority),
            mint=mint,
            name=name,
            symbol=symbol,
            uri=uri,
            additional=additional,
        )


class _Reader:
    """A cursor over Borsh bytes that raises ``ValueError`` when the data runs out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, n: int) -> bytes:
        if self.offset + n > len(self.data):
            raise ValueError("token metadata is truncated")
        chunk = self.data[self.offset : self.offset + n]
        self.offset += n
        return chunk

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        return self.take(self.u32()).decode()


def initialize(
    program_id: Pubkey, metadata: Pubkey, update_authority: Pubkey, mint: Pubkey, mint_authority: Pubkey,
    name: str, symbol: str, uri: str,
) -> Instruction:
    """Initialize metadata (name, symbol, uri) at ``metadata``; the mint authority signs."""
    return Instruction(
        program_id,
        INITIALIZE + borsh_string(name) + borsh_string(symbol) + borsh_string(uri),
        [
            AccountMeta(metadata, is_signer=False, is_writable=True),
            AccountMeta(update_authority, is_signer=False, is_writable=False),
            AccountMeta(mint, is_signer=False, is_writable=False),
            AccountMeta(mint_authority, is_signer=True, is_writable=False),
        ],
    )


def update_field(program_id: Pubkey, metadata: Pubkey, update_authority: Pubkey, key: str, value: str) -> Instruction:
    """Set the additional field ``key`` to ``value`` (``Field::Key``); the update authority signs."""
    return Instruction(
        program_id,
        UPDATE_FIELD + bytes([_FIELD_KEY]) + borsh_string(key) + borsh_string(value),
        [
            AccountMeta(metadata, is_signer=False, is_writable=True),
            AccountMeta(update_authority, is_signer=True, is_writable=False),
        ],
    )


def update_authority(
    program_id: Pubkey, metadata: Pubkey, current_authority: Pubkey, new_authority: Pubkey | None
) -> Instruction:
    """Hand the metadata's update authority to ``new_authority``; ``None`` makes the metadata immutable."""
    return Instruction(
        program_id,
        UPDATE_AUTHORITY + _optional_pubkey(new_authority),
        [
            AccountMeta(metadata, is_signer=False, is_writable=True),
            AccountMeta(current_authority, is_signer=True, is_writable=False),
        ],
    )
