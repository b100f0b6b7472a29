"""Branch names another party gives (a round's parameters, an update's target): refused before git sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from federity.errors import ConfigError
from federity.identity import Wallet
from federity.repo import Repository
from federity.rounds import pin_round
from federity.site import train_at_site
from tests.conftest import snapshot, write_csv


@pytest.mark.parametrize("branch", ["--orphan=x", "main\n", "../../etc", "updates/r1/x"])
def test_a_site_refuses_a_round_branch_that_is_no_model_branch_before_git_sees_it(
        federation: dict[str, Repository], contributor: Wallet, tmp_path: Path, branch: str) -> None:
    remote = str(tmp_path / "remote.git")
    workspace = tmp_path / "workspace"
    with pytest.raises(ConfigError, match="branch"):
        train_at_site(remote, workspace, contributor, write_csv(tmp_path / "d" / "t.csv", 20, seed=6),
                      base=federation["owner"].head(), nonce="n", branch=branch)
    assert not workspace.exists()  # nothing cloned, nothing checked out


@pytest.mark.parametrize("branch", ["--orphan=x", "-b", "main\n", "a..b", "updates/r1/x"])
def test_a_round_or_a_merge_refuses_a_branch_that_is_no_model_branch_and_changes_nothing(
        repo: Repository, owner: Wallet, branch: str) -> None:
    before = snapshot(repo)
    with pytest.raises(ConfigError, match="branch"):
        pin_round(repo, branch)
    with pytest.raises(ConfigError, match="branch"):
        repo.merge(owner, branch)
    assert snapshot(repo) == before
