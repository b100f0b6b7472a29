"""``federity merge`` on real git + DVC: the merged weights, what verify recomputes, and every refusal changing
nothing on either branch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from federity.errors import ConfigError, MergeError, PermissionDeniedError, UnknownPluginError, WorkingTreeError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.commits import create_commit
from federity.repo.storage import MODEL_DVC_FILE
from federity.weights import read_tensors, tensors_to_bytes
from tests.conftest import git, snapshot, track_sealed

Constant = Callable[[float], Path]


@pytest.fixture
def constant(repo: Repository, tmp_path: Path) -> Constant:
    """A weights file of the repository's model with every value ``value``."""

    def write(value: float) -> Path:
        tensors = read_tensors(repo.store.read(repo.head()), "weights")
        path = tmp_path / f"constant-{value}.safetensors"
        path.write_bytes(tensors_to_bytes({k: np.full_like(v, value) for k, v in tensors.items()}))
        return path

    return write


@pytest.fixture
def diverged(repo: Repository, owner: Wallet, constant: Constant) -> dict[str, str]:
    """main and branch ``variant`` forked at a commit of ones: main then commits twos, the variant fours."""
    base = repo.commit(owner, constant(1.0), "base").commit
    repo.branch("variant")
    repo.commit(owner, constant(2.0), "main moves on")
    repo.checkout("variant")
    repo.commit(owner, constant(4.0), "variant fine-tuned")
    repo.checkout("main")
    return {"base": base, "main": repo.head(), "variant": git(repo.root, "rev-parse", "variant")}


def weights(repo: Repository, rev: str = "HEAD") -> dict[str, np.ndarray]:
    return read_tensors(repo.store.read(repo.git.resolve(rev)), rev)


def values(repo: Repository, rev: str = "HEAD") -> set[float]:
    return {float(x) for tensor in weights(repo, rev).values() for x in tensor.reshape(-1)}


def both_branches(repo: Repository) -> dict[str, str]:
    return {**snapshot(repo), "variant": git(repo.root, "rev-parse", "variant")}


def test_the_average_of_one_and_three_is_two_everywhere(repo: Repository, owner: Wallet, constant: Constant) -> None:
    repo.commit(owner, constant(1.0), "ones")
    ours = repo.head()
    repo.branch("variant", repo.log()[-1].commit)  # from genesis
    repo.checkout("variant")
    repo.commit(owner, constant(3.0), "threes")
    theirs = repo.head()
    repo.checkout("main")
    result = repo.merge(owner, "variant")
    assert values(repo) == {2.0}
    assert result.parents == [ours, theirs] and result.strategy == "average@1" and result.strategy_params == {}
    record = repo.log()[0]
    assert record.meta.kind == "merge" and record.meta.strategy == "average@1" and record.meta.strategy_params is None
    assert git(repo.root, "status", "--porcelain") == ""
    sizes = {name: tensor.size for name, tensor in weights(repo).items()}
    for row in repo.diff(ours, "HEAD"):  # what the merge did to main's model: every value 1 → 2
        assert row["status"] == "changed" and row["l2"] == pytest.approx(np.sqrt(sizes[row["name"]]))
    assert {row["l2"] for row in repo.diff(theirs, "HEAD")} == {row["l2"] for row in repo.diff(ours, "HEAD")}
    report = repo.verify()
    assert report.ok, report.failures


def test_task_arithmetic_ties_and_dare_merge_relative_to_the_merge_base(
        repo: Repository, owner: Wallet, diverged: dict[str, str]) -> None:
    result = repo.merge(owner, "variant", strategy="task-arithmetic", parameters={"scale": 0.5})
    assert result.merge_base == diverged["base"]
    assert values(repo) == {1.0 + 0.5 * ((2.0 - 1.0) + (4.0 - 1.0))}
    assert result.strategy_params == {"scale": 0.5} and repo.log()[0].meta.strategy_params == '{"scale":0.5}'
    assert repo.verify().ok
    repo.git.run("reset", "--quiet", "--hard", diverged["main"])
    repo.store.checkout()
    repo.merge(owner, "variant", strategy="ties", parameters={"density": 1.0})
    assert values(repo) == {1.0 + (1.0 + 3.0) / 2}  # signs agree everywhere: the mean of the task vectors
    assert repo.verify().ok


def test_dare_merges_are_reproducible_and_verified(repo: Repository, owner: Wallet,
                                                   diverged: dict[str, str]) -> None:
    first = repo.merge(owner, "variant", strategy="dare", parameters={"seed": 3, "drop_rate": 0.5})
    assert first.strategy_params == {"drop_rate": 0.5, "scale": 1.0, "seed": 3}
    # each task-vector coordinate is dropped or doubled: 1 + {0, 2} + {0, 6}
    assert values(repo) <= {1.0, 3.0, 7.0, 9.0}
    repo.git.run("reset", "--quiet", "--hard", diverged["main"])
    repo.store.checkout()
    again = repo.merge(owner, "variant", strategy="dare", parameters={"seed": 3, "drop_rate": 0.5})
    assert again.weights_sha256 == first.weights_sha256
    assert repo.verify().ok


def test_weighted_merge_with_given_weights_and_its_sample_count_refusal(
        repo: Repository, owner: Wallet, diverged: dict[str, str]) -> None:
    before = both_branches(repo)
    with pytest.raises(MergeError, match="trained on none"):  # no update on either side since the base
        repo.merge(owner, "variant", strategy="weighted")
    assert both_branches(repo) == before
    repo.merge(owner, "variant", strategy="weighted", parameters={"ours": 3.0, "theirs": 1.0})
    assert values(repo) == {(3 * 2.0 + 1 * 4.0) / 4}


def test_an_updates_branch_is_not_merged_it_is_reviewed_and_aggregated(
        federation: dict[str, Repository], owner: Wallet, approved_updates: list[str]) -> None:
    """(A weighted merge by sample counts, of a variant trained in rounds, is in test_branch_rounds.py.)"""
    repo = federation["owner"]
    branch = next(ref.removeprefix("refs/remotes/origin/") for ref in git(
        repo.root, "for-each-ref", "--format=%(refname)", "refs/remotes/origin/updates").split()
        if git(repo.root, "rev-parse", ref) == approved_updates[0])
    before = snapshot(repo)
    with pytest.raises(ConfigError, match="is an update's branch") as refused:
        repo.merge(owner, branch, strategy="weighted")
    assert "federity aggregate" in refused.value.hint
    assert snapshot(repo) == before


def test_a_tampered_merge_is_found_by_verify(repo: Repository, owner: Wallet, diverged: dict[str, str],
                                            constant: Constant) -> None:
    weights_file = constant(5.0)
    with repo.transaction():
        repo.weights_path.write_bytes(weights_file.read_bytes())
        track_sealed(repo, owner, "merge")
        forged = create_commit(repo, owner, "merge", "not really an average", [diverged["main"], diverged["variant"]],
                               strategy="average@1", paths=(MODEL_DVC_FILE,)).commit
    [failure] = repo.verify().failures
    assert (failure["commit"], failure["check"]) == (forged, "merge")
    assert "are not the average@1 merge" in failure["reason"] and diverged["base"][:12] in failure["reason"]


def test_revert_of_a_merge_restores_the_first_parents_weights(repo: Repository, owner: Wallet,
                                                             diverged: dict[str, str]) -> None:
    merge = repo.merge(owner, "variant")
    repo.revert(owner, merge.commit)
    assert values(repo) == {2.0}
    assert repo.log()[0].meta.weights_sha256 == repo.log(diverged["main"])[0].meta.weights_sha256
    assert repo.verify().ok


def test_merging_main_into_a_branch_and_back(repo: Repository, owner: Wallet, diverged: dict[str, str]) -> None:
    repo.checkout("variant")
    repo.merge(owner, "main")  # the variant takes main's progress: (4 + 2) / 2
    assert values(repo) == {3.0}
    repo.checkout("main")
    result = repo.merge(owner, "variant")  # the base is now main's tip: one merge base, no criss-cross
    assert result.merge_base == diverged["main"] and values(repo) == {2.5}
    assert repo.verify().ok
    graph = repo.graph()
    assert "merge" in graph and graph.count("Merge variant into main") == 1


# -- refusals: each leaves both branches as they were ------------------------------------------------------

def test_a_maintainer_is_needed(repo: Repository, owner: Wallet, contributor: Wallet,
                                diverged: dict[str, str]) -> None:
    repo.add_member(owner, contributor.pubkey, "contributor")
    before = both_branches(repo)
    with pytest.raises(PermissionDeniedError, match="a merge commit needs maintainer"):
        repo.merge(contributor, "variant")
    assert both_branches(repo) == before


def test_different_architectures_are_refused_naming_each_tensor(repo: Repository, owner: Wallet,
                                                                 diverged: dict[str, str]) -> None:
    repo.checkout("variant")
    tensors = read_tensors(repo.store.read(repo.head()), "w")
    with repo.transaction():
        repo.weights_path.write_bytes(tensors_to_bytes({"0.weight": np.zeros((3, 4), np.float32),
                                                        "extra": np.zeros(2, np.float32),
                                                        "0.bias": tensors["0.bias"]}))
        track_sealed(repo, owner, "weights")
        create_commit(repo, owner, "weights", "another model", [repo.head()], paths=(MODEL_DVC_FILE,))
    repo.checkout("main")
    before = both_branches(repo)
    with pytest.raises(MergeError, match="different architectures") as raised:
        repo.merge(owner, "variant")
    assert "unexpected tensor 'extra'" in raised.value.message and "'0.weight' is (3, 4)" in raised.value.message
    assert both_branches(repo) == before


def test_different_frameworks_are_refused(repo: Repository, owner: Wallet, diverged: dict[str, str]) -> None:
    repo.checkout("variant")
    config = yaml.safe_load((repo.root / "federity.yaml").read_text())
    (repo.root / "federity.yaml").write_text(yaml.safe_dump({**config, "framework": "tensorflow"}))
    create_commit(repo, owner, "weights", "switch framework", [repo.head()], paths=("federity.yaml",))
    repo.checkout("main")
    before = both_branches(repo)
    with pytest.raises(MergeError, match="a torch model and variant a tensorflow one"):
        repo.merge(owner, "variant")
    assert both_branches(repo) == before


def test_a_non_finite_result_is_refused(repo: Repository, owner: Wallet, diverged: dict[str, str]) -> None:
    before = both_branches(repo)
    with pytest.raises(MergeError, match=r"merge of tensor '0\.bias' has values that are not finite") as raised:
        repo.merge(owner, "variant", strategy="task-arithmetic", parameters={"scale": 1e300})
    assert "smaller scale" in raised.value.hint
    assert both_branches(repo) == before
    assert not list((repo.root / ".dvc" / "tmp").glob("scratch-*"))


def test_a_branch_holding_a_commit_verify_rejects_is_refused(repo: Repository, owner: Wallet,
                                                             diverged: dict[str, str]) -> None:
    repo.checkout("variant")
    (repo.root / "notes.txt").write_text("unsigned\n")
    git(repo.root, "add", "notes.txt")
    git(repo.root, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "by hand")
    repo.checkout("main")
    before = both_branches(repo)
    with pytest.raises(MergeError, match="variant holds commits that `federity verify` rejects") as raised:
        repo.merge(owner, "variant")
    assert "carries no Federity metadata" in raised.value.message
    assert both_branches(repo) == before


def test_nothing_to_merge_unknown_branches_methods_and_unclean_states(repo: Repository, owner: Wallet,
                                                                      diverged: dict[str, str]) -> None:
    before = both_branches(repo)
    repo.merge(owner, "variant")
    with pytest.raises(MergeError, match="already part of main"):
        repo.merge(owner, "variant")
    repo.git.run("reset", "--quiet", "--hard", diverged["main"])
    repo.store.checkout()
    assert both_branches(repo) == before
    with pytest.raises(ConfigError, match="no branch named 'nosuch'"):
        repo.merge(owner, "nosuch")
    with pytest.raises(UnknownPluginError, match="nosuch"):
        repo.merge(owner, "variant", strategy="nosuch")
    with pytest.raises(ConfigError, match="ties@1 takes"):
        repo.merge(owner, "variant", strategy="ties", parameters={"lambda": 1.0})
    (repo.root / "federity.yaml").write_text((repo.root / "federity.yaml").read_text() + "# edit\n")
    with pytest.raises(WorkingTreeError, match="uncommitted changes"):
        repo.merge(owner, "variant")
    git(repo.root, "checkout", "--", "federity.yaml")
    repo.checkout(diverged["main"])
    with pytest.raises(WorkingTreeError, match="detached"):
        repo.merge(owner, "variant")
    repo.checkout("main")
    assert both_branches(repo) == before


def test_a_criss_cross_history_is_refused(repo: Repository, owner: Wallet, diverged: dict[str, str]) -> None:
    main_tip, variant_tip = diverged["main"], diverged["variant"]
    repo.merge(owner, "variant")
    repo.checkout("variant")
    repo.git.run("reset", "--quiet", "--hard", variant_tip)
    repo.store.checkout()
    repo.branch("main-before", main_tip)
    repo.merge(owner, "main-before")  # each side now merged the other's old tip: two best common ancestors
    repo.checkout("main")
    before = both_branches(repo)
    with pytest.raises(MergeError, match="2 best common ancestors"):
        repo.merge(owner, "variant")
    assert both_branches(repo) == before


def test_a_plain_git_merge_is_reported_with_a_hint(repo: Repository, owner: Wallet,
                                                   diverged: dict[str, str]) -> None:
    git(repo.root, "-c", "user.name=x", "-c", "user.email=x@x", "merge", "-q", "--no-edit", "-s", "ours", "variant")
    failures = repo.verify().failures
    assert {f["check"] for f in failures} == {"metadata", "main-line"}
    assert all("federity merge BRANCH" in f["reason"] for f in failures)
