"""The contributor-driven round: train at a site, push, check, review, aggregate — with the real library, git,
DVC and great-expectations. Every bad path leaves main as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from federity.aggregation import get_strategy
from federity.errors import DataContractError, PermissionDeniedError, UpdateError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.commits import create_commit, read_commit
from federity.repo.storage import MODEL_DVC_FILE
from federity.weights import read_tensors, tensors_to_bytes
from tests.conftest import git, snapshot, track_sealed, train_and_push, write_csv


def test_training_commits_a_signed_update_on_its_own_branch(federation: dict[str, Repository],
                                                            contributor: Wallet, tmp_path: Path) -> None:
    site = federation["a"]
    main = site.head()
    result = site.train(contributor, write_csv(tmp_path / "data-a" / "train.csv", 120, seed=1))
    assert site.git.current_branch() == result.branch == f"updates/r1/{contributor.pubkey[:8]}"
    record = read_commit(site, result.update)
    assert record.parents == [main] and record.meta.kind == "update" and record.meta.round == 1
    update_json = json.loads(site.git.show_file(result.update, "update.json"))
    assert update_json["base"] == main and update_json["n_samples"] == 120
    assert set(update_json["metrics"]) == {"loss", "accuracy"} and update_json["metrics"]["accuracy"] > 0.7
    assert site.verify().ok


def test_approved_updates_aggregate_into_an_octopus_commit_with_fedavg_weights(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, site_b: Wallet,
        tmp_path: Path) -> None:
    owner_repo = federation["owner"]
    update_a = train_and_push(federation["a"], contributor, write_csv(tmp_path / "da" / "t.csv", 90, seed=1))
    update_b = train_and_push(federation["b"], site_b, write_csv(tmp_path / "db" / "t.csv", 30, seed=2))
    owner_repo.pull()
    assert {u.id: u.status for u in owner_repo.updates()} == {update_a: "pending", update_b: "pending"}
    owner_repo.check_updates(owner)
    assert {u.status for u in owner_repo.updates()} == {"verified"}
    for update in (update_a, update_b):
        owner_repo.review(owner, update[:10], approve=True)

    main_before = owner_repo.head()
    result = owner_repo.aggregate(owner)
    assert result.created and result.round == 1
    assert result.parents[0] == main_before and sorted(result.parents[1:]) == sorted([update_a, update_b])
    base = read_tensors(owner_repo.store.read(main_before), "base")
    ua, ub = (read_tensors(owner_repo.store.read(u), u) for u in (update_a, update_b))
    new = read_tensors(owner_repo.store.read(result.commit), "aggregate")
    for name, value in new.items():
        np.testing.assert_allclose(value, (90 * ua[name] + 30 * ub[name]) / 120, rtol=1e-5, atol=1e-6)
        assert not np.allclose(value, base[name])
    assert {u.status for u in owner_repo.updates()} == {"aggregated"}
    assert owner_repo.aggregate(owner, round=1).commit == result.commit  # finalising again makes nothing new
    assert git(owner_repo.root, "rev-list", "--count", "main") == str(int(git(owner_repo.root, "rev-list",
                                                                               "--count", main_before)) + 3)
    assert owner_repo.verify().ok
    owner_repo.push()
    federation["a"].checkout("main")
    assert federation["a"].pull() == result.commit


@pytest.mark.parametrize(("strategy", "parameters", "signed"), [
    ("fedmedian", None, None), ("trimmed-mean", {"fraction": 0.3}, '{"fraction":0.3}'), ("fedavg@1", None, None)])
def test_verify_recomputes_each_strategys_aggregate_exactly(federation: dict[str, Repository], owner: Wallet,
                                                          approved_updates: list[str], strategy: str,
                                                          parameters: dict | None, signed: str | None) -> None:
    owner_repo = federation["owner"]
    result = owner_repo.aggregate(owner, strategy=strategy, parameters=parameters)
    meta = read_commit(owner_repo, result.commit).meta
    assert meta.strategy == f"{strategy.partition('@')[0]}@{get_strategy(strategy).version}"
    assert meta.strategy_params == signed
    assert owner_repo.verify().ok
    # the independent verifier in docs/repository-format.md accepts the aggregate's signature, strategy included
    doc = (Path(__file__).parents[2] / "docs" / "repository-format.md").read_text()
    snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
    checked = subprocess.run([sys.executable, "-c", snippet], cwd=owner_repo.root, capture_output=True, text=True)
    assert checked.stdout.strip() == "True", checked.stderr


def _hand_made_aggregate(repo: Repository, wallet: Wallet, parents: list[str], tensors: dict[str, np.ndarray],
                         strategy: str | None) -> str:
    """An aggregate commit, correctly signed by a maintainer, whose weights are whatever it was given."""
    with repo.transaction():
        repo.weights_path.write_bytes(tensors_to_bytes(tensors))
        track_sealed(repo, wallet, "aggregate")
        return create_commit(repo, wallet, "aggregate", "Round 1: by hand", parents, round=1, strategy=strategy,
                             paths=(MODEL_DVC_FILE,)).commit


@pytest.mark.parametrize(("strategy", "reason"), [
    ("fedavg", "its weights are not the fedavg of its 2 update(s) applied to its first parent"),
    (None, "does not name its aggregation strategy"),
    ("sum-of-all", "its weights cannot be recomputed: unknown aggregation strategy 'sum-of-all'"),
])
def test_verify_names_an_aggregate_whose_weights_its_parents_do_not_make(
        federation: dict[str, Repository], owner: Wallet, approved_updates: list[str], strategy: str | None,
        reason: str) -> None:
    owner_repo = federation["owner"]
    update_a, update_b = approved_updates
    # a maintainer signs site A's weights alone as the round's aggregate
    favoured = read_tensors(owner_repo.store.read(update_a), "update a")
    forged = _hand_made_aggregate(owner_repo, owner, [owner_repo.head(), *sorted([update_a, update_b])], favoured,
                                  strategy)
    report = owner_repo.verify()
    assert [(f["commit"], f["check"]) for f in report.failures] == [(forged, "aggregate")]
    assert reason in report.failures[0]["reason"]


def test_verify_names_an_aggregate_of_commits_that_are_not_updates(repo: Repository, owner: Wallet,
                                                                   make_weights) -> None:
    genesis = repo.head()
    repo.commit(owner, make_weights(repo, 0.5), "owner weights")
    forged = _hand_made_aggregate(repo, owner, [repo.head(), genesis],
                                  read_tensors(repo.store.read(repo.head()), "main"), "fedavg")
    main_line, failure = repo.verify().failures
    assert (main_line["commit"], main_line["check"]) == (forged, "main-line")
    assert f"update {genesis[:12]}: it is not an update commit" in main_line["reason"]
    assert failure["commit"] == forged and failure["check"] == "aggregate"
    assert f"must be update commits, and these are not: {genesis[:12]}" in failure["reason"]


def test_a_dataset_failing_the_contract_stops_training_and_names_the_expectation(
        federation: dict[str, Repository], contributor: Wallet, tmp_path: Path) -> None:
    site = federation["a"]
    before = snapshot(site)
    with pytest.raises(DataContractError, match="label") as info:
        site.train(contributor, write_csv(tmp_path / "bad" / "t.csv", 50, seed=1, label_shift=3))
    assert "rows" in str(info.value)
    assert snapshot(site) == before


def test_a_non_member_cannot_make_an_update(federation: dict[str, Repository], stranger: Wallet,
                                            tmp_path: Path) -> None:
    site = federation["a"]
    before = snapshot(site)
    with pytest.raises(PermissionDeniedError, match="is not a member"):
        site.train(stranger, write_csv(tmp_path / "d" / "t.csv", 40, seed=1))
    assert snapshot(site) == before


def _forge_update(site: Repository, wallet: Wallet, tensors: dict[str, np.ndarray]) -> str:
    """An update commit with arbitrary weights, signed properly by ``wallet`` (the checks must catch it)."""
    from federity.repo.commits import create_commit

    site.checkout("main")
    base = site.head()
    site.git.run("checkout", "--quiet", "-b", f"updates/forged-{wallet.pubkey[:6]}")
    site.weights_path.write_bytes(tensors_to_bytes(tensors))
    (site.root / "update.json").write_text(json.dumps({
        "schema": "federity/update/v1", "base": base, "round": 1, "nonce": None, "n_samples": 10,
        "metrics": {}, "params": {}, "contract": {}}))
    track_sealed(site, wallet, "update")
    create_commit(site, wallet, "update", "forged", [base], round=1, paths=("model.dvc", "update.json"))
    site.push()
    return site.head()


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda t: {k: np.full_like(v, np.nan) for k, v in t.items()}, "non-finite values"),
    (lambda t: {k: np.zeros((3, *v.shape), v.dtype) for k, v in t.items()}, "do not fit the model"),
    (lambda t: t, "replay: its weights are identical"),
])
def test_updates_failing_a_check_are_rejected_with_the_reason_and_main_is_unchanged(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, mutate, reason: str) -> None:
    site = federation["a"]
    base = read_tensors(site.store.read(site.head()), "base")
    update = _forge_update(site, contributor, mutate(base))
    owner_repo = federation["owner"]
    owner_repo.pull()
    main = owner_repo.head()
    with pytest.raises(UpdateError, match="recorded as rejected"):
        owner_repo.review(owner, update, approve=True)
    [info] = owner_repo.updates()
    assert info.status == "rejected" and reason in info.reason
    with pytest.raises(UpdateError, match="0 approved update"):
        owner_repo.aggregate(owner)
    assert owner_repo.head() == main


def test_an_update_with_a_signature_by_someone_else_is_rejected(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, stranger: Wallet,
        tmp_path: Path) -> None:
    site = federation["a"]
    update = site.train(contributor, write_csv(tmp_path / "d" / "t.csv", 40, seed=1)).update
    message = site.git.run("log", "-1", "--format=%B", update).replace(contributor.pubkey, stranger.pubkey)
    tree = site.git.run("log", "-1", "--format=%T", update)
    forged = site.git.run("commit-tree", tree, "-p", f"{update}^", "-F", "-", input=message.encode(),
                          env={"GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x", "GIT_COMMITTER_NAME": "x",
                               "GIT_COMMITTER_EMAIL": "x@x"})
    site.git.run("update-ref", "HEAD", forged)
    site.push()
    owner_repo = federation["owner"]
    owner_repo.pull()
    owner_repo.check_updates(owner)
    [info] = owner_repo.updates()
    assert info.status == "rejected"
    assert "signature" in info.reason and "role" in info.reason


def test_replaying_an_aggregated_update_or_one_from_an_earlier_round_is_rejected(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, site_b: Wallet,
        tmp_path: Path) -> None:
    owner_repo = federation["owner"]
    data = write_csv(tmp_path / "d" / "t.csv", 60, seed=1)
    first = train_and_push(federation["a"], contributor, data)
    late = train_and_push(federation["b"], site_b, write_csv(tmp_path / "e" / "t.csv", 60, seed=2))
    owner_repo.pull()
    owner_repo.review(owner, first, approve=True)
    owner_repo.aggregate(owner)
    owner_repo.push()
    # site b's update was trained for round 1, which is closed: stale under the default policy
    with pytest.raises(UpdateError, match="stale: trained for round 1"):
        owner_repo.review(owner, late, approve=True)
    # re-publishing the aggregated update under a new branch is a replay
    owner_repo.git.run("branch", "updates/replayed", first)
    replayed = [u for u in owner_repo.updates() if u.branch == "updates/replayed"]
    assert replayed[0].status == "aggregated"
    with pytest.raises(UpdateError, match="already been aggregated"):
        owner_repo.review(owner, "updates/replayed", approve=True)


def test_only_maintainers_review_and_a_rejection_needs_a_reason(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, tmp_path: Path) -> None:
    update = train_and_push(federation["a"], contributor, write_csv(tmp_path / "d" / "t.csv", 40, seed=1))
    owner_repo = federation["owner"]
    owner_repo.pull()
    with pytest.raises(PermissionDeniedError, match="reviewing updates needs maintainer"):
        owner_repo.review(contributor, update, approve=True)
    with pytest.raises(UpdateError, match="needs a reason"):
        owner_repo.review(owner, update, approve=False)
    owner_repo.review(owner, update, approve=False, reason="metrics look implausible")
    [info] = owner_repo.updates(status="rejected")
    assert info.reason == "metrics look implausible" and info.reviewer == owner.pubkey


def test_an_aggregate_that_overflows_is_refused_and_leaves_main_and_the_reviews_as_they_were(
        federation: dict[str, Repository], owner: Wallet, approved_updates: list[str]) -> None:
    owner_repo = federation["owner"]
    before = snapshot(owner_repo)
    with pytest.raises(UpdateError, match="has values that are not finite float32 numbers"):
        owner_repo.aggregate(owner, strategy="fedavgm", parameters={"server_lr": 1e300})
    assert snapshot(owner_repo) == before
    assert {u.status for u in owner_repo.updates()} == {"approved"}
    assert not any((owner_repo.root / ".dvc" / "tmp").glob("aggregate-*"))
