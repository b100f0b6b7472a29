"""Attacks on the history and its reviews: unreviewed or unauthorised weights on main, foreign roots, replayed
reviews, forged replays. Each is refused with a clear error and leaves the victim's repository and the remote as
they were (or, for what verify reports, is reported)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from federity.errors import RemoteError, UpdateError, WeightsError
from federity.identity import Wallet
from federity.records import REVIEWS_SCHEMA, signed_review_payload
from federity.repo import Repository
from federity.repo.commits import create_commit
from federity.repo.notes import REVIEWS, write_note
from federity.repo.storage import MODEL_DVC_FILE
from federity.weights import read_tensors, tensors_to_bytes
from tests.conftest import git, snapshot, track_sealed, train_and_push, write_csv


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return tmp_path / "remote.git"


def _data(tmp_path: Path, name: str, seed: int) -> Path:
    return write_csv(tmp_path / f"data-{name}" / "train.csv", 60, seed=seed)


def _hand_made_aggregate(repo: Repository, wallet: Wallet, updates: list[str]) -> str:
    """A maintainer's aggregate commit of ``updates`` with the main weights, signed, bypassing every check."""
    head = repo.head()
    with repo.transaction():
        return create_commit(repo, wallet, "aggregate", "Round 1: by hand", [head, *updates], round=1,
                             strategy="fedavg", paths=(MODEL_DVC_FILE,)).commit


# -- item 4: roles are read when the update is aggregated --------------------------------------------------

@pytest.fixture
def approved_then_removed(federation: dict[str, Repository], owner: Wallet, contributor: Wallet,
                          tmp_path: Path) -> tuple[Repository, str]:
    """The owner's repository holding the contributor's approved update, after the contributor was removed."""
    owner_repo = federation["owner"]
    update = train_and_push(federation["a"], contributor, _data(tmp_path, "a", 1))
    owner_repo.pull()
    owner_repo.review(owner, update, approve=True)
    owner_repo.remove_member(owner, contributor.pubkey)
    return owner_repo, update


def test_an_update_by_a_member_removed_after_training_is_not_aggregated(
        approved_then_removed: tuple[Repository, str], owner: Wallet) -> None:
    owner_repo, update = approved_then_removed
    main = owner_repo.head()
    with pytest.raises(UpdateError, match="0 approved update"):
        owner_repo.aggregate(owner)
    [info] = owner_repo.updates()
    assert info.status == "rejected" and "was not a member at main's head" in info.reason
    assert owner_repo.head() == main
    with pytest.raises(UpdateError, match="was not a member at main's head"):
        owner_repo.review(owner, update, approve=True)


def test_verify_names_an_aggregate_of_an_update_whose_author_was_removed(
        approved_then_removed: tuple[Repository, str], owner: Wallet) -> None:
    owner_repo, update = approved_then_removed
    forged = _hand_made_aggregate(owner_repo, owner, [update])
    failures = [f for f in owner_repo.verify().failures if f["check"] == "main-line"]
    assert [f["commit"] for f in failures] == [forged]
    assert "was not a member when it was aggregated" in failures[0]["reason"]


# -- item 5: updates reach main only through review and aggregation ----------------------------------------

def test_a_contributor_pushing_its_update_straight_to_main_is_refused_at_pull_and_clone(
        federation: dict[str, Repository], contributor: Wallet, remote: Path, tmp_path: Path) -> None:
    site = federation["a"]
    site.train(contributor, _data(tmp_path, "a", 1))
    site.push()
    git(site.root, "push", "--quiet", "origin", "HEAD:main")
    owner_repo = federation["owner"]
    before = snapshot(owner_repo)
    with pytest.raises(RemoteError, match="a commit of kind update stands on main") as refused:
        owner_repo.pull()
    assert "nothing local changed" in refused.value.hint
    assert snapshot(owner_repo) == before
    with pytest.raises(RemoteError, match="a commit of kind update stands on main"):
        Repository.clone(str(remote), tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_verify_names_an_update_standing_on_main(federation: dict[str, Repository], contributor: Wallet,
                                                 tmp_path: Path) -> None:
    site = federation["a"]
    update = site.train(contributor, _data(tmp_path, "a", 1)).update
    git(site.root, "update-ref", "refs/heads/main", update)
    failures = [f for f in site.verify().failures if f["check"] == "main-line"]
    assert [f["commit"] for f in failures] == [update]
    assert [u.status for u in site.updates()] == ["pending"]  # standing on main is not being aggregated


# -- item 6: one root ----------------------------------------------------------------------------------------

def _foreign_genesis(tmp_path: Path, stranger: Wallet, same_id_as: Repository | None = None) -> Repository:
    """The attacker's own repository; with ``same_id_as``, its genesis claims the victim's repository id."""
    foreign, _ = Repository.init(tmp_path / "foreign", stranger, name="test", framework="torch",
                                 model="logistic-regression", model_args=["in_features=4"])
    if same_id_as is not None:
        config = (foreign.root / "federity.yaml").read_text()
        victim_id = same_id_as.config().id
        (foreign.root / "federity.yaml").write_text(config.replace(foreign.config().id, victim_id))
        git(foreign.root, "checkout", "--quiet", "--orphan", "fake")
        create_commit(foreign, stranger, "genesis", "Genesis of test", [], paths=("federity.yaml",))
        git(foreign.root, "branch", "--quiet", "-f", "main", "fake")
        git(foreign.root, "checkout", "--quiet", "main")
    return foreign


@pytest.mark.parametrize("same_id", [False, True])
def test_a_foreign_root_pushed_as_a_tag_is_refused_at_pull_and_named_by_verify(
        repo: Repository, stranger: Wallet, remote: Path, tmp_path: Path, same_id: bool) -> None:
    foreign = _foreign_genesis(tmp_path, stranger, repo if same_id else None)
    git(foreign.root, "push", "--quiet", str(remote), "main:refs/tags/v1")
    before = snapshot(repo, remote)
    with pytest.raises(RemoteError, match="a second root: refs/tags/v1"):
        repo.pull()
    after = snapshot(repo, remote)
    assert after == before
    with pytest.raises(RemoteError, match="a second root"):
        Repository.clone(str(remote), tmp_path / "fresh")
    # in a repository that has it anyway (fetched by hand), verify names the foreign root
    git(repo.root, "fetch", "--quiet", str(remote), "refs/tags/v1:refs/tags/v1")
    report = repo.verify()
    assert not report.ok
    assert [(f["commit"], f["check"]) for f in report.failures] == [(foreign.head(), "root")]


def test_a_force_pushed_foreign_main_is_refused_and_a_pinned_clone_refuses_it(
        repo: Repository, stranger: Wallet, remote: Path, tmp_path: Path) -> None:
    genesis = repo.head()
    foreign = _foreign_genesis(tmp_path, stranger, repo)
    git(foreign.root, "push", "--quiet", "--force", str(remote), "main:main")
    before = snapshot(repo)
    with pytest.raises(RemoteError, match="origin's main was rewritten"):
        repo.pull()
    assert snapshot(repo) == before
    with pytest.raises(RemoteError, match="main does not start at the repository's genesis"):
        Repository.clone(str(remote), tmp_path / "pinned", genesis=genesis)
    assert not (tmp_path / "pinned").exists()


def test_a_tag_that_names_no_commit_is_refused_at_pull_and_named_by_verify(repo: Repository, remote: Path) -> None:
    tree = git(repo.root, "rev-parse", "HEAD^{tree}")
    git(repo.root, "push", "--quiet", str(remote), f"{tree}:refs/tags/not-a-commit")
    before = snapshot(repo, remote)
    with pytest.raises(RemoteError, match="refs/tags/not-a-commit: it names no commit"):
        repo.pull()
    assert snapshot(repo, remote) == before
    git(repo.root, "update-ref", "refs/tags/not-a-commit", tree)
    report = repo.verify()
    assert [(f["check"], f["reason"].split(" ")[0]) for f in report.failures] == [("root", "refs/tags/not-a-commit")]


def test_clone_records_the_genesis_and_later_pulls_hold_to_it(repo: Repository, owner: Wallet, remote: Path,
                                                              tmp_path: Path) -> None:
    clone = Repository.clone(str(remote), tmp_path / "clone", genesis=repo.head(), wallet=owner)
    assert git(clone.root, "config", "--get", "federity.genesis") == repo.head()
    assert clone.verify().ok


# -- item 7: reviews carry an order ------------------------------------------------------------------------

def test_replaying_an_earlier_approval_over_a_rejection_changes_nothing(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, remote: Path,
        tmp_path: Path) -> None:
    site, owner_repo = federation["a"], federation["owner"]
    update = train_and_push(site, contributor, _data(tmp_path, "a", 1))
    owner_repo.pull()
    owner_repo.review(owner, update, approve=True)
    approval = git(owner_repo.root, "notes", "--ref", REVIEWS, "show", update)
    owner_repo.review(owner, update, approve=False, reason="the loss curve looks forged")
    owner_repo.push()
    # the contributor puts the earlier signed approval back on top of the published notes
    site.pull()
    write_note(site, REVIEWS, update, json.loads(approval))
    git(site.root, "push", "--quiet", "origin", f"{REVIEWS}:{REVIEWS}")
    owner_repo.pull()
    [info] = owner_repo.updates()
    assert (info.status, info.reason) == ("rejected", "the loss curve looks forged")
    with pytest.raises(UpdateError, match="0 approved update"):
        owner_repo.aggregate(owner)
    fresh = Repository.clone(str(remote), tmp_path / "fresh", wallet=owner)  # never saw the rejection before
    assert [(u.status, u.reason) for u in fresh.updates()] == [("rejected", "the loss curve looks forged")]


def test_a_review_signed_by_a_contributor_neither_counts_nor_erases_the_maintainers(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, tmp_path: Path) -> None:
    site, owner_repo = federation["a"], federation["owner"]
    update = train_and_push(site, contributor, _data(tmp_path, "a", 1))
    owner_repo.pull()
    owner_repo.review(owner, update, approve=False, reason="not this one")
    owner_repo.push()
    site.pull()
    repository_id = site.config().id
    forged = {"update": update, "status": "approved", "reason": None, "reviewer": contributor.pubkey, "seq": 99,
              "signature": contributor.sign(signed_review_payload(repository_id, update, "approved", None,
                                                           contributor.pubkey, 99))}
    write_note(site, REVIEWS, update, {"schema": REVIEWS_SCHEMA, "reviews": [forged, {"update": {"nested": True}}]})
    git(site.root, "push", "--quiet", "origin", f"{REVIEWS}:{REVIEWS}")
    owner_repo.pull()
    [info] = owner_repo.updates()
    assert (info.status, info.reviewer) == ("rejected", owner.pubkey)


# -- item 8: replay checks trust only valid updates ----------------------------------------------------------

def test_an_unsigned_branch_claiming_an_updates_weights_does_not_make_it_a_replay(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, stranger: Wallet, remote: Path,
        tmp_path: Path) -> None:
    site, owner_repo = federation["a"], federation["owner"]
    update = train_and_push(site, contributor, _data(tmp_path, "a", 1))
    message = git(site.root, "log", "-1", "--format=%B", update)
    lines = [line for line in message.splitlines() if not line.startswith("Federity-Signature")]
    claim = "\n".join(lines).replace(contributor.pubkey, stranger.pubkey).replace("Federity-Round: 1",
                                                                                 "Federity-Round: 0")
    tree = git(site.root, "log", "-1", "--format=%T", update)
    fake = site.git.run("commit-tree", tree, "-p", f"{update}^", "-F", "-", input=claim.encode(),
                        env={"GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x", "GIT_COMMITTER_NAME": "x",
                             "GIT_COMMITTER_EMAIL": "x@x"})
    git(site.root, "push", "--quiet", "origin", f"{fake}:refs/heads/updates/r0/fake")
    owner_repo.pull()  # a failing update branch is let in: it is evidence for its review
    assert owner_repo.review(owner, update, approve=True).status == "approved"
    assert owner_repo.aggregate(owner).created


# -- item 16: publishing notes when origin's moved ----------------------------------------------------------

def test_push_succeeds_when_another_reviewer_published_notes_meanwhile(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, site_b: Wallet, remote: Path,
        tmp_path: Path) -> None:
    owner_repo = federation["owner"]
    maintainer = Wallet.create(tmp_path / "wallets" / "maintainer.json")
    owner_repo.add_member(owner, maintainer.pubkey, "maintainer")
    update_a = train_and_push(federation["a"], contributor, _data(tmp_path, "a", 1))
    update_b = train_and_push(federation["b"], site_b, _data(tmp_path, "b", 2))
    owner_repo.pull()
    owner_repo.push()
    other = Repository.clone(str(remote), tmp_path / "maintainer", wallet=maintainer)
    owner_repo.review(owner, update_a, approve=True)
    owner_repo.push()
    other.review(maintainer, update_b, approve=False, reason="too few samples")
    other.push()  # origin's notes moved since this clone fetched them
    owner_repo.pull()
    assert {u.id: u.status for u in owner_repo.updates()} == {update_a: "approved", update_b: "rejected"}


# -- item 17: non-finite weights on main ---------------------------------------------------------------------

def test_committing_non_finite_weights_to_main_is_refused(repo: Repository, owner: Wallet, tmp_path: Path) -> None:
    tensors = read_tensors(repo.store.read(repo.head()), "weights")
    poisoned = tmp_path / "nan.safetensors"
    poisoned.write_bytes(tensors_to_bytes({k: np.full_like(v, np.nan) for k, v in tensors.items()}))
    before = snapshot(repo)
    with pytest.raises(WeightsError, match=r"non-finite values \(NaN or infinity\)"):
        repo.commit(owner, poisoned, "poison")
    assert snapshot(repo) == before


def test_verify_names_non_finite_weights_on_main(repo: Repository, owner: Wallet) -> None:
    tensors = read_tensors(repo.store.read(repo.head()), "weights")
    with repo.transaction():
        repo.weights_path.write_bytes(tensors_to_bytes({k: np.full_like(v, np.inf) for k, v in tensors.items()}))
        track_sealed(repo, owner, "weights")
        poisoned = create_commit(repo, owner, "weights", "poison", [repo.head()], paths=(MODEL_DVC_FILE,)).commit
    report = repo.verify()
    assert [(f["commit"], f["check"]) for f in report.failures] == [(poisoned, "weights")]
    assert "non-finite values" in report.failures[0]["reason"]


# -- item 18: rejected updates are evidence, not corruption --------------------------------------------------

def test_a_rejected_update_branch_is_reported_apart_and_leaves_verify_ok(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, tmp_path: Path) -> None:
    site, owner_repo = federation["a"], federation["owner"]
    good = train_and_push(site, contributor, _data(tmp_path, "a", 1))
    site.checkout("main")
    tensors = read_tensors(site.store.read(site.head()), "base")
    git(site.root, "checkout", "--quiet", "-b", "updates/r1/poisoned")
    site.weights_path.write_bytes(tensors_to_bytes({k: np.full_like(v, np.nan) for k, v in tensors.items()}))
    (site.root / "update.json").write_text(json.dumps({
        "schema": "federity/update/v1", "base": site.git.resolve("main"), "round": 1, "nonce": None,
        "n_samples": 10, "metrics": {}, "params": {}, "contract": {}}))
    track_sealed(site, contributor, "update")
    poisoned = create_commit(site, contributor, "update", "poisoned", [site.git.resolve("main")], round=1,
                             paths=(MODEL_DVC_FILE, "update.json")).commit
    site.push()
    owner_repo.pull()
    owner_repo.check_updates(owner)
    owner_repo.review(owner, good, approve=True)
    owner_repo.aggregate(owner)
    report = owner_repo.verify()
    assert report.ok, report.failures
    [rejected] = report.rejected
    assert rejected["update"] == poisoned and rejected["branch"] == "updates/r1/poisoned"
    assert any("non-finite values" in reason for reason in rejected["reasons"])


@pytest.mark.parametrize(("branch", "reason"), [
    ("../../.git/config", "is not a model branch name"),
    ("updates/r1/other", "is not a model branch name"),
    ("ghost", "target: it was trained for branch ghost, which is neither a local branch nor origin's"),
])
def test_an_update_naming_a_hostile_or_unknown_target_branch_is_rejected_with_the_reason(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, branch: str, reason: str) -> None:
    site, owner_repo = federation["a"], federation["owner"]
    main = site.git.resolve("main")
    git(site.root, "checkout", "--quiet", "-b", "updates/r1/hostile")
    tensors = read_tensors(site.store.read(site.head()), "base")
    site.weights_path.write_bytes(tensors_to_bytes({k: v + np.float32(0.5) for k, v in tensors.items()}))
    (site.root / "update.json").write_text(json.dumps({
        "schema": "federity/update/v1", "base": main, "round": 1, "nonce": None, "n_samples": 10, "metrics": {},
        "params": {}, "contract": {}, "branch": branch}))
    track_sealed(site, contributor, "update")
    hostile = create_commit(site, contributor, "update", "hostile", [main], round=1,
                            paths=(MODEL_DVC_FILE, "update.json")).commit
    site.push()
    owner_repo.pull()
    [checked] = owner_repo.check_updates(owner)
    assert (checked.id, checked.status) == (hostile, "rejected") and reason in checked.reason
    with pytest.raises(UpdateError, match="0 approved update"):
        owner_repo.aggregate(owner)
    report = owner_repo.verify()
    assert report.ok, report.failures
    assert [entry["update"] for entry in report.rejected] == [hostile]


# -- an update carries only weights and update.json --------------------------------------------------------

def test_an_update_that_changes_code_or_configuration_is_rejected_and_never_aggregated(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, site_b: Wallet,
        tmp_path: Path) -> None:
    """Whoever checks an update out runs the repository's builder and reads its params.yaml: a contributor's
    update that also rewrites those (or adds a module) is refused at review and listed apart by verify."""
    site, owner_repo = federation["a"], federation["owner"]
    main = site.git.resolve("main")
    tensors = read_tensors(site.store.read(site.head()), "base")
    git(site.root, "checkout", "--quiet", "-b", "updates/r1/code")
    site.weights_path.write_bytes(tensors_to_bytes({k: v + np.float32(0.5) for k, v in tensors.items()}))
    (site.root / "update.json").write_text(json.dumps({
        "schema": "federity/update/v1", "base": main, "round": 1, "nonce": None, "n_samples": 10,
        "metrics": {}, "params": {}, "contract": {}}))
    (site.root / "params.yaml").write_text("lr: 100.0\n")
    (site.root / "helper.py").write_text("import os\nos.system('touch /tmp/owned')\n")
    track_sealed(site, contributor, "update")
    smuggler = create_commit(site, contributor, "update", "an update and a little more", [main], round=1,
                             paths=(MODEL_DVC_FILE, "update.json", "params.yaml", "helper.py")).commit
    site.push()
    honest = train_and_push(federation["b"], site_b, _data(tmp_path, "b", 2))
    owner_repo.pull()
    main_before = owner_repo.head()
    with pytest.raises(UpdateError, match=r"tree: an update may change only model.dvc and update.json, but it "
                                          r"changes 'helper.py', 'params.yaml'"):
        owner_repo.review(owner, smuggler, approve=True)
    assert owner_repo.head() == main_before and not (owner_repo.root / "helper.py").exists()
    assert {u.id: u.status for u in owner_repo.updates()}[smuggler] == "rejected"
    owner_repo.review(owner, honest, approve=True)
    result = owner_repo.aggregate(owner)
    assert result.updates == [honest]
    report = owner_repo.verify()
    assert report.ok, report.failures
    [rejected] = report.rejected
    assert rejected["update"] == smuggler and any("'helper.py', 'params.yaml'" in r for r in rejected["reasons"])
