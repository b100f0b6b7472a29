"""Attacks through ``module:function`` model builders and dataset loaders: only a module file the repository
tracks at the checked-out commit runs, loaded from that file under a private name; everything else is refused
before any of its code runs (each attack would write a marker file; it must not exist afterwards)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from federity.data import load_dataset
from federity.errors import ConfigError
from federity.identity import Wallet
from federity.models import build_model
from federity.repo import Repository
from tests.conftest import git, snapshot, write_csv


def _attack(marker: Path) -> str:
    """Python source whose import (and whose functions) write ``marker``."""
    return (f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n\n"
            f"def build(**kwargs):\n    Path({str(marker)!r}).write_text('ran')\n\n"
            f"def __evil__(**kwargs):\n    Path({str(marker)!r}).write_text('ran')\n")


def _commit(repo: Repository, *paths: str) -> None:
    git(repo.root, "add", "--", *paths)
    git(repo.root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "--no-verify", "-m", "code")


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


def _refused(repo: Repository, spec: str, match: str, marker: Path) -> None:
    """Both the model builder and the dataset loader named ``spec`` are refused, and nothing ran."""
    before = snapshot(repo)
    path_before = list(sys.path)
    with pytest.raises(ConfigError, match=match):
        build_model(spec, "torch", {}, repo.root)
    data = write_csv(repo.root.parent / "site" / "d.csv", 8, seed=0)
    with pytest.raises(ConfigError, match=match):
        load_dataset(data, loader=spec, repo_root=repo.root)
    assert not marker.exists()
    assert sys.path == path_before
    assert snapshot(repo) == before


def test_os_system_is_refused_and_runs_no_command(repo: Repository, marker: Path) -> None:
    before = snapshot(repo)
    with pytest.raises(ConfigError, match="named like the installed module 'os'"):
        build_model("os:system", "torch", {"command": f"touch {marker}"}, repo.root)
    with pytest.raises(ConfigError, match="named like the installed module 'os'"):
        load_dataset(repo.root, loader="os:system", repo_root=repo.root)
    assert not marker.exists() and snapshot(repo) == before


def test_an_installed_function_such_as_json_loads_is_refused(repo: Repository, marker: Path) -> None:
    _refused(repo, "json:loads", "named like the installed module 'json'", marker)
    _refused(repo, "federity.git:Git", "named like the installed module 'federity'", marker)


def test_a_repository_module_shadowing_an_installed_name_is_refused_and_not_imported(
        repo: Repository, marker: Path) -> None:
    (repo.root / "json.py").write_text(_attack(marker))
    _commit(repo, "json.py")
    _refused(repo, "json:build", "named like the installed module 'json'", marker)
    assert sys.modules["json"] is json and json.__file__ != str(repo.root / "json.py")


@pytest.mark.parametrize("spec", ["..outside.evil:build", "../outside/evil:build", "outside/../../evil:build",
                                  "/tmp/evil:build", "evil.py:build", "evil:build:x", ":build"])
def test_a_module_outside_the_repository_or_not_a_dotted_name_is_refused(
        repo: Repository, marker: Path, tmp_path: Path, spec: str) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "evil.py").write_text(_attack(marker))
    (tmp_path / "evil.py").write_text(_attack(marker))
    _refused(repo, spec, "(not written module:function|does not name a module stored in the repository|"
                         "needs evil/py.py, which is not in the repository)", marker)


def test_a_tracked_symlink_to_a_module_outside_is_refused(repo: Repository, marker: Path, tmp_path: Path) -> None:
    (tmp_path / "evil.py").write_text(_attack(marker))
    (repo.root / "net.py").symlink_to(tmp_path / "evil.py")
    _commit(repo, "net.py")
    assert git(repo.root, "ls-tree", "HEAD", "net.py").startswith("120000")
    _refused(repo, "net:build", "net.py .* passes through a symlink", marker)


def test_a_module_under_a_symlinked_directory_is_refused(repo: Repository, marker: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "net.py").write_text(_attack(marker))
    (repo.root / "models").symlink_to(tmp_path / "outside")
    _commit(repo, "models")
    _refused(repo, "models.net:build", "models/net.py .* passes through a symlink", marker)


def test_an_untracked_module_file_is_refused(repo: Repository, marker: Path) -> None:
    (repo.root / "evil.py").write_text(_attack(marker))
    _refused(repo, "evil:build", "needs evil.py, which is not a file tracked by git at the checked-out commit",
             marker)


def test_a_tracked_module_changed_in_the_working_tree_is_refused(repo: Repository, marker: Path) -> None:
    (repo.root / "net.py").write_text("def build(**kwargs):\n    return None\n")
    _commit(repo, "net.py")
    (repo.root / "net.py").write_text(_attack(marker))
    with pytest.raises(ConfigError, match=r"net\.py \(the model builder\) differs from its committed version"):
        build_model("net:build", "torch", {}, repo.root)
    assert not marker.exists()


def test_a_dunder_function_is_refused_before_the_module_is_imported(repo: Repository, marker: Path) -> None:
    (repo.root / "net.py").write_text(_attack(marker))
    _commit(repo, "net.py")
    for spec in ("net:__evil__", "net:__init__", "net:__builtins__", "net:class", "net:"):
        _refused(repo, spec, "not a plain identifier", marker)


def test_a_tracked_module_is_loaded_from_its_file_under_a_private_name(repo: Repository) -> None:
    (repo.root / "models").mkdir()
    (repo.root / "models" / "net.py").write_text(
        "from torch import nn\n\ndef build(width=3):\n    return nn.Linear(width, 2)\n")
    _commit(repo, "models/net.py")
    path_before = list(sys.path)
    model = build_model("models.net:build", "torch", {"width": 5}, repo.root)
    assert tuple(model.weight.shape) == (2, 5)
    assert sys.path == path_before and "models" not in sys.modules and "models.net" not in sys.modules
    assert any(getattr(m, "__file__", None) == str(repo.root / "models" / "net.py") for m in list(sys.modules.values()))


def test_clone_and_train_name_the_repository_code_on_stderr_and_keep_json_stdout(
        tmp_path: Path, owner: Wallet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynet.py").write_text(
        "from torch import nn\n\ndef net(in_features=4):\n    return nn.Linear(in_features, 2)\n")
    Repository.init(tmp_path / "origin", owner, name="n", framework="torch", model="mynet:net",
                    model_args=["in_features=4"], remote=str(tmp_path / "remote.git"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}

    def federity(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "federity", *args], cwd=cwd, capture_output=True, text=True,
                              check=False, env=env)

    cloned = federity("--wallet", str(owner.path), "--json", "clone", str(tmp_path / "remote.git"), "site",
                      cwd=tmp_path)
    assert cloned.returncode == 0, cloned.stderr
    assert set(json.loads(cloned.stdout)) == {"repo", "commit", "genesis"}
    assert "this repository runs its own code: mynet.py (model builder)" in cloned.stderr
    data = write_csv(tmp_path / "data" / "train.csv", 40, seed=2)
    trained = federity("--wallet", str(owner.path), "--json", "train", "--data", str(data), "--epochs", "1",
                       cwd=tmp_path / "site")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["n_samples"] == 40
    assert "this repository runs its own code: mynet.py (model builder)" in trained.stderr


def test_repository_code_names_each_module_a_config_runs_and_the_refused_ones() -> None:
    from federity.builders import code_notice, repository_code
    from federity.config import RepoConfig, Role

    config = RepoConfig(name="n", framework="torch", model={"id": "models.net:build", "args": {}},
                        members={"1" * 32: Role.OWNER}, task={"label": "label", "loader": "os:system"})
    entries = repository_code(config)
    assert [(e.role, e.path, e.problem is None) for e in entries] == [
        ("model builder", "models/net.py", True), ("dataset loader", None, False)]
    notice = code_notice(entries)
    assert notice is not None and "this repository runs its own code: models/net.py (model builder)" in notice
    assert "federity.yaml names code Federity refuses to run: 'os:system' (dataset loader" in notice
    zoo = RepoConfig(name="n", framework="torch", model={"id": "mlp", "args": {}}, members={})
    assert repository_code(zoo) == [] and code_notice([]) is None
