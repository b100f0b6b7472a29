"""Rounds on a branch other than main: a group of sites fine-tunes a variant (train, review, aggregate on it, as
rounds on main do), and a maintainer merges it back. Each update is aggregated only on the branch it was trained
for. Real git, DVC and great-expectations, as in test_rounds.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from federity.errors import ConfigError, MergeError, UpdateError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.checks import update_problems
from federity.repo.commits import create_commit
from federity.repo.history import History
from federity.repo.storage import MODEL_DVC_FILE
from federity.repo.track import evaluate_commit
from federity.repo.updates import check_updates, find_update
from federity.rounds import aggregate_round, approve_verified, collect_updates, pin_round, push_round
from federity.site import train_at_site
from federity.tracking import DEFAULT_DB
from federity.weights import read_tensors
from tests.conftest import git, snapshot, train_and_push, write_csv

VARIANT = "pediatric"


@pytest.fixture
def variant(federation: dict[str, Repository]) -> Repository:
    """The owner's repository with branch ``pediatric`` made from main's head and pushed; main checked out."""
    owner = federation["owner"]
    owner.branch(VARIANT)
    owner.checkout(VARIANT)
    owner.push()
    owner.checkout("main")
    return owner


def _weights(repo: Repository, rev: str) -> dict[str, np.ndarray]:
    return read_tensors(repo.store.read(repo.git.resolve(rev)), rev)


def train_for_variant(site: Repository, wallet: Wallet, data: Path) -> str:
    site.pull()
    result = site.train(wallet, data, branch=VARIANT)
    assert result.target == VARIANT and result.branch == f"updates/{VARIANT}/r1/{wallet.pubkey[:8]}"
    site.push()
    site.checkout("main")
    return result.update


def test_a_variant_is_trained_reviewed_aggregated_merged_back_weighted_by_its_samples_and_tracked(
        federation: dict[str, Repository], variant: Repository, owner: Wallet, contributor: Wallet,
        site_b: Wallet, tmp_path: Path, seed_mlflow_db: Callable[[Path], Path]) -> None:
    for_variant = train_for_variant(federation["a"], contributor, write_csv(tmp_path / "a" / "t.csv", 50, seed=1))
    for_main = train_and_push(federation["b"], site_b, write_csv(tmp_path / "b" / "t.csv", 70, seed=2))
    variant.pull()
    assert json.loads(variant.git.show_file(for_variant, "update.json"))["branch"] == VARIANT
    assert "branch" not in json.loads(variant.git.show_file(for_main, "update.json"))  # main's stay as they were
    listed = {u.id: u.to_json() for u in variant.updates()}
    assert {u: listed[u]["target"] for u in (for_variant, for_main)} == {for_variant: VARIANT, for_main: "main"}
    for update in (for_variant, for_main):
        variant.review(owner, update, approve=True)

    with pytest.raises(UpdateError, match="not approved for main"):
        variant.aggregate(owner, updates=[for_variant])
    on_main = variant.aggregate(owner)
    assert on_main.updates == [for_main]
    variant.checkout(VARIANT)
    on_variant = variant.aggregate(owner)
    assert on_variant.updates == [for_variant] and on_variant.round == 1
    assert variant.log()[0].message.startswith(f"Round 1 on {VARIANT}:")
    assert {u.id: u.status for u in variant.updates()} == {for_variant: "aggregated", for_main: "aggregated"}
    assert variant.aggregate(owner, round=1).commit == on_variant.commit  # idempotent on the variant too

    variant.checkout("main")
    ours, theirs = _weights(variant, "main"), _weights(variant, VARIANT)
    merge = variant.merge(owner, VARIANT, strategy="weighted")
    assert merge.parents == [on_main.commit, on_variant.commit]
    assert merge.strategy_params == {"ours": 70.0, "theirs": 50.0}  # each side's samples since the fork
    merged = _weights(variant, "HEAD")
    for name in merged:
        expected = (70 * ours[name].astype(np.float64) + 50 * theirs[name].astype(np.float64)) / 120
        # the method sums in its own order: equal to the float64 weighted mean within float32 rounding (verify
        # recomputes the merge bit for bit)
        np.testing.assert_allclose(merged[name], expected, rtol=1e-6, atol=1e-7)
    report = variant.verify()
    assert report.ok, report.failures
    assert f"Round 1 on {VARIANT}" in variant.graph()

    seed_mlflow_db(variant.root)
    validation = write_csv(tmp_path / "validation" / "v.csv", 60, seed=9)
    run = MlflowClient(tracking_uri=f"sqlite:///{variant.root / DEFAULT_DB}").get_run(
        variant.track(merge.commit, validation=validation))
    expected = evaluate_commit(variant, merge.commit, validation)
    assert run.data.tags["federity.kind"] == "merge" and run.data.params["strategy"] == "weighted@1"
    assert {k: run.data.metrics[f"global.{k}"] for k in expected} == pytest.approx(expected)
    assert 0.0 <= expected["accuracy"] <= 1.0 and expected["loss"] > 0


def test_an_update_is_accepted_only_on_the_branch_it_was_trained_for(
        federation: dict[str, Repository], variant: Repository, owner: Wallet, contributor: Wallet,
        tmp_path: Path) -> None:
    update = train_for_variant(federation["a"], contributor, write_csv(tmp_path / "a" / "t.csv", 40, seed=3))
    variant.pull()
    history = History.load(variant)
    info = find_update(variant, update, history)
    assert update_problems(history, info, history.main_tip(), branch="main") == [
        f"target: it was trained for branch {VARIANT}, so it may only be aggregated there, not on main"]
    assert update_problems(history, info, history.branch_tip(VARIANT), branch=VARIANT) == []

    # an owner who aggregates it on main by hand signs a commit verify rejects
    variant.review(owner, update, approve=True)
    with variant.transaction():
        forged = create_commit(variant, owner, "aggregate", "by hand", [variant.head(), update],
                               round=1, strategy="fedavg@1", paths=(MODEL_DVC_FILE,)).commit
    failures = {(f["commit"], f["check"], f["reason"]) for f in variant.verify().failures}
    assert (forged, "main-line", f"it aggregates updates trained for {VARIANT} on main") in failures


def test_an_unapproved_aggregate_on_a_variant_is_named_by_verify_and_refused_by_merge(
        federation: dict[str, Repository], variant: Repository, owner: Wallet, contributor: Wallet,
        tmp_path: Path) -> None:
    update = train_for_variant(federation["a"], contributor, write_csv(tmp_path / "a" / "t.csv", 40, seed=4))
    variant.pull()
    variant.checkout(VARIANT)
    with variant.transaction():  # no review at all: aggregated by hand off main
        forged = create_commit(variant, owner, "aggregate", "unreviewed", [variant.head(), update],
                               round=1, strategy="fedavg@1", paths=(MODEL_DVC_FILE,)).commit
    variant.checkout("main")
    reasons = [f["reason"] for f in variant.verify().failures if (f["commit"], f["check"]) == (forged, "aggregate")]
    assert f"update {update[:12]}: it was aggregated without approval (no valid review)" in reasons
    before = snapshot(variant)
    with pytest.raises(MergeError, match="without approval"):
        variant.merge(owner, VARIANT)
    assert snapshot(variant) == before


def test_a_round_on_a_variant_pins_its_head_trains_at_the_sites_and_aggregates_there(
        federation: dict[str, Repository], variant: Repository, owner: Wallet, contributor: Wallet,
        site_b: Wallet, tmp_path: Path) -> None:
    main_before = variant.git.resolve("main")
    pin = pin_round(variant, VARIANT)
    assert (pin.branch, pin.base, pin.round) == (VARIANT, variant.git.resolve(VARIANT), 1)
    for name, wallet, n in (("a", contributor, 30), ("b", site_b, 40)):
        result = train_at_site(pin.remote, tmp_path / f"ws-{name}", wallet, write_csv(tmp_path / name / "t.csv", n,
                                                                                     seed=n),
                               base=pin.base, nonce=pin.nonce, branch=pin.branch)
        assert result["round"] == 1
    updates = collect_updates(variant, pin)
    check_updates(variant, owner, updates, nonce=pin.nonce)
    assert sorted(u.status for u in updates) == ["verified", "verified"]
    assert {u.target for u in updates} == {VARIANT}
    variant.checkout("main")  # finalising checks the round's branch out again
    result = aggregate_round(variant, owner, pin, approve_verified(variant, owner, updates), quorum=2)
    push_round(variant, pin)
    assert variant.git.current_branch() == VARIANT
    assert git(variant.root, "rev-parse", f"origin/{VARIANT}") == result["commit"]  # pushed
    assert variant.git.resolve("main") == main_before
    assert variant.verify().ok


def test_training_for_a_branch_refuses_what_could_never_be_aggregated(
        federation: dict[str, Repository], variant: Repository, owner: Wallet, contributor: Wallet,
        make_weights, tmp_path: Path) -> None:
    variant.checkout(VARIANT)
    variant.commit(owner, make_weights(variant, 2.0), "the variant moves on")
    variant.push()
    site = federation["a"]
    site.pull()
    data = write_csv(tmp_path / "a" / "t.csv", 20, seed=5)
    before = snapshot(site)
    with pytest.raises(ConfigError, match="no branch named 'nowhere'"):
        site.train(contributor, data, branch="nowhere")
    with pytest.raises(ConfigError, match="is an update's branch"):
        site.train(contributor, data, branch="updates/r1/x")
    with pytest.raises(ConfigError, match="not a branch a model lives on"):
        site.train(contributor, data, branch="../main")
    off_main = git(site.root, "rev-parse", f"origin/{VARIANT}")
    with pytest.raises(ConfigError, match=f"commit {off_main[:12]} is not on main's line"):
        site.train(contributor, data, base=off_main)
    assert snapshot(site) == before

