"""Hostile merge commits: a maintainer-signed merge whose method, parameters or parents are not what a merge
made by ``federity merge`` carries is named by ``verify``, never a traceback."""

from __future__ import annotations

import numpy as np
import pytest

from federity.errors import PermissionDeniedError
from federity.identity import Wallet
from federity.repo import Repository, commits
from federity.repo.commits import create_commit
from federity.repo.storage import MODEL_DVC_FILE
from federity.weights import read_tensors, tensors_to_bytes
from tests.conftest import git, track_sealed


@pytest.fixture
def forked(repo: Repository, owner: Wallet, make_weights) -> list[str]:
    """main and ``variant`` one weights commit apart each from genesis: [main's tip, variant's tip]."""
    repo.branch("variant")
    repo.commit(owner, make_weights(repo, 1.0), "main")
    repo.checkout("variant")
    repo.commit(owner, make_weights(repo, 3.0), "variant")
    repo.checkout("main")
    return [repo.head(), git(repo.root, "rev-parse", "variant")]


def _forged_merge(repo: Repository, wallet: Wallet, parents: list[str], **trailers: str | None) -> str:
    tensors = read_tensors(repo.store.read(repo.head()), "weights")
    with repo.transaction():
        repo.weights_path.write_bytes(tensors_to_bytes({k: v + np.float32(0.25) for k, v in tensors.items()}))
        track_sealed(repo, wallet, "merge")
        return create_commit(repo, wallet, "merge", "forged", parents, paths=(MODEL_DVC_FILE,), **trailers).commit


@pytest.mark.parametrize(("trailers", "reason"), [
    ({"strategy": "average@1", "strategy_params": "{not json"}, "Federity-Strategy-Params trailer is not JSON"),
    ({"strategy": "average@1", "strategy_params": "[1, 2]"}, "is not a JSON object"),
    ({"strategy": "average@1", "strategy_params": "[" * 100_000}, "is not JSON"),
    ({"strategy": "os:system"}, "is not a valid merge method id"),
    ({"strategy": "nosuch@1"}, "nosuch"),
    ({"strategy": "dare@1", "strategy_params": '{"seed":1180591620717411303424}'}, "seed"),
    ({"strategy": "weighted@1", "strategy_params": '{"ours":1.0}'}, "give both weights"),
    ({"strategy": None}, "does not name its merge method"),
])
def test_a_merge_with_hostile_method_or_parameters_is_named_by_verify(
        repo: Repository, owner: Wallet, forked: list[str], trailers: dict[str, str | None], reason: str) -> None:
    forged = _forged_merge(repo, owner, forked, **trailers)
    failures = [f for f in repo.verify().failures if f["check"] == "merge"]
    assert [f["commit"] for f in failures] == [forged]
    assert reason in failures[0]["reason"]


def test_a_merge_with_three_parents_or_one_is_named_by_verify(repo: Repository, owner: Wallet,
                                                              forked: list[str]) -> None:
    repo.branch("third", forked[1])
    _forged_merge(repo, owner, [*forked, repo.log()[-1].commit], strategy="average@1")
    failures = {(f["check"], f["reason"]) for f in repo.verify().failures}
    assert ("main-line", "a merge commit must have exactly two parents") in failures
    assert any(check == "merge" and "has 3" in reason for check, reason in failures)
    git(repo.root, "reset", "--quiet", "--hard", forked[0])
    one = _forged_merge(repo, owner, forked[:1], strategy="average@1")
    assert {(f["commit"], f["check"]) for f in repo.verify().failures} >= {(one, "main-line"), (one, "merge")}


def test_a_merge_signed_by_a_contributor_is_named_by_verify(repo: Repository, owner: Wallet, contributor: Wallet,
                                                            forked: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    repo.add_member(owner, contributor.pubkey, "contributor")
    with pytest.raises(PermissionDeniedError, match="a merge commit needs maintainer"):
        repo.merge(contributor, "variant")
    monkeypatch.setattr(commits, "require_role", lambda *args: None)  # the attacker's own client does not ask
    forged = _forged_merge(repo, contributor, [repo.head(), forked[1]], strategy="average@1")
    assert (forged, "role") in {(f["commit"], f["check"]) for f in repo.verify().failures}
