"""The cluster ledger: solana-py's real client against a JSON-RPC server on localhost backed by LiteSVM."""

from __future__ import annotations

import socket

import pytest
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.instructions import transfer_checked
from spl.token.models import TransferCheckedParams

from federity.chain.embedded import EmbeddedLedger
from federity.chain.nft import mint_nft, read_nft, transfer_nft
from federity.chain.rpc import RpcLedger
from federity.chain.transactions import sign
from federity.errors import LedgerError, PermissionDeniedError, TransactionError


def funded(server, wallet) -> None:
    """Give ``wallet`` local SOL on the server's ledger (Federity never airdrops on a cluster)."""
    server.rpc.ledger.fund(wallet.keypair.pubkey(), 10**9)


def test_a_mint_sent_through_rpc_is_the_bytes_the_embedded_ledger_executes(rpc_server, tmp_path, make_wallet,
                                                                           make_record):
    owner = make_wallet("owner")
    funded(rpc_server, owner)
    record = make_record(owner, parents=tuple(f"{i:040x}" for i in range(12)))  # several transactions

    result = mint_nft(RpcLedger(rpc_server.url), owner, record)

    received = [Transaction.from_bytes(raw) for raw in rpc_server.rpc.received]
    assert [str(tx.signatures[0]) for tx in received] == result.signatures and len(received) >= 2
    assert [len(raw) for raw in rpc_server.rpc.received] == result.transaction_sizes
    through_rpc = read_nft(RpcLedger(rpc_server.url), result.mint)
    on_disk = read_nft(EmbeddedLedger(tmp_path / "cluster"), result.mint)
    assert through_rpc == on_disk
    assert through_rpc.metadata.additional == record.fields() and through_rpc.owner == owner.pubkey


def test_minting_again_through_rpc_sends_nothing(rpc_server, make_wallet, make_record):
    owner = make_wallet("owner")
    funded(rpc_server, owner)
    ledger = RpcLedger(rpc_server.url)
    first = mint_nft(ledger, owner, make_record(owner))
    sent = len(rpc_server.rpc.received)

    again = mint_nft(ledger, owner, make_record(owner))

    assert again.mint == first.mint and not again.created
    assert len(rpc_server.rpc.received) == sent


def test_a_transfer_through_rpc_moves_the_holder(rpc_server, make_wallet, make_record):
    owner, buyer = make_wallet("owner"), make_wallet("buyer")
    funded(rpc_server, owner)
    ledger = RpcLedger(rpc_server.url)
    mint = mint_nft(ledger, owner, make_record(owner)).mint

    with pytest.raises(PermissionDeniedError, match="does not hold the NFT"):
        transfer_nft(ledger, buyer, mint, buyer.pubkey)
    transfer_nft(ledger, owner, mint, buyer.pubkey)

    assert read_nft(ledger, mint).owner == buyer.pubkey


def test_an_unfunded_payer_on_a_cluster_is_told_how_to_fund(rpc_server, make_wallet, make_record):
    owner = make_wallet("owner")
    with pytest.raises(LedgerError, match=f"holds 0 lamports(?s:.*)solana airdrop 1 {owner.pubkey}"):
        mint_nft(RpcLedger(rpc_server.url), owner, make_record(owner))
    assert rpc_server.rpc.received == []


def test_an_unreachable_rpc_url_is_a_clear_ledger_error(make_wallet, make_record):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    owner = make_wallet("owner")

    with pytest.raises(LedgerError, match=f"the Solana RPC at {url} is unreachable(?s:.*)federity nft sync") as info:
        mint_nft(RpcLedger(url), owner, make_record(owner))
    assert isinstance(info.value, ConnectionError)


def test_a_transaction_the_cluster_rejects_is_a_transaction_error(rpc_server, make_wallet, make_record):
    owner, thief = make_wallet("owner"), make_wallet("thief")
    funded(rpc_server, owner)
    funded(rpc_server, thief)
    ledger = RpcLedger(rpc_server.url)
    info = read_nft(ledger, mint_nft(ledger, owner, make_record(owner)).mint)
    holder = Pubkey.from_string(info.holder_account)
    steal = transfer_checked(TransferCheckedParams(
        program_id=TOKEN_2022_PROGRAM_ID, source=holder, mint=info.metadata.mint, dest=holder,
        owner=thief.keypair.pubkey(), amount=1, decimals=0,
    ))

    with pytest.raises(TransactionError, match=f"{rpc_server.url} rejected the transaction(?s:.*)owner does not match"):
        ledger.send(sign([steal], thief.keypair, [], ledger.latest_blockhash()))
    assert read_nft(ledger, info.mint).owner == owner.pubkey
