"""Fitting instructions into Solana transactions of at most 1,232 bytes, in order.

A Solana transaction must fit one IPv6 packet's payload: 1,232 bytes once serialised with its signatures. Clusters
drop larger ones, and LiteSVM does not check, so Federity checks here for both. Instructions come in *groups* that
must land atomically (e.g. creating a mint account and initialising it: apart, anyone could initialise it first);
groups are packed greedily into as few transactions as fit, never reordered and never split.
"""

from __future__ import annotations

from collections.abc import Sequence

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from federity.errors import TransactionError

MAX_TRANSACTION_BYTES = 1232  # solana_packet::PACKET_DATA_SIZE: 1280-byte IPv6 MTU minus 48 bytes of headers
_SIGNATURE_LEN = 64


def _shortvec_len(n: int) -> int:
    """Bytes of Solana's compact-u16 length prefix for ``n``."""
    return 1 if n < 0x80 else 2 if n < 0x4000 else 3


def transaction_size(instructions: Sequence[Instruction], payer: Pubkey) -> int:
    """Serialised size in bytes of a legacy transaction holding ``instructions``, signatures included."""
    message = Message.new_with_blockhash(list(instructions), payer, Hash.default())
    signatures = message.header.num_required_signatures
    return _shortvec_len(signatures) + signatures * _SIGNATURE_LEN + len(bytes(message))


def pack(groups: Sequence[Sequence[Instruction]], payer: Pubkey) -> list[list[Instruction]]:
    """Pack ``groups`` of instructions, in order, into as few transactions as fit the size limit."""
    batches: list[list[Instruction]] = []
    current: list[Instruction] = []
    for group in groups:
        if transaction_size(current + list(group), payer) <= MAX_TRANSACTION_BYTES:
            current += group
            continue
        if transaction_size(group, payer) > MAX_TRANSACTION_BYTES:
            raise TransactionError(
                f"{len(group)} instructions that must land together need "
                f"{transaction_size(group, payer)} bytes, more than a transaction's {MAX_TRANSACTION_BYTES}",
                "shorten the values written on chain (names, URIs, metadata fields)",
            )
        batches.append(current)
        current = list(group)
    if current:
        batches.append(current)
    return batches


def sign(
    instructions: Sequence[Instruction], payer: Keypair, signers: Sequence[Keypair], blockhash: Hash
) -> Transaction:
    """A legacy transaction paid by ``payer``, signed by whichever of ``payer`` and ``signers`` it needs."""
    message = Message.new_with_blockhash(list(instructions), payer.pubkey(), blockhash)
    needed = set(message.account_keys[: message.header.num_required_signatures])
    keypairs = {kp.pubkey(): kp for kp in [payer, *signers] if kp.pubkey() in needed}
    missing = needed - set(keypairs)
    if missing:
        raise TransactionError(
            f"the transaction needs signatures from {', '.join(map(str, sorted(missing, key=str)))}",
            "sign with the wallet that holds the NFT or the authority named in the error",
        )
    return Transaction(list(keypairs.values()), message, blockhash)


def check_size(transaction: Transaction) -> None:
    """Refuse a transaction larger than a cluster accepts (LiteSVM would run it anyway)."""
    size = len(bytes(transaction))
    if size > MAX_TRANSACTION_BYTES:
        raise TransactionError(
            f"the transaction is {size} bytes, more than the {MAX_TRANSACTION_BYTES} a Solana cluster accepts",
            "split its instructions over several transactions (federity.chain.transactions.pack)",
        )
