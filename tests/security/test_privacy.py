"""Private repositories (the default): only members read the weights, updates and proofs, and nothing else
changes. The attacks are an outsider reading the storage or the git remote, a contributor reading another's
update, a removed member reading what came after, and forged keyrings and sealings, which verify names.

Every other round and review test runs on a private repository too: the ``repo`` fixture is one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from federity.config import CONFIG_FILE
from federity.errors import PrivateWeightsError, UpdateError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.commits import create_commit
from federity.repo.nft import mint_new_commits
from federity.repo.train import prepare_training
from federity.sealing.keyring import Keyring
from federity.sealing.objects import Sealing
from federity.weights import read_tensors
from tests.conftest import canary_leaks, train_and_push, write_csv


def _data(tmp_path: Path, site: str, seed: int) -> Path:
    return write_csv(tmp_path / f"data-{site}" / "train.csv", 50, seed=seed)


@pytest.fixture
def round_one(federation: dict[str, Repository], owner: Wallet, contributor: Wallet, site_b: Wallet,
              tmp_path: Path) -> dict[str, str]:
    """Round 1 of a private repository: both sites train and push, the owner approves and aggregates, and
    pushes. Returns the update and aggregate commit ids."""
    updates = [train_and_push(federation["a"], contributor, _data(tmp_path, "a", 1)),
               train_and_push(federation["b"], site_b, _data(tmp_path, "b", 2))]
    owner_repo = federation["owner"]
    owner_repo.pull()
    for update in updates:
        owner_repo.review(owner, update, approve=True)
    aggregate = owner_repo.aggregate(owner).commit
    owner_repo.push()
    return {"a": updates[0], "b": updates[1], "aggregate": aggregate}


def test_no_plaintext_tensor_name_or_weights_bytes_in_the_storage_the_git_remote_mlflow_or_the_ledger(
        federation: dict[str, Repository], round_one: dict[str, str], owner: Wallet, own_ledger: Path,
        tmp_path: Path) -> None:
    owner_repo = federation["owner"]
    owner_repo.track(validation=_data(tmp_path, "validation", 9))  # MLflow: metrics, parameters, hashes
    assert mint_new_commits(owner_repo, owner).minted  # NFTs: hashes and ids
    versions = [owner_repo.git.resolve("main~1"), round_one["a"], round_one["b"], round_one["aggregate"]]
    needles = []
    for commit in versions:
        tensors = read_tensors(owner_repo.store.read(commit), commit)
        needles += [f'"{name}"'.encode() for name in tensors]  # as the safetensors header names them
        needles += [np.ascontiguousarray(t).tobytes() for t in tensors.values()]
    storage = tmp_path / "remote.storage"
    assert len(list(storage.rglob("*"))) >= len(versions)
    leaks = canary_leaks(tmp_path / "nowhere", storage, sorted(set(needles)), [tmp_path / "remote.git"])
    leaks += canary_leaks(tmp_path / "nowhere", owner_repo.root / ".federity", needles, [])  # the MLflow store
    leaks += canary_leaks(tmp_path / "nowhere", own_ledger, needles, [])
    assert leaks == []
    assert list((owner_repo.root / ".federity").rglob("*.db")) and list(own_ledger.rglob("*"))
    # the same needles are found where the plaintext is, so the scan can find them
    assert canary_leaks(tmp_path / "nowhere", tmp_path / "nowhere", needles, [],
                        {"plain": owner_repo.store.read(round_one["aggregate"])})


def test_a_member_reads_and_a_non_member_is_refused_at_clone_with_whom_to_ask(
        federation: dict[str, Repository], round_one: dict[str, str], owner: Wallet, stranger: Wallet,
        tmp_path: Path) -> None:
    reader = Wallet.create(tmp_path / "wallets" / "reader.json")
    federation["owner"].add_member(owner, reader.pubkey, "reader")
    federation["owner"].push()
    clone = Repository.clone(str(tmp_path / "remote.git"), tmp_path / "reader", wallet=reader)
    assert clone.store.read(round_one["aggregate"]) == federation["owner"].store.read(round_one["aggregate"])
    with pytest.raises(PrivateWeightsError, match=rf"wallet {stranger.pubkey} is not a member") as refused:
        Repository.clone(str(tmp_path / "remote.git"), tmp_path / "stranger", wallet=stranger)
    assert owner.pubkey in refused.value.hint and "federity verify" in refused.value.hint
    assert not (tmp_path / "stranger").exists()


def test_a_contributor_cannot_read_another_contributors_update_but_reads_main(
        federation: dict[str, Repository], round_one: dict[str, str], contributor: Wallet) -> None:
    site = federation["a"]
    site.pull()
    with pytest.raises(PrivateWeightsError, match="an update is sealed to its author and the owners"):
        site.store.read(round_one["b"])
    assert site.store.read(round_one["a"])  # its own
    assert site.store.read(round_one["aggregate"])  # main's versions: every member


@pytest.mark.parametrize("policy", ["contributors", "members"])
def test_others_read_a_contributors_update_when_the_policy_says_so(
        tmp_path: Path, owner: Wallet, contributor: Wallet, site_b: Wallet, policy: str) -> None:
    repo, _ = Repository.init(tmp_path / "open", owner, name="t", framework="torch", model="logistic-regression",
                              model_args=["in_features=4"], remote=str(tmp_path / "open.git"),
                              updates_readable_by=policy)
    assert repo.config().privacy == {"updates": policy}
    auditor = Wallet.create(tmp_path / "wallets" / "auditor.json")
    for wallet, role in ((contributor, "contributor"), (site_b, "contributor"), (auditor, "reader")):
        repo.add_member(owner, wallet.pubkey, role)
    repo.push()
    sites = [Repository.clone(str(tmp_path / "open.git"), tmp_path / f"s{i}", wallet=w)
             for i, w in enumerate((contributor, site_b))]
    update = train_and_push(sites[0], contributor, _data(tmp_path, "a", 1))
    sites[1].git.run("fetch", "--quiet", "origin")
    assert read_tensors(sites[1].store.read(update), "theirs")
    repo.pull()
    repo.review(owner, update, approve=True)
    repo.aggregate(owner)
    repo.push()
    audit = Repository.clone(str(tmp_path / "open.git"), tmp_path / "audit", wallet=auditor).verify()
    assert audit.ok, audit.failures
    # a reader recomputes every aggregate when the updates are sealed to every member, and lists them otherwise
    assert [u["check"] for u in audit.unchecked if u["check"] == "weights"] == ([] if policy == "members"
                                                                                 else ["weights"])


def test_a_removed_member_reads_what_it_could_before_and_nothing_after(
        federation: dict[str, Repository], round_one: dict[str, str], owner: Wallet, contributor: Wallet,
        site_b: Wallet, tmp_path: Path) -> None:
    owner_repo = federation["owner"]
    owner_repo.remove_member(owner, site_b.pubkey)
    owner_repo.push()
    update = train_and_push(federation["a"], contributor, _data(tmp_path, "a2", 3))
    owner_repo.pull()
    owner_repo.review(owner, update, approve=True)
    later = owner_repo.aggregate(owner).commit
    owner_repo.push()
    removed = federation["b"]
    removed.git.run("fetch", "--quiet", "origin")
    removed.keys.use(site_b)
    assert removed.store.read(round_one["aggregate"])  # sealed before the removal: it may have kept the key
    with pytest.raises(PrivateWeightsError, match="is not a member"):
        removed.store.read(later)
    keyring = Keyring.parsed(owner_repo.config().id, {
        path.relative_to(owner_repo.root).as_posix(): path.read_bytes()
        for path in (owner_repo.root / "keyring").iterdir()})
    assert len(keyring.epochs["versions"]) == 2 and not keyring.current("versions").sealed_to(site_b.pubkey)
    assert owner_repo.verify().ok


def test_a_member_who_joins_reads_the_versions_before_it(
        federation: dict[str, Repository], round_one: dict[str, str], owner: Wallet, tmp_path: Path) -> None:
    newcomer = Wallet.create(tmp_path / "wallets" / "newcomer.json")
    federation["owner"].add_member(owner, newcomer.pubkey, "reader")
    federation["owner"].push()
    clone = Repository.clone(str(tmp_path / "remote.git"), tmp_path / "newcomer", wallet=newcomer)
    genesis = clone.git.run("rev-list", "--max-parents=0", "HEAD")
    assert read_tensors(clone.store.read(genesis), "genesis")
    assert clone.verify().ok


def test_verify_without_a_members_wallet_checks_the_ciphertext_and_says_what_it_did_not(
        federation: dict[str, Repository], round_one: dict[str, str], stranger: Wallet, tmp_path: Path) -> None:
    auditor = tmp_path / "auditor"
    subprocess.run(["git", "clone", "--quiet", str(tmp_path / "remote.git"), str(auditor)], check=True)
    subprocess.run(["git", "-C", str(auditor), "fetch", "--quiet", "origin", "refs/notes/*:refs/notes/*"], check=True)
    repo = Repository.open(auditor, wallet_path=stranger.path)
    report = repo.verify()
    assert report.ok, report.failures
    [unchecked] = [u for u in report.unchecked if u["check"] == "weights"]
    assert "sealed to members this wallet is not among" in unchecked["reason"]
    # tampered ciphertext in the storage: every reader, member or not, is told
    [obj] = [p for p in (tmp_path / "remote.storage").rglob("*")
             if p.is_file() and p.stat().st_size > 200 and p.read_bytes()[:8] == b"FEDSEAL1"][-1:]
    obj.chmod(0o644)
    damaged = bytearray(obj.read_bytes())
    damaged[-1] ^= 1
    obj.write_bytes(bytes(damaged))
    for cached in (auditor / ".dvc" / "cache").rglob("*"):
        if cached.is_file() and cached.name == obj.name:
            cached.chmod(0o644)
            cached.unlink()
    failures = Repository.open(auditor, wallet_path=stranger.path).verify().failures
    assert any(f["check"] == "weights" and "corrupted" in f["reason"] for f in failures), failures


def test_a_keyring_changed_outside_a_members_commit_is_named_by_verify(
        repo: Repository, owner: Wallet, stranger: Wallet) -> None:
    files = {p.relative_to(repo.root).as_posix(): p.read_bytes() for p in (repo.root / "keyring").iterdir()}
    widened = Keyring.parsed(repo.config().id, files).resealed(
        {"versions": [owner.pubkey, stranger.pubkey]}, owner)  # the key handed to an outsider
    for path, content in widened.files().items():
        (repo.root / path).write_bytes(content)
    bad = create_commit(repo, owner, "weights", "quietly share the key", [repo.head()], paths=("keyring",))
    failures = repo.verify().failures
    assert {(f["commit"], f["check"]) for f in failures} == {(bad.commit, "keyring")}
    assert "only members commits may" in failures[0]["reason"]


def test_a_members_commit_that_seals_the_key_to_a_non_member_is_named_by_verify(
        repo: Repository, owner: Wallet, stranger: Wallet, contributor: Wallet) -> None:
    files = {p.relative_to(repo.root).as_posix(): p.read_bytes() for p in (repo.root / "keyring").iterdir()}
    widened = Keyring.parsed(repo.config().id, files).resealed(
        {"versions": [owner.pubkey, contributor.pubkey, stranger.pubkey]}, owner)
    for path, content in widened.files().items():
        (repo.root / path).write_bytes(content)
    config = (repo.root / CONFIG_FILE).read_text()
    (repo.root / CONFIG_FILE).write_text(config.replace("members:\n", f"members:\n  {contributor.pubkey}: reader\n"))
    bad = create_commit(repo, owner, "members", "add a reader (and someone else)", [repo.head()],
                        paths=(CONFIG_FILE, "keyring"))
    failures = repo.verify().failures
    assert [(f["commit"], f["check"]) for f in failures] == [(bad.commit, "keyring")] * 2
    assert any("not sealed to exactly the repository's members" in f["reason"] for f in failures)
    assert any("seals a key to a wallet that is not a member" in f["reason"] for f in failures)


def test_an_update_sealed_to_others_than_its_readers_is_rejected(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, site_b: Wallet,
        stranger: Wallet, tmp_path: Path) -> None:
    """A contributor who seals its update to an outsider too (its data leaves the federation through the
    weights): the sealing check, made from the object's header, rejects it at review."""
    site = federation["a"]
    site.pull()
    training = prepare_training(site, contributor, _data(tmp_path, "a", 1))
    training.check_data()
    training.fit()
    original = site.store.track

    def leaky_track(**kwargs: object) -> None:
        sealing = kwargs.pop("sealing")
        assert isinstance(sealing, Sealing)
        original(**kwargs, sealing=Sealing({}, (*sealing.wallets, stranger.pubkey)))

    site.store.track = leaky_track  # type: ignore[method-assign]
    update = training.commit().update
    site.store.track = original  # type: ignore[method-assign]
    site.push()
    owner_repo = federation["owner"]
    owner_repo.pull()
    [info] = owner_repo.updates()
    assert info.id == update
    with pytest.raises(UpdateError, match="not sealed to exactly the update's readers"):
        owner_repo.review(owner, update, approve=True)
    [info] = owner_repo.updates()
    assert info.status == "rejected" and "sealing" in (info.reason or "")


def test_a_keyring_holding_a_directory_is_refused_unread_and_named_by_verify(
        repo: Repository, owner: Wallet, contributor: Wallet) -> None:
    files = {p.relative_to(repo.root).as_posix(): p.read_bytes() for p in (repo.root / "keyring").iterdir()}
    joined = Keyring.parsed(repo.config().id, files).resealed({"versions": [owner.pubkey, contributor.pubkey]},
                                                              owner)
    for path, content in joined.files().items():
        (repo.root / path).write_bytes(content)
    (repo.root / "keyring" / "nested").mkdir()
    (repo.root / "keyring" / "nested" / "versions-0-0.json").write_bytes(files["keyring/versions-0-0.json"])
    config = (repo.root / CONFIG_FILE).read_text()
    (repo.root / CONFIG_FILE).write_text(config.replace("members:\n", f"members:\n  {contributor.pubkey}: reader\n"))
    bad = create_commit(repo, owner, "members", "a reader, and a directory in the keyring", [repo.head()],
                        paths=(CONFIG_FILE, "keyring"))
    failures = repo.verify().failures
    assert [(f["commit"], f["check"]) for f in failures] == [(bad.commit, "keyring")]
    assert "'keyring/nested', which is not a keyring file" in failures[0]["reason"]
