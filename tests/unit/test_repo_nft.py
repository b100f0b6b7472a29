"""Commit NFTs through the repository: minted after each main-line commit, read back, transferred (ownership
follows the genesis NFT), checked by verify, and queued while the ledger is unreachable — on the embedded LiteSVM
ledger, and through solana-py against a JSON-RPC server on localhost backed by LiteSVM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from federity.errors import PermissionDeniedError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.notes import NFT, read_note, write_note
from tests.conftest import snapshot
from tests.unit.chain.rpc_server import RpcServer

pytestmark = pytest.mark.usefixtures("own_ledger")


@pytest.fixture
def repo(repo: Repository, owner: Wallet) -> Repository:
    """The shared repository with its genesis NFT minted: the step `federity init` takes after creating it."""
    repo.nft_sync(owner)
    return repo


def _mints(repo: Repository) -> dict[str, str | None]:
    return {c["commit"]: c["nft"] for c in (r.to_json() for r in repo.log())}


def test_main_line_commits_are_minted_with_metadata_that_records_them(repo: Repository, owner: Wallet,
                                                                      contributor: Wallet) -> None:
    members = repo.add_member(owner, contributor.pubkey, "contributor")
    repo.nft_sync(owner)  # the explicit step after a main-line commit (the CLI and the round flow take it)
    mints = _mints(repo)
    assert len(mints) == 2 and all(mints.values()) and len(set(mints.values())) == 2
    shown = repo.nft_show("HEAD")
    assert shown["mint"] == mints[members.commit] and shown["owner"] == owner.pubkey
    assert (shown["supply"], shown["decimals"], shown["mint_authority"]) == (1, 0, None)
    assert shown["metadata"]["update_authority"] is None
    assert shown["metadata"]["name"] == f"test@{members.commit[:7]}"
    fields = shown["metadata"]["fields"]
    assert fields == {"repository": repo.config().id, "commit": members.commit, "kind": "members", "round": "0",
                      "author": owner.pubkey, "weights_sha256": members.meta.weights_sha256, "proof_sha256": "",
                      "parents": repo.git.resolve("HEAD^")}
    assert 0 < shown["lamports_spent"] < 20_000_000
    assert repo.verify().ok


def test_another_process_reads_the_same_ledger(repo: Repository) -> None:
    out = subprocess.run([sys.executable, "-m", "federity", "nft", "show", "HEAD", "--json"], cwd=repo.root,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["mint"] == _mints(repo)[repo.head()]


def test_minting_is_idempotent_and_sync_has_nothing_left_to_do(repo: Repository, owner: Wallet) -> None:
    before = _mints(repo)
    report = repo.nft_sync(owner)
    assert report.to_json() == {"minted": [], "queued": [], "error": None} and _mints(repo) == before


def test_owner_only_actions_follow_the_genesis_nft_holder(repo: Repository, owner: Wallet, contributor: Wallet,
                                                          stranger: Wallet) -> None:
    repo.add_member(owner, contributor.pubkey, "owner")  # an owner in federity.yaml, not the NFT's holder
    before = snapshot(repo)
    with pytest.raises(PermissionDeniedError, match="does not hold the repository's genesis NFT"):
        repo.add_member(contributor, stranger.pubkey, "maintainer")
    assert snapshot(repo) == before
    repo.add_member(contributor, stranger.pubkey, "contributor")  # a maintainer's action needs no NFT

    genesis = repo.git.run("rev-list", "--max-parents=0", "HEAD")
    with pytest.raises(PermissionDeniedError, match="does not hold the NFT"):
        repo.nft_transfer(contributor, genesis, contributor.pubkey)
    result = repo.nft_transfer(owner, genesis, contributor.pubkey)
    assert repo.nft_show(genesis)["owner"] == contributor.pubkey
    roles = {m["pubkey"]: m["role"] for m in repo.list_members()}
    assert roles == {contributor.pubkey: "owner", stranger.pubkey: "contributor"}  # the seller keeps no role
    assert result["members_commit"] == repo.head() and _mints(repo)[repo.head()] and result["pushed"] is True

    repo.add_member(contributor, stranger.pubkey, "maintainer")  # the new holder may
    with pytest.raises(PermissionDeniedError, match="cannot change members"):
        repo.add_member(owner, stranger.pubkey, "owner")
    assert repo.verify().ok


def test_verify_reports_an_nft_that_records_another_commit_or_does_not_exist(repo: Repository, owner: Wallet,
                                                                             contributor: Wallet) -> None:
    repo.add_member(owner, contributor.pubkey, "contributor")
    genesis, head = repo.git.resolve("HEAD^"), repo.head()
    write_note(repo, NFT, head, read_note(repo, NFT, genesis, dict))  # head's record now points at genesis's NFT
    failures = repo.verify().failures
    wrong_commit = f"field commit is {genesis!r}, the commit says {head!r}"
    assert {"commit": head, "check": "nft", "reason": wrong_commit} in failures
    assert all(f["check"] == "nft" and f["commit"] == head for f in failures)

    write_note(repo, NFT, head, {**read_note(repo, NFT, head, dict),
                                 "mint": str(Wallet.create(repo.root.parent / "x.json").pubkey)})
    [failure] = repo.verify().failures
    assert failure["check"] == "nft" and failure["reason"].startswith("no NFT at")


def test_an_unreachable_ledger_queues_the_mints_and_sync_lands_them_once(tmp_path: Path, owner: Wallet,
                                                                         contributor: Wallet) -> None:
    server = RpcServer(tmp_path / "cluster")
    url, port = server.url, server.httpd.server_address[1]
    server.close()  # the cluster is down from the start
    repo, genesis = Repository.init(tmp_path / "repo", owner, name="queued", framework="torch",
                                    model="logistic-regression", model_args=["in_features=4"], ledger=url)
    members = repo.add_member(owner, contributor.pubkey, "contributor")
    assert _mints(repo) == {genesis.commit: None, members.commit: None}  # the commits stand, NFTs queued
    report = repo.nft_sync(owner)
    assert report.minted == [] and report.queued == [genesis.commit, members.commit]
    assert "could not" in report.error.lower() or "unreachable" in report.error.lower()

    server = RpcServer(tmp_path / "cluster", port=port)  # the cluster comes back
    try:
        server.rpc.ledger.fund(owner.keypair.pubkey(), 10**9)  # no airdrops on a cluster: the owner pays
        report = repo.nft_sync(owner)
        assert [m["commit"] for m in report.minted] == [genesis.commit, members.commit] and not report.queued
        sent = len(server.rpc.received)
        assert repo.nft_sync(owner).minted == [] and len(server.rpc.received) == sent  # nothing minted twice
        assert repo.nft_show(members.commit)["metadata"]["fields"]["commit"] == members.commit
        assert repo.verify().ok
    finally:
        server.close()


def test_verify_reports_an_nft_whose_metadata_disagrees_with_its_commit(repo: Repository, stranger: Wallet) -> None:
    from dataclasses import replace

    from federity.chain.ledger import open_ledger
    from federity.chain.nft import mint_nft
    from federity.repo.commits import read_commit
    from federity.repo.nft import nft_record

    head = repo.head()
    forged = replace(nft_record(repo, read_commit(repo, head)), weights_sha256="0" * 64)
    mint = mint_nft(open_ledger("embedded"), stranger, forged).mint  # anyone can mint any metadata
    write_note(repo, NFT, head, {**read_note(repo, NFT, head, dict), "mint": mint})
    failures = repo.verify().failures
    assert failures[0] == {"commit": head, "check": "nft", "reason":
                           f"field weights_sha256 is {'0' * 64!r}, the commit says "
                           f"{read_commit(repo, head).meta.weights_sha256!r}"}
    # head is the genesis here: a note naming another mint for it is reported by the ownership check too
    assert [(f["commit"], f["check"]) for f in failures[1:]] == [(head, "ownership")]
    assert f"the NFT note names {mint!r} as the genesis NFT" in failures[1]["reason"]
