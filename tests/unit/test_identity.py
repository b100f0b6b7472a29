"""Wallets: Solana keypair files, signatures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federity.errors import WalletError
from federity.identity import Wallet, verify_signature


def test_new_wallet_is_a_solana_keypair_file_readable_only_by_its_owner(tmp_path: Path) -> None:
    wallet = Wallet.create(tmp_path / "id.json")
    values = json.loads((tmp_path / "id.json").read_text())
    assert len(values) == 64 and all(0 <= v <= 255 for v in values)
    assert (tmp_path / "id.json").stat().st_mode & 0o777 == 0o600
    assert Wallet.load(tmp_path / "id.json").pubkey == wallet.pubkey


def test_existing_wallet_is_kept_unless_forced(tmp_path: Path) -> None:
    first = Wallet.create(tmp_path / "id.json")
    with pytest.raises(WalletError, match="already exists"):
        Wallet.create(tmp_path / "id.json")
    assert Wallet.load(tmp_path / "id.json").pubkey == first.pubkey
    assert Wallet.create(tmp_path / "id.json", force=True).pubkey != first.pubkey


def test_default_wallet_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDERITY_WALLET", str(tmp_path / "env.json"))
    wallet = Wallet.create()
    assert wallet.path == tmp_path / "env.json"
    assert Wallet.load().pubkey == wallet.pubkey


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("not json", "not a Solana keypair"),
        ("[1, 2, 3]", "not a Solana keypair"),
        (json.dumps([300] * 64), "not a Solana keypair"),
        (json.dumps([7] * 64), "public half does not match"),
    ],
)
def test_file_that_is_not_a_keypair_is_refused(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(WalletError, match=match):
        Wallet.load(tmp_path / "bad.json")


def test_missing_wallet_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(WalletError, match="no wallet file") as info:
        Wallet.load(tmp_path / "absent.json")
    assert "federity wallet new" in info.value.hint


def test_signature_verifies_only_for_its_key_and_message(tmp_path: Path) -> None:
    alice, bob = Wallet.create(tmp_path / "a.json"), Wallet.create(tmp_path / "b.json")
    signature = alice.sign(b"payload")
    assert verify_signature(alice.pubkey, b"payload", signature)
    assert not verify_signature(bob.pubkey, b"payload", signature)
    assert not verify_signature(alice.pubkey, b"payload!", signature)
    assert not verify_signature(alice.pubkey, b"payload", "not-a-signature")
