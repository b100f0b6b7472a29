"""The embedded ledger's directory: state shared across processes, serialised, and replay-safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.system_program import TransferParams, transfer

from federity.chain.embedded import STATE_FILE, EmbeddedLedger
from federity.chain.nft import read_nft
from federity.chain.transactions import sign
from federity.errors import LedgerError, TransactionError
from tests.unit.chain.conftest import commit_id

ROOT = Path(__file__).resolve().parents[3]

MINT_SCRIPT = """
import json, sys, time
from pathlib import Path
from federity.chain.embedded import EmbeddedLedger
from federity.chain.nft import mint_nft
from tests.unit.chain.conftest import record, wallet

gate, name, commits = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
minter = wallet(name)
ledger = EmbeddedLedger()  # the directory comes from FEDERITY_LEDGER
(gate / f"ready-{name}-{commits[0]}").touch()
while not (gate / "go").exists():
    time.sleep(0.01)
print(json.dumps([mint_nft(ledger, minter, record(minter, int(n))).mint for n in commits]))
"""


def start_minting(ledger_dir: Path, minter: str, commits: range) -> subprocess.Popen:
    """A separate Python process minting ``commits`` into the ledger at ``ledger_dir`` once ``go`` exists in the
    gate directory (beside the ledger)."""
    gate = ledger_dir.parent / "gate"
    gate.mkdir(exist_ok=True)
    env = {**os.environ, "FEDERITY_LEDGER": str(ledger_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", MINT_SCRIPT, str(gate), minter, *map(str, commits)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def open_gate(ledger_dir: Path, processes: int) -> None:
    """Let the minting processes go together, once all of them are ready."""
    gate = ledger_dir.parent / "gate"
    deadline = time.monotonic() + 120
    while len(list(gate.glob("ready-*"))) < processes:
        assert time.monotonic() < deadline, "the minting processes did not start"
        time.sleep(0.02)
    (gate / "go").touch()


def finish(process: subprocess.Popen) -> list[str]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out)


def test_mints_from_another_process_are_read_here(tmp_path, make_wallet):
    process = start_minting(tmp_path / "ledger", "owner", range(1))
    open_gate(tmp_path / "ledger", 1)
    [mint] = finish(process)

    info = read_nft(EmbeddedLedger(tmp_path / "ledger"), mint)

    assert info.owner == make_wallet("owner").pubkey
    assert info.metadata.additional["commit"] == commit_id(0) and info.supply == 1


def test_two_processes_minting_into_one_ledger_both_land(tmp_path, make_wallet):
    ledger_dir = tmp_path / "ledger"
    first = start_minting(ledger_dir, "owner", range(0, 6))
    second = start_minting(ledger_dir, "owner", range(100, 106))  # same payer: its balance is shared state
    open_gate(ledger_dir, 2)
    mints = finish(first) + finish(second)

    ledger = EmbeddedLedger(ledger_dir)
    infos = [read_nft(ledger, mint) for mint in mints]

    assert len(set(mints)) == 12
    assert sorted(info.metadata.additional["commit"] for info in infos) == sorted(
        commit_id(n) for n in [*range(6), *range(100, 106)])
    assert all(info.owner == make_wallet("owner").pubkey for info in infos)


def test_a_transaction_cannot_be_replayed_in_a_later_session(tmp_path):
    payer, payee = Keypair(), Keypair()
    ledger = EmbeddedLedger(tmp_path / "ledger")
    with ledger.session():
        ledger.fund(payer.pubkey(), 10**9)
        slot = ledger.svm.get_clock().slot
    payment = sign([transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=payee.pubkey(), lamports=10**6))],
                   payer, [], ledger.latest_blockhash())
    ledger.send(payment)

    later = EmbeddedLedger(tmp_path / "ledger")
    with later.session():
        clock = later.svm.get_clock()
        assert clock.slot > slot and abs(clock.unix_timestamp - time.time()) < 60
        with pytest.raises(TransactionError, match="BlockhashNotFound"):
            later.send(payment)
    assert later.get_balance(payee.pubkey()) == 10**6


def test_the_state_file_is_replaced_whole(tmp_path):
    ledger = EmbeddedLedger(tmp_path / "ledger")
    ledger.fund(Keypair().pubkey(), 10**9)
    assert sorted(p.name for p in (tmp_path / "ledger").iterdir()) == ["ledger.json", "ledger.lock"]
    assert json.loads((tmp_path / "ledger" / STATE_FILE).read_text())["format"] == 1


def test_an_unreadable_ledger_state_is_a_clear_error(tmp_path):
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / STATE_FILE).write_text("{not json")

    with pytest.raises(LedgerError, match=r"ledger state .*ledger\.json is unreadable"):
        EmbeddedLedger(tmp_path / "ledger").get_balance(Keypair().pubkey())
