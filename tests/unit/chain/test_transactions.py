"""The 1,232-byte transaction limit: checking it, and splitting instruction groups over transactions in order."""

from __future__ import annotations

import pytest
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from federity.chain.nft import mint_nft, read_nft
from federity.chain.transactions import MAX_TRANSACTION_BYTES, pack, sign, transaction_size
from federity.errors import TransactionError

PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")


def memo(tag: int, size: int) -> Instruction:
    """A memo-program instruction carrying ``size`` bytes, recognisable by its first byte."""
    return Instruction(PROGRAM, bytes([tag]) * size, [])


def test_transaction_size_is_the_serialised_size_with_signatures():
    payer = Keypair()
    instructions = [memo(1, 100), memo(2, 300)]
    signed = sign(instructions, payer, [], Hash.new_unique())
    assert transaction_size(instructions, payer.pubkey()) == len(bytes(signed))


def test_groups_are_packed_in_order_without_splitting_a_group():
    payer = Pubkey.new_unique()
    groups = [[memo(i, 150), memo(i, 150)] for i in range(8)]  # 8 groups of ~300 bytes: 3 fit a transaction

    batches = pack(groups, payer)

    assert len(batches) > 1
    assert all(transaction_size(batch, payer) <= MAX_TRANSACTION_BYTES for batch in batches)
    tags = [ix.data[0] for batch in batches for ix in batch]
    assert tags == sorted(tags) and len(tags) == 16
    for batch in batches:  # both halves of every group land in the same transaction
        batch_tags = [ix.data[0] for ix in batch]
        assert all(batch_tags.count(t) == 2 for t in batch_tags)


def test_instructions_that_fit_share_one_transaction():
    payer = Pubkey.new_unique()
    assert pack([[memo(1, 10)], [memo(2, 10)], [memo(3, 10)]], payer) == [[memo(1, 10), memo(2, 10), memo(3, 10)]]


def test_a_group_larger_than_a_transaction_is_refused():
    with pytest.raises(TransactionError, match="more than a transaction's 1232"):
        pack([[memo(1, 700), memo(2, 700)]], Pubkey.new_unique())


def test_the_embedded_ledger_refuses_an_oversized_transaction_litesvm_would_run(ledger):
    payer = Keypair()
    ledger.fund(payer.pubkey(), 10**9)
    oversized = sign([memo(1, 600), memo(2, 600)], payer, [], ledger.latest_blockhash())
    assert len(bytes(oversized)) > MAX_TRANSACTION_BYTES

    with pytest.raises(TransactionError, match=r"is \d+ bytes, more than the 1232"):
        ledger.send(oversized)


def test_a_commit_with_many_parents_is_minted_over_several_transactions(ledger, make_wallet, make_record):
    owner = make_wallet("owner")
    parents = tuple(f"{i:040x}" for i in range(12))  # an octopus merge of 12 updates
    record = make_record(owner, parents=parents, uri="https://git.example.org/" + "consortium/" * 20)

    result = mint_nft(ledger, owner, record)
    info = read_nft(ledger, result.mint)

    assert len(result.transaction_sizes) >= 2
    assert all(size <= MAX_TRANSACTION_BYTES for size in result.transaction_sizes)
    assert list(info.metadata.additional) == list(record.fields())  # written in order
    assert info.metadata.additional["parents"] == ",".join(parents) and info.metadata.uri == record.uri
    assert (info.supply, info.mint_authority, info.metadata.update_authority) == (1, None, None)
