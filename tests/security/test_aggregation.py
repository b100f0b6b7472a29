"""Attacks through an aggregate commit's signed strategy and parameters: whatever a maintainer (or anyone who
signs one) writes there, ``verify`` reports the commit with a reason, never a traceback, and recomputes nothing it
was not asked to."""

from __future__ import annotations

import pytest

from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.commits import create_commit
from federity.repo.storage import MODEL_DVC_FILE
from tests.conftest import track_sealed


@pytest.mark.parametrize(("strategy", "params", "reason"), [
    ("trimmed-mean", "[" * 100_000 + "]" * 100_000, "its Federity-Strategy-Params trailer is not JSON"),
    ("trimmed-mean", "not json", "its Federity-Strategy-Params trailer is not JSON"),
    ("trimmed-mean", "[0.2]", "is not a JSON object"),
    ("trimmed-mean", '{"fraction":"0.2"}', "invalid parameters for aggregation strategy trimmed-mean@1: fraction"),
    ("trimmed-mean", '{"fraction":0.2,"__class__":1}', "__class__: Extra inputs are not permitted"),
    ("fedavg@9", None, "aggregation strategy 'fedavg' has no version 9 installed"),
    ("fedavg@x", None, "'fedavg@x' is not a valid aggregation strategy id"),
])
def test_a_forged_strategy_or_parameter_is_reported_by_verify(federation: dict[str, Repository],
                                                              approved_updates: list[str], owner: Wallet,
                                                              strategy: str, params: str | None, reason: str) -> None:
    owner_repo, updates = federation["owner"], sorted(approved_updates)
    with owner_repo.transaction():
        forged = create_commit(owner_repo, owner, "aggregate", "Round 1: by hand", [owner_repo.head(), *updates],
                               round=1, strategy=strategy, strategy_params=params, paths=(MODEL_DVC_FILE,)).commit
    report = owner_repo.verify()
    assert [(f["commit"], f["check"]) for f in report.failures] == [(forged, "aggregate")]
    assert reason in report.failures[0]["reason"]


def test_an_aggregate_signed_with_other_parameters_than_made_it_is_reported(
        federation: dict[str, Repository], approved_updates: list[str], owner: Wallet) -> None:
    owner_repo, updates = federation["owner"], sorted(approved_updates)
    made = owner_repo.aggregate(owner, strategy="fedavg")  # weights of fedavg, now claimed as a median's
    owner_repo.git.run("reset", "--hard", "--quiet", "HEAD~1")
    owner_repo.store.checkout()
    with owner_repo.transaction():
        owner_repo.weights_path.write_bytes(owner_repo.store.read(made.commit))
        track_sealed(owner_repo, owner, "aggregate")
        forged = create_commit(owner_repo, owner, "aggregate", "Round 1", [owner_repo.head(), *updates], round=1,
                               strategy="trimmed-mean@1", strategy_params='{"fraction":0.4}',
                               paths=(MODEL_DVC_FILE,)).commit
    failures = [f for f in owner_repo.verify().failures if f["commit"] == forged]
    assert [f["check"] for f in failures] == ["aggregate"]
    assert 'its weights are not the trimmed-mean@1 {"fraction":0.4} of its 2 update(s)' in failures[0]["reason"]
