"""Attacks on ownership: the genesis NFT's holder is the owner, a sale hands over full control, an unsigned NFT note
cannot make anyone owner, and verify checks the owners against the ledger (or says plainly that it could not)."""

from __future__ import annotations

from pathlib import Path

import pytest
from solders.system_program import TransferParams, transfer

from federity.chain.ledger import open_ledger
from federity.chain.nft import mint_nft, read_nft, transfer_nft
from federity.chain.transactions import sign
from federity.config import CONFIG_FILE, RepoConfig, Role
from federity.errors import ConfigError, LedgerError, PermissionDeniedError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.commits import create_commit, read_commit
from federity.repo.nft import genesis, nft_record, repository_holder
from federity.repo.notes import NFT, read_note, write_note
from federity.repo.privacy import keyring_at, write_keyring
from tests.conftest import snapshot
from tests.unit.chain.rpc_server import RpcServer

pytestmark = pytest.mark.usefixtures("own_ledger")


@pytest.fixture
def repo(repo: Repository, owner: Wallet) -> Repository:
    """The shared repository with its genesis NFT minted: the step `federity init` takes after creating it."""
    repo.nft_sync(owner)
    return repo


def _roles(repo: Repository) -> dict[str, str]:
    return {m["pubkey"]: m["role"] for m in repo.list_members()}


def _forge_members_commit(repo: Repository, wallet: Wallet, members: dict[str, Role], message: str) -> str:
    """A members commit signed by ``wallet`` made without Federity's ownership checks (what a hostile clone can
    push): every other check (signature, role, config) passes."""
    config = repo.config(repo.head())
    updated = RepoConfig(**{**vars(config), "members": members})
    (repo.root / CONFIG_FILE).write_text(updated.to_yaml())
    write_keyring(repo, keyring_at(repo, repo.head(), config).resealed({"versions": updated.version_readers()},
                                                                        wallet))
    return create_commit(repo, wallet, "members", message, [repo.head()], paths=(CONFIG_FILE, "keyring")).commit


def _ownership(report_json: dict) -> tuple[list[str], list[str]]:
    return ([f["reason"] for f in report_json["failures"] if f["check"] == "ownership"],
            [u["reason"] for u in report_json["unchecked"] if u["check"] == "ownership"])


def test_after_a_sale_the_seller_keeps_no_role_and_only_the_buyer_can_act_as_owner(
        repo: Repository, owner: Wallet, contributor: Wallet, stranger: Wallet, tmp_path: Path, make_weights) -> None:
    buyer, co_owner = stranger, Wallet.create(tmp_path / "wallets" / "co-owner.json")
    repo.add_member(owner, contributor.pubkey, "contributor")
    repo.add_member(owner, co_owner.pubkey, "owner")
    repo.branch("updates/site-a")
    repo.checkout("updates/site-a")
    update = repo.commit(contributor, make_weights(repo), "site A")
    repo.checkout("main")
    root = genesis(repo).commit

    sale = repo.nft_transfer(owner, root, buyer.pubkey)

    assert read_nft(open_ledger("embedded"), genesis(repo).mint).owner == buyer.pubkey
    # the buyer is the sole owner, the seller keeps no role, another owner is now a maintainer
    assert _roles(repo) == {buyer.pubkey: "owner", co_owner.pubkey: "maintainer", contributor.pubkey: "contributor"}
    assert read_commit(repo, sale["members_commit"]).meta.author == owner.pubkey  # signed by the seller
    assert sale["pushed"] is True and repo.git.resolve("origin/main") == sale["members_commit"]
    before = snapshot(repo, tmp_path / "remote.git")
    with pytest.raises(PermissionDeniedError, match=f"wallet {owner.pubkey} cannot change members: only an owner"):
        repo.add_member(owner, owner.pubkey, "owner")
    with pytest.raises(PermissionDeniedError, match=f"wallet {owner.pubkey} is not a member; a weights commit needs"):
        repo.commit(owner, make_weights(repo), "the seller's weights")
    with pytest.raises(PermissionDeniedError, match=f"wallet {owner.pubkey} is not a member; reviewing updates"):
        repo.review(owner, update.commit[:12], approve=False, reason="the seller rejects")
    with pytest.raises(PermissionDeniedError, match="a maintainer cannot grant or revoke the maintainer role"):
        repo.add_member(co_owner, owner.pubkey, "maintainer")  # the former co-owner cannot bring the seller back
    assert snapshot(repo, tmp_path / "remote.git") == before

    repo.add_member(buyer, owner.pubkey, "contributor")  # the buyer may grant roles, the seller's too
    repo.commit(buyer, make_weights(repo), "the buyer's weights")
    assert repo.review(buyer, update.commit[:12], approve=False, reason="stale").status == "rejected"
    report = repo.verify()
    assert report.ok, report.failures
    # all but the update made before the buyer joined, sealed to that update's reviewers (the seller, the co-owner)
    assert [(u["check"], u["reason"][:9]) for u in report.unchecked] == [("weights", "1 commit(")]


def test_a_forged_nft_note_pointing_the_genesis_at_another_mint_does_not_make_the_attacker_owner(
        repo: Repository, owner: Wallet, contributor: Wallet, stranger: Wallet) -> None:
    attacker = contributor
    repo.add_member(owner, attacker.pubkey, "owner")  # a co-owner in federity.yaml, not the genesis NFT's holder
    root = genesis(repo)
    fake = mint_nft(open_ledger("embedded"), attacker, nft_record(repo, read_commit(repo, root.commit)))
    write_note(repo, NFT, root.commit, {**read_note(repo, NFT, root.commit, dict), "mint": fake.mint})  # same metadata
    assert read_nft(open_ledger("embedded"), fake.mint).owner == attacker.pubkey
    before = snapshot(repo)

    with pytest.raises(PermissionDeniedError, match=f"wallet {attacker.pubkey} does not hold the repository's "
                                                    f"genesis NFT \\({owner.pubkey} does"):
        repo.add_member(attacker, stranger.pubkey, "maintainer")
    with pytest.raises(PermissionDeniedError, match=f"{attacker.pubkey} does not hold the NFT of"):
        repo.nft_transfer(attacker, root.commit, stranger.pubkey)
    assert snapshot(repo) == before
    assert repository_holder(repo) == owner.pubkey and repo.nft_show(root.commit)["mint"] == root.mint

    failures, unchecked = _ownership(repo.verify().to_json())
    assert unchecked == []
    assert failures == [f"the NFT note names {fake.mint!r} as the genesis NFT, but the genesis NFT is at "
                        f"{root.mint} (derived from the genesis author {owner.pubkey}); the note is not trusted"]


def test_a_transfer_the_ledger_refuses_leaves_the_repository_the_remote_and_the_members_unchanged(
        rpc_server: RpcServer, tmp_path: Path, owner: Wallet, stranger: Wallet) -> None:
    chain = rpc_server.rpc.ledger
    chain.fund(owner.keypair.pubkey(), 10**9)  # no airdrops on a cluster: the owner pays
    repo, _ = Repository.init(tmp_path / "repo", owner, name="sold", framework="torch", model="logistic-regression",
                              model_args=["in_features=4"], remote=str(tmp_path / "remote.git"), ledger=rpc_server.url)
    repo.nft_sync(owner)
    root = genesis(repo)
    assert read_nft(chain, root.mint).owner == owner.pubkey
    keep = chain.rent_exempt_minimum(0) + 10_000  # spend the rest: the sale's fee and token account cannot be paid
    drain = transfer(TransferParams(from_pubkey=owner.keypair.pubkey(), to_pubkey=stranger.keypair.pubkey(),
                                    lamports=chain.get_balance(owner.keypair.pubkey()) - keep - 5_000))
    chain.send(sign([drain], owner.keypair, [], chain.latest_blockhash()))
    before, members = snapshot(repo, tmp_path / "remote.git"), _roles(repo)

    with pytest.raises(LedgerError, match=r"holds \d+ lamports on .* and this needs about"):
        repo.nft_transfer(owner, root.commit, stranger.pubkey)

    assert snapshot(repo, tmp_path / "remote.git") == before and _roles(repo) == members
    assert read_nft(chain, root.mint).owner == owner.pubkey and repo.git.is_clean()


def test_verify_reports_owners_the_genesis_holder_is_not_among(repo: Repository, owner: Wallet, stranger: Wallet,
                                                               contributor: Wallet) -> None:
    buyer = stranger
    root = genesis(repo)
    transfer_nft(open_ledger("embedded"), owner, root.mint, buyer.pubkey)  # sold outside `federity nft transfer`
    assert repo.verify().to_json()["failures"] != []
    with pytest.raises(PermissionDeniedError, match=f"\\({buyer.pubkey} does, on the ledger\\)"):
        repo.add_member(owner, contributor.pubkey, "maintainer")  # the seller may no longer act as owner

    forged = _forge_members_commit(repo, owner, {owner.pubkey: Role.OWNER, contributor.pubkey: Role.MAINTAINER},
                                   "the seller grants a role after the sale")
    report = repo.verify().to_json()
    failures, unchecked = _ownership(report)
    assert unchecked == [] and {f["check"] for f in report["failures"]} == {"ownership"}
    assert failures == [
        f"the genesis NFT is held by {buyer.pubkey} on the ledger, but by the history its holder is {owner.pubkey}: "
        "it changed hands outside `federity nft transfer`, and owner-only changes since were signed by a wallet "
        "that no longer held it",
        f"the genesis NFT's holder {buyer.pubkey} is not an owner in federity.yaml at main's head",
    ]
    assert {f["commit"] for f in report["failures"]} == {forged}


def test_verify_reports_an_owner_only_change_signed_by_a_co_owner_who_never_held_the_genesis_nft(
        repo: Repository, owner: Wallet, contributor: Wallet, stranger: Wallet) -> None:
    repo.add_member(owner, contributor.pubkey, "owner")
    forged = _forge_members_commit(repo, contributor, {owner.pubkey: Role.OWNER, contributor.pubkey: Role.OWNER,
                                                       stranger.pubkey: Role.MAINTAINER}, "co-owner's grant")
    failures = [f for f in repo.verify().failures if f["check"] == "ownership"]
    assert failures == [{"commit": forged, "check": "ownership", "reason":
                         f"an owner-only members change signed by {contributor.pubkey}, who did not hold the "
                         f"genesis NFT at this point ({owner.pubkey} did, by the history)"}]


def test_the_holder_cannot_give_up_the_owner_role_except_by_selling(repo: Repository, owner: Wallet,
                                                                    contributor: Wallet) -> None:
    repo.add_member(owner, contributor.pubkey, "owner")
    before = snapshot(repo)
    with pytest.raises(ConfigError, match="the genesis NFT's holder must stay an owner"):
        repo.add_member(owner, owner.pubkey, "maintainer")
    with pytest.raises(ConfigError, match="the genesis NFT's holder must stay an owner"):
        repo.remove_member(owner, owner.pubkey)
    assert snapshot(repo) == before


def test_with_an_unreachable_ledger_verify_reports_ownership_unchecked_and_owner_actions_are_refused(
        rpc_server: RpcServer, tmp_path: Path, owner: Wallet, contributor: Wallet) -> None:
    rpc_server.rpc.ledger.fund(owner.keypair.pubkey(), 10**9)
    repo, _ = Repository.init(tmp_path / "repo", owner, name="offline", framework="torch",
                              model="logistic-regression", model_args=["in_features=4"], ledger=rpc_server.url)
    repo.nft_sync(owner)
    assert repository_holder(repo) == owner.pubkey
    assert _ownership(repo.verify().to_json()) == ([], [])
    rpc_server.close()  # the cluster is unreachable from now on

    report = repo.verify().to_json()
    failures, unchecked = _ownership(report)
    assert failures == [] and report["ok"]  # what cannot be checked is said, not counted as a failure
    assert [u["check"] for u in report["unchecked"]] == ["nft", "ownership"]
    assert "recorded NFT(s) are not checked against their commits" in report["unchecked"][0]["reason"]
    [reason] = unchecked
    assert reason.startswith(f"the {rpc_server.url} ledger could not be read (")
    assert "the genesis NFT's holder is not checked against the owners" in reason
    before = snapshot(repo)
    with pytest.raises(PermissionDeniedError, match=f"cannot check that wallet {owner.pubkey} holds the "
                                                    "repository's genesis NFT"):
        repo.add_member(owner, contributor.pubkey, "maintainer")
    assert snapshot(repo) == before
