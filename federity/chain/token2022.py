"""Token-2022 pieces solana-py lacks: the metadata-pointer instruction, extension sizes, and the mint parser.

A Token-2022 mint with extensions is laid out as the 82-byte base mint, zero padding up to 165 bytes (the size of a
token account, so the two kinds can't be confused), one account-type byte (1 = mint), then type-length-value
entries: u16 extension type, u16 length, value. Federity's NFTs carry two extensions: the metadata pointer (type 18,
pointing at the mint itself) and the token metadata (type 19, :class:`~federity.chain.token_metadata.TokenMetadata`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.token.state import Mint, TokenAccount
from spl.token.constants import TOKEN_2022_PROGRAM_ID

from federity.chain.token_metadata import TokenMetadata

MINT_BASE_LEN = 82
ACCOUNT_LEN = 165  # a token account's size; extended mints are padded to it before the account-type byte
ACCOUNT_TYPE_MINT = 1
TLV_HEADER_LEN = 4
METADATA_POINTER = 18
TOKEN_METADATA = 19
METADATA_POINTER_LEN = 64

_METADATA_POINTER_EXTENSION = 39  # TokenInstruction::MetadataPointerExtension
_METADATA_POINTER_INITIALIZE = 0
_NO_PUBKEY = bytes(32)


def initialize_metadata_pointer(mint: Pubkey, authority: Pubkey | None, metadata_address: Pubkey) -> Instruction:
    """Point ``mint``'s metadata at ``metadata_address``; must precede InitializeMint. No authority: immutable."""
    data = bytes([_METADATA_POINTER_EXTENSION, _METADATA_POINTER_INITIALIZE])
    data += (bytes(authority) if authority else _NO_PUBKEY) + bytes(metadata_address)
    return Instruction(TOKEN_2022_PROGRAM_ID, data, [AccountMeta(mint, is_signer=False, is_writable=True)])


def mint_len_with_pointer() -> int:
    """Bytes of a mint carrying only the metadata-pointer extension: what the account is created with."""
    return ACCOUNT_LEN + 1 + TLV_HEADER_LEN + METADATA_POINTER_LEN


def mint_len_with_metadata(metadata: TokenMetadata) -> int:
    """Bytes of the mint once ``metadata`` is written into it: what its lamports must be rent-exempt for."""
    return mint_len_with_pointer() + TLV_HEADER_LEN + len(metadata.pack())


@dataclass(frozen=True)
class MintState:
    """A mint account as read from a ledger."""

    address: Pubkey
    program: Pubkey
    lamports: int
    supply: int
    decimals: int
    mint_authority: Pubkey | None
    freeze_authority: Pubkey | None
    metadata_pointer: Pubkey | None
    metadata: TokenMetadata | None


def _extensions(data: bytes) -> dict[int, bytes]:
    """The TLV entries after the account-type byte, by extension type."""
    if len(data) <= ACCOUNT_LEN or data[ACCOUNT_LEN] != ACCOUNT_TYPE_MINT:
        return {}
    entries: dict[int, bytes] = {}
    offset = ACCOUNT_LEN + 1
    while offset + TLV_HEADER_LEN <= len(data):
        kind, length = struct.unpack_from("<HH", data, offset)
        if kind == 0:  # uninitialized space: no more entries
            break
        offset += TLV_HEADER_LEN
        entries[kind] = bytes(data[offset : offset + length])
        offset += length
    return entries


def parse_mint(address: Pubkey, account: Account) -> MintState:
    """Decode a mint account (SPL Token or Token-2022); ``ValueError`` if it is not an initialized mint."""
    data = bytes(account.data)
    if len(data) < MINT_BASE_LEN:
        raise ValueError(f"{address} holds {len(data)} bytes, too few for a mint")
    base = Mint.from_bytes(data[:MINT_BASE_LEN])
    if not base.is_initialized:
        raise ValueError(f"{address} is not an initialized mint")
    extensions = _extensions(data)
    pointer = extensions.get(METADATA_POINTER)
    metadata = extensions.get(TOKEN_METADATA)
    return MintState(
        address=address,
        program=account.owner,
        lamports=account.lamports,
        supply=base.supply,
        decimals=base.decimals,
        mint_authority=base.mint_authority,
        freeze_authority=base.freeze_authority,
        metadata_pointer=Pubkey.from_bytes(pointer[32:64]) if pointer and pointer[32:64] != _NO_PUBKEY else None,
        metadata=TokenMetadata.unpack(metadata) if metadata else None,
    )


def parse_token_account(account: Account) -> TokenAccount:
    """Decode a token account's base fields (mint, owner, amount); its extensions are ignored."""
    return TokenAccount.from_bytes(bytes(account.data)[:ACCOUNT_LEN])
