"""Choosing a ledger from the repository's ``ledger`` setting."""

from __future__ import annotations

import pytest

from federity.chain.embedded import EmbeddedLedger, default_ledger_dir
from federity.chain.ledger import installed_ledgers, open_ledger
from federity.chain.rpc import RpcLedger
from federity.errors import UnknownPluginError


def test_embedded_opens_the_given_directory(tmp_path):
    ledger = open_ledger("embedded", tmp_path / "l")
    assert isinstance(ledger, EmbeddedLedger) and ledger.path == tmp_path / "l"


def test_the_default_ledger_directory_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDERITY_LEDGER", str(tmp_path / "shared"))
    assert default_ledger_dir() == tmp_path / "shared"
    monkeypatch.delenv("FEDERITY_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert open_ledger().path == tmp_path / "data" / "federity" / "ledger"


def test_cluster_aliases_and_urls_open_the_rpc_ledger():
    assert open_ledger("devnet").url == "https://api.devnet.solana.com"
    ledger = open_ledger("http://127.0.0.1:8899")
    assert isinstance(ledger, RpcLedger) and ledger.name == "rpc"


def test_an_unknown_ledger_lists_the_installed_ones():
    assert installed_ledgers() == ["embedded", "rpc"]
    with pytest.raises(UnknownPluginError, match=r"unknown ledger 'solana'(?s:.*)use one of: embedded, rpc"):
        open_ledger("solana")
