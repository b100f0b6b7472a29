"""Benchmark: what a commit NFT costs on the embedded ledger — lamports, transactions, bytes, time.

Mints three shapes of commit into a fresh embedded ledger (a genesis commit with no parents, an aggregate of 3 updates,
an octopus aggregate of 12 updates), then a transfer. Rent comes from the ledger's rent sysvar (LiteSVM uses
mainnet's), so the lamports match what a cluster charges today. Run with
``python bench/bench_nft.py``; writes bench/results/nft.json. docs/nft.md quotes the numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from solders.keypair import Keypair

from federity.chain.embedded import EmbeddedLedger
from federity.chain.nft import NftRecord, mint_nft, read_nft, transfer_nft
from federity.identity import Wallet

ROOT = Path(__file__).resolve().parents[1]
LAMPORTS_PER_SOL = 1_000_000_000


def _hex(text: str, n: int = 64) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def main() -> None:
    minter = Wallet(Keypair(), Path("bench-wallet.json"))
    shapes = {"genesis": 0, "aggregate of 3 updates": 3, "aggregate of 12 updates": 12}
    results: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    with tempfile.TemporaryDirectory() as work:
        ledger = EmbeddedLedger(Path(work))
        ledger.fund(minter.keypair.pubkey(), 10 * LAMPORTS_PER_SOL)  # so no airdrop lands inside a measurement
        mints = {}
        for i, (shape, n_parents) in enumerate(shapes.items()):
            record = NftRecord(
                repository=_hex("repository", 32), name="breast-cancer", commit=_hex(shape, 40),
                kind="genesis" if n_parents == 0 else "aggregate", author=minter.pubkey,
                weights_sha256=_hex(f"weights {i}"), proof_sha256=_hex(f"proof {i}"), round=i,
                parents=tuple(_hex(f"{shape} parent {p}", 40) for p in range(n_parents)),
            )
            start = time.perf_counter()
            result = mint_nft(ledger, minter, record)
            seconds = time.perf_counter() - start
            info = read_nft(ledger, result.mint)
            mints[shape] = result.mint
            results[shape] = {
                "transactions": len(result.transaction_sizes), "bytes_per_transaction": result.transaction_sizes,
                "lamports_spent": result.lamports_spent, "sol_spent": result.lamports_spent / LAMPORTS_PER_SOL,
                "rent_lamports": info.rent_lamports, "fee_lamports": result.lamports_spent - info.rent_lamports,
                "seconds": round(seconds, 4),
            }
        start = time.perf_counter()
        repeat = mint_nft(ledger, minter, record)
        results["re-mint of a minted commit"] = {"lamports_spent": repeat.lamports_spent,
                                                 "seconds": round(time.perf_counter() - start, 4)}
        buyer = Wallet(Keypair(), Path("bench-buyer.json"))
        before = ledger.get_balance(minter.keypair.pubkey())
        start = time.perf_counter()
        transfer_nft(ledger, minter, mints["genesis"], buyer.pubkey)
        results["transfer to a new holder"] = {
            "lamports_spent": before - ledger.get_balance(minter.keypair.pubkey()),
            "seconds": round(time.perf_counter() - start, 4),
        }
    out = ROOT / "bench" / "results" / "nft.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
