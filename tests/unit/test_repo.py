"""Repository operations on real git + DVC: the good paths, the bad paths, and that failures change nothing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from federity.errors import (
    ConfigError,
    NotARepositoryError,
    PermissionDeniedError,
    PickleRefusedError,
    RemoteError,
    RevisionNotFoundError,
    UnknownPluginError,
    WeightsError,
    WorkingTreeError,
)
from federity.identity import Wallet
from federity.repo import Repository
from federity.weights import read_tensors
from tests.conftest import git, snapshot


def test_init_makes_a_signed_genesis_commit_owned_by_the_wallet(repo: Repository, owner: Wallet) -> None:
    [genesis] = repo.log()
    assert genesis.meta.kind == "genesis" and genesis.meta.author == owner.pubkey
    assert genesis.parents == []
    assert repo.list_members() == [{"pubkey": owner.pubkey, "role": "owner"}]
    assert [t["name"] for t in repo.show("HEAD")["tensors"]] == ["0.bias", "0.weight"]
    report = repo.verify().to_json()
    assert {k: report[k] for k in ("ok", "commits_checked", "failures", "rejected")} == {
        "ok": True, "commits_checked": 1, "failures": [], "rejected": []}
    [unchecked] = report["unchecked"]  # the library does not mint: `federity init` and the round flow do, next
    assert unchecked["check"] == "ownership" and "not minted yet" in unchecked["reason"]
    assert git(repo.root.parent / "remote.git", "rev-parse", "main") == genesis.commit


def test_init_is_reproducible_from_its_seed(tmp_path: Path, owner: Wallet) -> None:
    sha = [Repository.init(tmp_path / f"r{i}", owner, name="n", framework="torch", model="mlp",
                           model_args=["in_features=3"])[1].meta.weights_sha256 for i in range(2)]
    assert sha[0] == sha[1]


def test_init_refuses_a_non_empty_directory_and_leaves_it_alone(tmp_path: Path, owner: Wallet) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(WorkingTreeError, match="not empty"):
        Repository.init(tmp_path / "busy", owner, name="n", framework="torch", model="mlp",
                        model_args=["in_features=3"])
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("model", "args", "error", "match"),
    [
        ("resnet-9000", [], UnknownPluginError, "(?s)no model 'resnet-9000'.*logistic-regression, mlp, cnn"),
        ("mlp", [], ConfigError, "needs in_features"),
        ("mlp", ["in_features=3", "depth=2"], ConfigError, "takes no argument depth"),
        ("mlp", ["in_features=-3"], ConfigError, "positive integer"),
    ],
)
def test_init_with_bad_model_creates_nothing(tmp_path: Path, owner: Wallet, model, args, error, match) -> None:
    with pytest.raises(error, match=match):
        Repository.init(tmp_path / "r", owner, name="n", framework="torch", model=model, model_args=args,
                        remote=str(tmp_path / "remote.git"))
    assert not (tmp_path / "r").exists() and not (tmp_path / "remote.git").exists()


def test_unknown_framework_lists_the_installed_ones(tmp_path: Path, owner: Wallet) -> None:
    with pytest.raises(UnknownPluginError, match=r"(?s)unknown framework 'jax'.*torch"):
        Repository.init(tmp_path / "r", owner, name="n", framework="jax", model="mlp")


def test_model_builder_is_copied_into_the_repository(tmp_path: Path, owner: Wallet,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"needs .*mymodels\.py, which does not exist"):
        Repository.init(tmp_path / "r", owner, name="n", framework="torch", model="mymodels:tiny")
    assert not (tmp_path / "r").exists()
    (tmp_path / "mymodels.py").write_text(
        "from torch import nn\n\ndef tiny(width=3):\n    return nn.Linear(width, 1)\n")
    repo, _ = Repository.init(tmp_path / "r", owner, name="n", framework="torch", model="mymodels:tiny",
                              model_args=["width=5"])
    assert git(repo.root, "ls-files", "mymodels.py") == "mymodels.py"
    assert [(t["name"], t["shape"]) for t in repo.show("HEAD")["tensors"]] == [("bias", [1]), ("weight", [1, 5])]


def test_contributor_update_and_owner_commit(repo: Repository, owner: Wallet, contributor: Wallet,
                                             make_weights) -> None:
    repo.add_member(owner, contributor.pubkey, "contributor")
    repo.branch("updates/site-a")
    repo.checkout("updates/site-a")
    update = repo.commit(contributor, make_weights(repo), "site A")
    assert update.meta.kind == "update" and update.meta.author == contributor.pubkey
    repo.checkout("main")
    main_commit = repo.commit(owner, make_weights(repo, 1.0), "owner weights")
    assert main_commit.meta.kind == "weights"
    rows = {r["name"]: r for r in repo.diff("updates/site-a", "main")}
    assert {r["status"] for r in rows.values()} == {"changed"}
    assert rows["0.bias"]["l2"] == pytest.approx(np.sqrt(2) * 0.5)
    report = repo.verify()
    assert report.ok, report.failures
    assert report.commits_checked == 4


def test_contributor_cannot_commit_on_main_and_nothing_changes(repo: Repository, owner: Wallet,
                                                              contributor: Wallet, make_weights) -> None:
    repo.add_member(owner, contributor.pubkey, "contributor")
    before = snapshot(repo)
    with pytest.raises(PermissionDeniedError, match="holds the role contributor; a weights commit needs"):
        repo.commit(contributor, make_weights(repo), "sneaky")
    assert snapshot(repo) == before


def test_non_member_cannot_commit_anywhere(repo: Repository, stranger: Wallet, make_weights) -> None:
    repo.branch("updates/x")
    repo.checkout("updates/x")
    before = snapshot(repo)
    with pytest.raises(PermissionDeniedError, match="is not a member"):
        repo.commit(stranger, make_weights(repo), "hello")
    assert snapshot(repo) == before


def test_pickle_offered_as_weights_is_refused_and_nothing_changes(repo: Repository, owner: Wallet,
                                                                  tmp_path: Path) -> None:
    import torch

    torch.save({"0.weight": torch.zeros(2, 4)}, tmp_path / "w.pt")
    before = snapshot(repo)
    with pytest.raises(PickleRefusedError, match="never loads pickles"):
        repo.commit(owner, tmp_path / "w.pt", "pickled")
    assert snapshot(repo) == before


def test_weights_of_the_wrong_shape_are_refused(repo: Repository, owner: Wallet, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"0.weight": np.zeros((3, 4), np.float32), "0.bias": np.zeros(2, np.float32)},
              str(tmp_path / "w.safetensors"))
    before = snapshot(repo)
    with pytest.raises(WeightsError, match=r"'0.weight' is \(3, 4\) float32, expected \(2, 4\) float32"):
        repo.commit(owner, tmp_path / "w.safetensors", "wrong")
    assert snapshot(repo) == before


def test_unchanged_weights_are_not_a_commit(repo: Repository, owner: Wallet, tmp_path: Path) -> None:
    same = repo.export("HEAD", "safetensors", tmp_path / "same.safetensors").path
    with pytest.raises(WeightsError, match="nothing to commit"):
        repo.commit(owner, same, "same")
    with pytest.raises(WeightsError, match=r"sealed: a private repository's weights(.|\n)*federity export"):
        repo.commit(owner, repo.weights_path, "the sealed file itself")


def test_unknown_revision_is_a_clear_error(repo: Repository, owner: Wallet) -> None:
    for call in (lambda: repo.show("nope"), lambda: repo.diff("HEAD", "nope"), lambda: repo.checkout("nope"),
                 lambda: repo.revert(owner, "nope"), lambda: repo.log("nope")):
        with pytest.raises(RevisionNotFoundError, match="unknown revision 'nope'"):
            call()


def test_a_directory_that_is_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(NotARepositoryError, match="not a Federity repository"):
        Repository.open(tmp_path)
    git(tmp_path, "init", "-q")
    with pytest.raises(NotARepositoryError, match="not a Federity repository"):
        Repository.open(tmp_path)


def test_revert_restores_the_earlier_weights_exactly(repo: Repository, owner: Wallet, make_weights) -> None:
    genesis = repo.head()
    changed = repo.commit(owner, make_weights(repo), "change")
    reverted = repo.revert(owner, changed.commit)
    assert reverted.meta.kind == "revert" and reverted.meta.reverts == changed.commit
    assert reverted.meta.weights_sha256 == repo.log(genesis)[0].meta.weights_sha256
    assert {r["status"] for r in repo.diff(genesis, "HEAD")} == {"unchanged"}


def test_revert_of_an_older_commit_undoes_only_its_change(repo: Repository, owner: Wallet, make_weights) -> None:
    first = repo.commit(owner, make_weights(repo, 1.0), "plus one")
    repo.commit(owner, make_weights(repo, 10.0), "plus ten")
    repo.revert(owner, first.commit)
    genesis = read_tensors(repo.store.read(repo.log()[-1].commit), "g")
    now = read_tensors(repo.store.read(repo.head()), "now")
    assert all(np.allclose(now[k], genesis[k] + 10.0) for k in now)


def test_genesis_and_members_commits_cannot_be_reverted(repo: Repository, owner: Wallet,
                                                       contributor: Wallet) -> None:
    with pytest.raises(ConfigError, match="genesis commit cannot be reverted"):
        repo.revert(owner, "HEAD")
    repo.add_member(owner, contributor.pubkey, "reader")
    with pytest.raises(ConfigError, match="members commit cannot be reverted"):
        repo.revert(owner, "HEAD")


def test_membership_rules(repo: Repository, owner: Wallet, contributor: Wallet, stranger: Wallet) -> None:
    repo.add_member(owner, contributor.pubkey, "maintainer")
    repo.add_member(contributor, stranger.pubkey, "reader")
    with pytest.raises(PermissionDeniedError, match="a maintainer cannot grant or revoke the owner role"):
        repo.add_member(contributor, stranger.pubkey, "owner")
    with pytest.raises(PermissionDeniedError, match="only an owner or maintainer"):
        repo.remove_member(stranger, contributor.pubkey)
    with pytest.raises(ConfigError, match="without an owner"):
        repo.remove_member(owner, owner.pubkey)
    with pytest.raises(ConfigError, match="not a wallet public key"):
        repo.add_member(owner, "bob", "reader")
    with pytest.raises(ConfigError, match="unknown role 'admin'"):
        repo.add_member(owner, stranger.pubkey, "admin")
    roles = {m["pubkey"]: m["role"] for m in repo.list_members()}
    assert roles == {owner.pubkey: "owner", contributor.pubkey: "maintainer", stranger.pubkey: "reader"}
    assert repo.verify().ok


def test_clone_push_pull_round_trip(repo: Repository, owner: Wallet, tmp_path: Path, make_weights) -> None:
    clone = Repository.clone(str(tmp_path / "remote.git"), tmp_path / "clone", wallet=owner)
    assert clone.weights_path.read_bytes() == repo.weights_path.read_bytes()
    new = repo.commit(owner, make_weights(repo), "new")
    repo.push()
    assert clone.pull() == new.commit
    assert clone.weights_path.read_bytes() == repo.weights_path.read_bytes()
    assert clone.verify().ok


def test_unreachable_remote_fails_push_and_changes_nothing(repo: Repository, owner: Wallet, tmp_path: Path,
                                                          make_weights) -> None:
    repo.commit(owner, make_weights(repo), "new")
    shutil.move(tmp_path / "remote.git", tmp_path / "moved.git")
    before = snapshot(repo)
    with pytest.raises(RemoteError, match="could not be reached"):
        repo.push()
    assert snapshot(repo) == before
    with pytest.raises(RemoteError):
        Repository.clone(str(tmp_path / "remote.git"), tmp_path / "clone", wallet=owner)
    assert not (tmp_path / "clone").exists()


def test_dirty_working_tree_is_never_overwritten(repo: Repository, owner: Wallet, make_weights) -> None:
    (repo.root / "params.yaml").write_text("lr: 99\n")
    with pytest.raises(WorkingTreeError, match="uncommitted changes"):
        repo.commit(owner, make_weights(repo), "x")
    assert (repo.root / "params.yaml").read_text() == "lr: 99\n"


def test_verify_names_the_commit_with_corrupted_weights(repo: Repository, owner: Wallet, make_weights) -> None:
    bad = repo.commit(owner, make_weights(repo), "to be corrupted")
    md5 = hashlib.md5(repo.weights_path.read_bytes()).hexdigest()
    entry = repo.root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    entry.chmod(0o644)
    entry.write_bytes(entry.read_bytes()[:-1] + b"\x00")
    report = repo.verify()
    assert [(f["commit"], f["check"]) for f in report.failures] == [(bad.commit, "weights")]
    assert "corrupted" in report.failures[0]["reason"]


def test_an_object_checked_before_is_checked_again_once_its_file_changes(repo: Repository, owner: Wallet,
                                                                        make_weights) -> None:
    bad = repo.commit(owner, make_weights(repo), "checked, then corrupted")
    assert repo.verify().ok  # the object's md5, sha256 and finiteness are now remembered with its file's stat
    md5 = hashlib.md5(repo.weights_path.read_bytes()).hexdigest()
    entry = repo.root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    entry.chmod(0o644)
    entry.write_bytes(entry.read_bytes()[:-1] + b"\x00")
    report = repo.verify()
    assert [(f["commit"], f["check"]) for f in report.failures] == [(bad.commit, "weights")]
    assert "corrupted" in report.failures[0]["reason"]


def test_verify_names_the_commit_whose_weights_are_missing(repo: Repository, owner: Wallet,
                                                           make_weights) -> None:
    bad = repo.commit(owner, make_weights(repo), "never pushed")
    shutil.rmtree(repo.root / ".dvc" / "cache")
    report = repo.verify()
    assert [(f["commit"], f["check"]) for f in report.failures] == [(bad.commit, "weights")]
    assert "cannot be found in the local cache or the DVC storage" in report.failures[0]["reason"]


def test_verify_catches_forged_and_stripped_signatures(repo: Repository, owner: Wallet, make_weights) -> None:
    repo.commit(owner, make_weights(repo), "honest")
    raw = git(repo.root, "cat-file", "commit", "HEAD")
    forged = raw.replace("honest", "dishonest")
    stripped = "\n".join(line for line in raw.splitlines() if not line.startswith("Federity-Signature"))
    for text, reason in ((forged, "does not verify"), (stripped, "not signed")):
        path = repo.root.parent / "c"
        path.write_text(text + "\n")
        commit = git(repo.root, "hash-object", "-t", "commit", "-w", str(path))
        git(repo.root, "update-ref", "refs/heads/main", commit)
        failures = repo.verify().failures
        assert [(f["commit"], f["check"]) for f in failures] == [(commit, "signature")]
        assert reason in failures[0]["reason"]


def test_verify_catches_a_commit_signed_by_a_non_member(public_repo: Repository, stranger: Wallet, make_weights,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import federity.repo.commit as commit
    import federity.repo.commits as commits

    repo = public_repo  # in a private one, a non-member cannot even read the weights it would change
    for module in (commit, commits):  # forge past the client-side checks
        monkeypatch.setattr(module, "require_role", lambda *args: None)
    bad = repo.commit(stranger, make_weights(repo), "intruder")
    failures = repo.verify().failures
    assert [(f["commit"], f["check"]) for f in failures] == [(bad.commit, "role")]
    assert "was not a member" in failures[0]["reason"]


def test_verify_catches_self_promotion_outside_a_members_commit(repo: Repository, owner: Wallet,
                                                                 contributor: Wallet, make_weights) -> None:
    repo.add_member(owner, contributor.pubkey, "contributor")
    repo.branch("experiment")
    repo.checkout("experiment")
    config = (repo.root / "federity.yaml").read_text()
    (repo.root / "federity.yaml").write_text(config.replace(": contributor", ": owner"))
    import federity.repo.commits as commits

    record = commits.create_commit(repo, contributor, "update", "promote myself", [repo.head()],
                                   paths=("federity.yaml",))
    failures = repo.verify().failures
    # an update may change neither federity.yaml (config) nor any file but its weights and update.json (tree)
    assert sorted((f["commit"], f["check"]) for f in failures) == [(record.commit, "config"), (record.commit, "tree")]
