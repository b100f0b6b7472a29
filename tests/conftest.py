"""Shared fixtures: wallets and a repository with a local remote, built with the real library (git + DVC)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.params import site_dataset
from federity.repo.privacy import sealing_for
from federity.training import build_with_tensors
from federity.weights import get_framework, read_tensors, tensors_to_bytes
from tests.unit.chain.rpc_server import RpcServer


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FEDERITY_WALLET", raising=False)


@pytest.fixture
def own_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An embedded ledger directory of the test's own (``FEDERITY_LEDGER``)."""
    path = tmp_path / "ledger"
    monkeypatch.setenv("FEDERITY_LEDGER", str(path))
    return path


@pytest.fixture
def owner(tmp_path: Path) -> Wallet:
    return Wallet.create(tmp_path / "wallets" / "owner.json")


@pytest.fixture
def contributor(tmp_path: Path) -> Wallet:
    return Wallet.create(tmp_path / "wallets" / "contributor.json")


@pytest.fixture
def stranger(tmp_path: Path) -> Wallet:
    return Wallet.create(tmp_path / "wallets" / "stranger.json")


@pytest.fixture
def repo(tmp_path: Path, owner: Wallet) -> Repository:
    """A logistic-regression repository owned by ``owner``, pushed to a local remote."""
    created, _ = Repository.init(
        tmp_path / "repo", owner, name="test", framework="torch", model="logistic-regression",
        model_args=["in_features=4"], remote=str(tmp_path / "remote.git"),
    )
    return created


@pytest.fixture
def public_repo(tmp_path: Path, owner: Wallet) -> Repository:
    """The ``repo`` fixture's repository, made public (``init --public``): for attacks that forge weights by hand,
    which in a private repository a non-member could not even read."""
    created, _ = Repository.init(
        tmp_path / "repo", owner, name="test", framework="torch", model="logistic-regression",
        model_args=["in_features=4"], remote=str(tmp_path / "remote.git"), public=True,
    )
    return created


@pytest.fixture
def make_weights(tmp_path: Path) -> Callable[[Repository, float], Path]:
    """Write a safetensors file: the repository's checked-out weights shifted by ``delta``."""
    counter = iter(range(1_000_000))

    def make(repo: Repository, delta: float = 0.5) -> Path:
        tensors = read_tensors(repo.store.read(repo.head()), "weights")
        path = tmp_path / f"weights-{next(counter)}.safetensors"
        path.write_bytes(tensors_to_bytes({k: v + np.asarray(delta, v.dtype) for k, v in tensors.items()}))
        return path

    return make


def track_sealed(repo: Repository, wallet: Wallet, kind: str) -> None:
    """``dvc add`` of ``model/`` as an operation of ``kind`` by ``wallet`` would track it, sealed as a private
    repository's are: for commits forged by hand, as a member bypassing the library would make them."""
    repo.store.track(sealing=sealing_for(repo, wallet, kind, repo.config(repo.head())))


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def snapshot(repo: Repository, remote: Path | None = None) -> dict[str, str]:
    """Everything a failed operation must leave as it was: refs, index/worktree state, weights, config, remote."""
    state = {
        "refs": git(repo.root, "for-each-ref", "--format=%(refname) %(objectname)"),
        "head": git(repo.root, "rev-parse", "HEAD"),
        "status": git(repo.root, "status", "--porcelain"),
        "weights": repo.weights_path.read_bytes().hex(),
        "config": (repo.root / "federity.yaml").read_text(),
    }
    if remote is not None:
        state["remote_refs"] = git(remote, "for-each-ref", "--format=%(refname) %(objectname)")
    return state


FEATURES = ["f0", "f1", "f2", "f3"]


def write_csv(path: Path, n: int, seed: int, label_shift: int = 0) -> Path:
    """A separable 4-feature binary dataset for the ``repo`` fixture's model (``label_shift`` breaks the contract)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    table = pd.DataFrame(x, columns=FEATURES)
    table["label"] = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + label_shift
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def write_canary_csv(path: Path, value: str) -> Path:
    """:func:`write_csv` (80 rows, seed 1) with ``value`` as one feature value: a canary only this site holds."""
    table = pd.read_csv(write_csv(path, 80, seed=1))
    table.loc[3, "f2"] = float(value)
    table.to_csv(path, index=False)
    return path


def canary_leaks(site: Path, root: Path, needles: list[bytes], git_dirs: list[Path],
                 blobs: dict[str, bytes] | None = None) -> list[str]:
    """Where any of ``needles`` appears outside the directory ``site``: in a file under ``root``, in the objects of
    a git repository of ``git_dirs``, or in a named blob (an S3 object, a database dump)."""
    leaks = []
    for path in root.rglob("*"):
        if path.is_file() and site not in path.parents:
            data = path.read_bytes()
            leaks += [f"{path}: {_shown(n)}" for n in needles if n in data]
    for git_dir in git_dirs:
        objects = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=git_dir,
                                 capture_output=True).stdout
        leaks += [f"git objects of {git_dir}: {_shown(n)}" for n in needles if n in objects]
    for name, body in (blobs or {}).items():
        leaks += [f"{name}: {_shown(n)}" for n in needles if n in body]
    return leaks


def _shown(needle: bytes) -> str:
    return needle.decode(errors="backslashreplace")


@pytest.fixture
def site_b(tmp_path: Path) -> Wallet:
    return Wallet.create(tmp_path / "wallets" / "site-b.json")


@pytest.fixture
def federation(tmp_path: Path, repo: Repository, owner: Wallet, contributor: Wallet, site_b: Wallet
               ) -> dict[str, Repository]:
    """The owner's repository with two contributors, each with a clone of it."""
    repo.add_member(owner, contributor.pubkey, "contributor")
    repo.add_member(owner, site_b.pubkey, "contributor")
    repo.push()
    remote = str(tmp_path / "remote.git")
    return {"owner": repo, "a": Repository.clone(remote, tmp_path / "site-a", wallet=contributor),
            "b": Repository.clone(remote, tmp_path / "site-b", wallet=site_b)}


def train_and_push(site: Repository, wallet: Wallet, data: Path) -> str:
    """Train an update on main at ``site`` with ``data`` and publish it; returns the update's commit id."""
    if site.git.current_branch() != "main":
        site.checkout("main")
    site.pull()
    result = site.train(wallet, data)
    site.push()
    return result.update


@pytest.fixture
def approved_updates(federation: dict[str, Repository], owner: Wallet, contributor: Wallet, site_b: Wallet,
                     tmp_path: Path) -> list[str]:
    """Two updates for round 1, approved in the owner's repository: site A's (50 samples), then site B's (70)."""
    updates = [train_and_push(federation["a"], contributor, write_csv(tmp_path / "da" / "t.csv", 50, seed=1)),
               train_and_push(federation["b"], site_b, write_csv(tmp_path / "db" / "t.csv", 70, seed=2))]
    federation["owner"].pull()
    for update in updates:
        federation["owner"].review(owner, update, approve=True)
    return updates


@pytest.fixture
def rpc_server(tmp_path: Path) -> Iterator[RpcServer]:
    """A JSON-RPC server on localhost backed by an embedded ledger in ``tmp_path / "cluster"``."""
    server = RpcServer(tmp_path / "cluster")
    yield server
    server.close()


def full_round(tmp_path: Path, wallets: tuple[Wallet, Wallet, Wallet], framework: str, model: str,
               args: list[str], make_data: Callable[[Path, int], Path], *, tokenizer: Path | None = None,
               params: dict[str, Any] | None = None) -> Repository:
    """Init a repository of ``model``, two sites train on ``make_data(path, site)`` and push, the owner approves
    both and aggregates; the aggregate is the sample-weighted mean of the updates (integer counters rounded), and
    verify is ok. Returns the owner's repository."""
    owner, contributor, site_b = wallets
    repo, _ = Repository.init(tmp_path / "repo", owner, name="zoo", framework=framework, model=model,
                              model_args=args, remote=str(tmp_path / "remote.git"), tokenizer=tokenizer,
                              params=params or {"lr": 0.05, "epochs": 2, "batch_size": 16, "seed": 0})
    for wallet in (contributor, site_b):
        repo.add_member(owner, wallet.pubkey, "contributor")
    repo.push()
    sites = [Repository.clone(str(tmp_path / "remote.git"), tmp_path / f"site-{i}", wallet=wallet)
             for i, wallet in enumerate((contributor, site_b))]
    updates = [train_and_push(site, wallet, make_data(tmp_path / f"data-{i}" / "train.npz", i))
               for i, (site, wallet) in enumerate(zip(sites, (contributor, site_b), strict=True))]
    repo.pull()
    for update in updates:
        repo.review(owner, update, approve=True)
    base = read_tensors(repo.store.read(repo.head()), "base")
    result = repo.aggregate(owner)

    counts = [site_dataset(repo, repo.head(), repo.config(), make_data(tmp_path / f"again-{i}" / "train.npz", i)
                           ).n_samples for i in range(2)]
    trained = [read_tensors(repo.store.read(u), u) for u in updates]
    aggregate = read_tensors(repo.store.read(result.commit), "aggregate")
    assert list(aggregate) == list(base)
    for name, value in aggregate.items():
        deltas = sum(n * (t[name].astype(np.float64) - base[name]) for n, t in zip(counts, trained, strict=True))
        expected = base[name] + deltas / sum(counts)
        if np.issubdtype(value.dtype, np.integer):  # BatchNorm's step counters: the mean, rounded
            np.testing.assert_array_equal(value, np.rint(expected))
        else:
            np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)
        if any(not np.array_equal(t[name], base[name]) for t in trained):
            assert not np.array_equal(value, base[name]), name
    assert repo.verify().ok
    # a fresh clone pulls the aggregate bit for bit, and its model gives the same outputs
    repo.push()
    fresh = Repository.clone(str(tmp_path / "remote.git"), tmp_path / "fresh", wallet=contributor)
    assert fresh.head() == result.commit
    assert fresh.store.read(fresh.head()) == repo.store.read(result.commit)
    assert fresh.weights_path.read_bytes() == repo.weights_path.read_bytes()  # the same sealed object
    adapter = get_framework(framework)
    sample = site_dataset(repo, repo.head(), repo.config(), make_data(tmp_path / "sample" / "train.npz", 0))
    ours, theirs = (adapter.predict(build_with_tensors(r.config(), r.root, read_tensors(r.store.read(r.head()),
                                                                                         "weights")),
                                    sample.features[:4]) for r in (repo, fresh))
    np.testing.assert_array_equal(ours, theirs)
    return repo
