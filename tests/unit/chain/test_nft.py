"""Minting, reading and transferring commit NFTs on the embedded ledger."""

from __future__ import annotations

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountWithSeedParams, TransferParams, create_account_with_seed, transfer
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.instructions import (
    create_idempotent_associated_token_account,
    get_associated_token_address,
    transfer_checked,
)
from spl.token.models import TransferCheckedParams

from federity.chain.nft import SYMBOL, mint_address, mint_nft, mint_seed, nft_mismatches, read_nft, transfer_nft
from federity.chain.token2022 import parse_mint
from federity.chain.transactions import sign
from federity.errors import NftError, PermissionDeniedError, TransactionError


def test_a_minted_nft_reads_back_with_every_field_supply_one_and_no_authorities(ledger, make_wallet, make_record):
    owner = make_wallet("owner")
    record = make_record(owner, 3, parents=("a" * 40, "b" * 40))

    result = mint_nft(ledger, owner, record)
    info = read_nft(ledger, result.mint)

    assert result.created and result.lamports_spent > 0
    assert info.program == str(TOKEN_2022_PROGRAM_ID)
    assert (info.supply, info.decimals, info.mint_authority) == (1, 0, None)
    assert info.owner == owner.pubkey
    meta = info.metadata
    assert meta is not None and meta.update_authority is None and str(meta.mint) == result.mint
    assert (meta.name, meta.symbol, meta.uri) == (f"breast-cancer@{record.commit[:7]}", SYMBOL, record.uri)
    assert meta.additional == {
        "repository": record.repository,
        "commit": record.commit,
        "kind": "aggregate",
        "round": "3",
        "author": owner.pubkey,
        "weights_sha256": record.weights_sha256,
        "proof_sha256": record.proof_sha256,
        "parents": f"{'a' * 40},{'b' * 40}",
    }
    assert info.to_dict()["metadata"]["fields"]["commit"] == record.commit


def test_the_mint_is_funded_for_its_final_size_at_the_ledgers_rent(ledger, make_wallet, make_record):
    owner = make_wallet("owner")
    result = mint_nft(ledger, owner, make_record(owner))
    account = ledger.get_account(Pubkey.from_string(result.mint))

    assert parse_mint(Pubkey.from_string(result.mint), account).metadata is not None
    assert account.lamports == ledger.rent_exempt_minimum(len(bytes(account.data)))


def test_minting_the_same_commit_twice_returns_the_same_mint_and_spends_nothing(ledger, make_wallet, make_record):
    owner = make_wallet("owner")
    record = make_record(owner)
    first = mint_nft(ledger, owner, record)
    balance = ledger.get_balance(owner.keypair.pubkey())

    second = mint_nft(ledger, owner, record)

    assert second.mint == first.mint
    assert not second.created and second.signatures == [] and second.lamports_spent == 0
    assert ledger.get_balance(owner.keypair.pubkey()) == balance
    assert read_nft(ledger, first.mint).supply == 1


def test_different_commits_and_different_minters_get_different_mints(ledger, make_wallet, make_record):
    owner, other = make_wallet("owner"), make_wallet("other")
    mints = {mint_nft(ledger, owner, make_record(owner, 0)).mint, mint_nft(ledger, owner, make_record(owner, 1)).mint,
             mint_nft(ledger, other, make_record(owner, 0)).mint}
    assert len(mints) == 3


def test_an_existing_nft_with_other_metadata_is_reported_not_overwritten(ledger, make_wallet, make_record):
    owner = make_wallet("owner")
    record = make_record(owner)
    mint = mint_nft(ledger, owner, record).mint

    with pytest.raises(NftError, match="already exists with field weights_sha256"):
        mint_nft(ledger, owner, make_record(owner, weights_sha256="0" * 64))
    assert read_nft(ledger, mint).metadata.additional["weights_sha256"] == record.weights_sha256


def test_an_interrupted_mint_is_finished_by_the_retry(ledger, make_wallet, make_record, monkeypatch):
    owner = make_wallet("owner")
    record = make_record(owner, parents=tuple(str(i) * 40 for i in range(10)))  # needs several transactions
    real_send, sent = ledger.send, []

    def crash_after_first(transaction):
        if sent:
            raise ConnectionResetError("the process died")
        sent.append(real_send(transaction))
        return sent[-1]

    monkeypatch.setattr(ledger, "send", crash_after_first)
    with pytest.raises(ConnectionResetError):
        mint_nft(ledger, owner, record)
    monkeypatch.undo()
    partial = read_nft(ledger, str(mint_address(owner.pubkey, record.repository, record.commit)))
    assert partial.supply == 0 and partial.metadata.additional != record.fields()
    assert any("can still mint" in problem for problem in nft_mismatches(partial, record))

    result = mint_nft(ledger, owner, record)
    info = read_nft(ledger, result.mint)

    assert result.mint == partial.mint and result.created
    assert info.metadata.additional == record.fields()
    assert (info.supply, info.mint_authority, info.metadata.update_authority, info.owner) == (1, None, None,
                                                                                              owner.pubkey)


def test_an_update_nft_goes_to_the_contributor(ledger, make_wallet, make_record):
    owner, hospital = make_wallet("owner"), make_wallet("hospital")
    record = make_record(hospital, kind="update")

    mint = mint_nft(ledger, owner, record, recipient=hospital.pubkey).mint

    assert read_nft(ledger, mint).owner == hospital.pubkey


def test_a_transfer_moves_the_nft_and_the_holder_follows(ledger, make_wallet, make_record):
    owner, buyer = make_wallet("owner"), make_wallet("buyer")
    mint = mint_nft(ledger, owner, make_record(owner)).mint

    transfer_nft(ledger, owner, mint, buyer.pubkey)
    assert read_nft(ledger, mint).owner == buyer.pubkey

    with pytest.raises(PermissionDeniedError, match=f"does not hold the NFT {mint}; {buyer.pubkey} does"):
        transfer_nft(ledger, owner, mint, owner.pubkey)
    transfer_nft(ledger, buyer, mint, owner.pubkey)
    assert read_nft(ledger, mint).owner == owner.pubkey


def test_a_non_holder_cannot_transfer_and_nothing_changes(ledger, make_wallet, make_record):
    owner, thief = make_wallet("owner"), make_wallet("thief")
    mint = mint_nft(ledger, owner, make_record(owner)).mint
    before = read_nft(ledger, mint)

    with pytest.raises(PermissionDeniedError, match=f"{thief.pubkey} does not hold the NFT"):
        transfer_nft(ledger, thief, mint, thief.pubkey)

    assert read_nft(ledger, mint) == before
    assert ledger.get_account(get_associated_token_address(thief.keypair.pubkey(), before.metadata.mint,
                                                           TOKEN_2022_PROGRAM_ID)) is None


def test_the_runtime_itself_refuses_a_transfer_signed_by_a_non_holder(ledger, make_wallet, make_record):
    owner, thief = make_wallet("owner"), make_wallet("thief")
    mint = mint_nft(ledger, owner, make_record(owner)).mint
    info = read_nft(ledger, mint)
    ledger.fund(thief.keypair.pubkey(), 10**8)
    mint_address, thief_key = info.metadata.mint, thief.keypair.pubkey()
    dest = get_associated_token_address(thief_key, mint_address, TOKEN_2022_PROGRAM_ID)
    steal = [
        create_idempotent_associated_token_account(thief_key, thief_key, mint_address, TOKEN_2022_PROGRAM_ID),
        transfer_checked(TransferCheckedParams(
            program_id=TOKEN_2022_PROGRAM_ID, source=Pubkey.from_string(info.holder_account), mint=mint_address,
            dest=dest, owner=thief_key, amount=1, decimals=0,
        )),
    ]

    with pytest.raises(TransactionError, match=r"(?s)rejected the transaction: .*owner does not match"):
        ledger.send(sign(steal, thief.keypair, [], ledger.latest_blockhash()))
    assert read_nft(ledger, mint).owner == owner.pubkey
    assert ledger.get_account(dest) is None


def test_reading_a_mint_that_does_not_exist_says_so(ledger):
    missing = str(Keypair().pubkey())
    with pytest.raises(NftError, match=f"no NFT at {missing} on the embedded ledger"):
        read_nft(ledger, missing)


def test_a_matching_nft_has_no_mismatches_and_a_different_commit_lists_each_one(ledger, make_wallet, make_record):
    owner = make_wallet("owner")
    record = make_record(owner)
    info = read_nft(ledger, mint_nft(ledger, owner, record).mint)

    assert nft_mismatches(info, record) == []
    tampered = make_record(owner, weights_sha256="0" * 64, round=9)
    assert nft_mismatches(info, tampered) == [
        "field round is '0', the commit says '9'",
        f"field weights_sha256 is {record.weights_sha256!r}, the commit says {'0' * 64!r}",
    ]


def test_the_mint_address_derives_from_the_minters_public_key_and_nobody_else_can_create_it(ledger, make_wallet,
                                                                                              make_record):
    owner, thief = make_wallet("owner"), make_wallet("thief")
    record = make_record(owner)
    address = mint_address(owner.pubkey, record.repository, record.commit)
    ledger.fund(thief.keypair.pubkey(), 10**8)
    squat = create_account_with_seed(CreateAccountWithSeedParams(
        from_pubkey=thief.keypair.pubkey(), to_pubkey=address, base=owner.keypair.pubkey(),
        seed=mint_seed(record.repository, record.commit), lamports=10**7, space=82, owner=TOKEN_2022_PROGRAM_ID))

    with pytest.raises(TransactionError, match=f"needs signatures from .*{owner.pubkey}"):
        sign([squat], thief.keypair, [], ledger.latest_blockhash())
    assert ledger.get_account(address) is None
    assert mint_nft(ledger, owner, record).mint == str(address)
    assert mint_address(owner.pubkey, record.repository, record.commit) != mint_address(thief.pubkey,
                                                                                        record.repository,
                                                                                        record.commit)


def test_lamports_sent_to_the_address_beforehand_do_not_block_the_mint(ledger, make_wallet, make_record):
    owner, griefer = make_wallet("owner"), make_wallet("griefer")
    record = make_record(owner)
    address = mint_address(owner.pubkey, record.repository, record.commit)
    ledger.fund(griefer.keypair.pubkey(), 10**8)
    ledger.send(sign([transfer(TransferParams(from_pubkey=griefer.keypair.pubkey(), to_pubkey=address,
                                              lamports=1_000_000))], griefer.keypair, [], ledger.latest_blockhash()))
    with pytest.raises(NftError, match="no NFT at"):
        read_nft(ledger, str(address))

    info = read_nft(ledger, mint_nft(ledger, owner, record).mint)

    assert info.mint == str(address) and nft_mismatches(info, record) == [] and info.owner == owner.pubkey
    account = ledger.get_account(address)
    assert account.lamports == ledger.rent_exempt_minimum(len(bytes(account.data)))
