"""The token-metadata interface encoding, checked against the constants of the SPL source."""

from __future__ import annotations

import pytest
from solders.pubkey import Pubkey

from federity.chain import token_metadata
from federity.chain.token_metadata import TokenMetadata

# TokenMetadata::SPL_DISCRIMINATOR in solana-program/token-metadata interface/src/state.rs
STATE_DISCRIMINATOR = bytes([112, 132, 90, 90, 11, 88, 157, 87])


def test_discriminators_are_the_interface_hashes():
    assert token_metadata.discriminator("token_metadata") == STATE_DISCRIMINATOR
    assert len({token_metadata.INITIALIZE, token_metadata.UPDATE_FIELD, token_metadata.UPDATE_AUTHORITY}) == 3


def test_metadata_round_trips_through_borsh_with_unicode_and_order_kept():
    meta = TokenMetadata(None, Pubkey.new_unique(), "modèle@abc1234", "FDRT", "", {"b": "2", "a": "ünï", "c": ""})
    decoded = TokenMetadata.unpack(meta.pack())
    assert decoded == meta and list(decoded.additional) == ["b", "a", "c"]


def test_an_update_authority_survives_the_round_trip():
    authority = Pubkey.new_unique()
    assert TokenMetadata.unpack(TokenMetadata(authority, Pubkey.new_unique(), "n", "s", "u").pack()).update_authority \
        == authority


def test_update_field_encodes_a_key_field_and_its_value():
    ix = token_metadata.update_field(Pubkey.new_unique(), Pubkey.new_unique(), Pubkey.new_unique(), "round", "7")
    assert ix.data == token_metadata.UPDATE_FIELD + b"\x03" + b"\x05\x00\x00\x00round" + b"\x01\x00\x00\x007"
    assert [(m.is_signer, m.is_writable) for m in ix.accounts] == [(False, True), (True, False)]


def test_truncated_metadata_is_refused():
    data = TokenMetadata(None, Pubkey.new_unique(), "name", "S", "u", {"k": "v"}).pack()
    with pytest.raises(ValueError, match="truncated"):
        TokenMetadata.unpack(data[:-1])
