"""Objectives other than classification: an autoencoder trains on unlabeled rows (reconstruction), in both
frameworks, through a full round; its contract asks for no label; proofs are refused where they prove nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federity.errors import ConfigError
from federity.identity import Wallet
from federity.proofs.policy import ProofPolicy
from federity.repo import Repository
from federity.repo.params import site_dataset
from federity.training import evaluate
from federity.weights import read_tensors
from tests.conftest import full_round


def _rows(path: Path, site: int) -> Path:
    """Unlabeled rows on a 2-dimensional plane in 6 features: an autoencoder with a code of 2 can rebuild them."""
    rng = np.random.default_rng(20 + site)
    plane = rng.normal(size=(96 + 32 * site, 2)) @ np.random.default_rng(0).normal(size=(2, 6))
    path = path.with_suffix(".csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(plane, columns=[f"f{i}" for i in range(6)]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_an_autoencoder_learns_to_rebuild_unlabeled_rows_in_a_full_round(tmp_path: Path, owner: Wallet,
                                                                         contributor: Wallet, site_b: Wallet,
                                                                         framework: str) -> None:
    repo = full_round(tmp_path, (owner, contributor, site_b), framework, "autoencoder",
                      ["in_features=6", "hidden=16", "code=2"], _rows,
                      params={"lr": 0.01, "epochs": 20, "batch_size": 16, "seed": 0, "optimizer": "adam"})
    config = repo.config()
    assert config.task["loss"] == "reconstruction" and config.task["metrics"] == []
    data = site_dataset(repo, repo.head(), config, _rows(tmp_path / "held-out" / "rows", 2))
    assert list(data.table.columns) == [f"f{i}" for i in range(6)]  # no label anywhere
    genesis = repo.log()[-1].commit
    before, after = (evaluate(config, repo.root, read_tensors(repo.store.read(c), c), data)
                     for c in (genesis, repo.head()))
    assert set(after) == {"loss"} and after["loss"] < 0.5 * before["loss"]


def test_an_autoencoders_contract_asks_for_no_label_but_for_its_columns(tmp_path: Path, owner: Wallet) -> None:
    repo, _ = Repository.init(tmp_path / "repo", owner, name="ae", framework="torch", model="autoencoder",
                              model_args=["in_features=6"])
    suite = (repo.root / "contract" / "suite.json").read_text()
    assert '"label"' not in suite and '"expect_table_column_count_to_equal"' in suite and '"value": 6' in suite


def test_proofs_are_refused_for_a_model_that_is_not_a_classifier(tmp_path: Path, owner: Wallet) -> None:
    with pytest.raises(ConfigError, match="proofs of training prove steps of a classifier's head; model "
                                          "'autoencoder' trains reconstruction"):
        Repository.init(tmp_path / "repo", owner, name="ae", framework="torch", model="autoencoder",
                        model_args=["in_features=6"], proofs=ProofPolicy())
    assert not (tmp_path / "repo").exists()


def test_an_unlabeled_npz_needs_only_its_features(tmp_path: Path) -> None:
    from federity.data import load_dataset

    np.savez(tmp_path / "rows.npz", x=np.ones((5, 3)))
    data = load_dataset(tmp_path / "rows.npz", label=None)
    assert data.features.shape == (5, 3) and data.labels.tolist() == [0] * 5


def _mixture(path: Path, site: int) -> Path:
    """Unlabeled rows from two clusters, at (2, 2) and (-2, -2), 0.3 apart at most."""
    rng = np.random.default_rng(40 + site)
    centres = np.where(rng.random((128, 1)) < 0.5, 2.0, -2.0)
    path = path.with_suffix(".csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(centres + rng.normal(0, 0.1, (128, 2)), columns=["f0", "f1"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_gan_trains_both_groups_each_on_its_own_loss_in_a_full_round(tmp_path: Path, owner: Wallet,
                                                                       contributor: Wallet, site_b: Wallet,
                                                                       framework: str) -> None:
    repo = full_round(tmp_path, (owner, contributor, site_b), framework, "gan",
                      ["in_features=2", "noise=4", "hidden=16"], _mixture,
                      params={"lr": 0.005, "epochs": 30, "batch_size": 32, "seed": 0, "optimizer": "adam"})
    assert repo.config().task["loss"] == "adversarial"
    update = repo.updates()[0]
    assert set(update.metrics) == {"discriminator_loss", "generator_loss"}
    genesis = read_tensors(repo.store.read(repo.log()[-1].commit), "genesis")
    trained = read_tensors(repo.store.read(update.id), "update")
    groups = ("generator", "discriminator") if framework == "torch" else ("0.", "1.")
    for group in groups:  # each group moved by its own steps
        assert any(not np.array_equal(trained[n], genesis[n]) for n in trained if n.startswith(group))
    from federity.training import build_with_tensors

    def reach(commit: str) -> float:
        """How far from the origin the generator's rows lie (the real rows: about 2 in each coordinate)."""
        model = build_with_tensors(repo.config(), repo.root, read_tensors(repo.store.read(commit), commit))
        return float(np.abs(_generated(framework, model)).mean())

    # each site's generator learned to draw rows out where the real ones are; the untrained one stays near 0
    untrained = reach(repo.log()[-1].commit)
    assert untrained < 0.6 and all(reach(u.id) > max(0.9, 2 * untrained) for u in repo.updates())


def _generated(framework: str, model: object) -> np.ndarray:
    noise = np.random.default_rng(1).normal(size=(200, 4)).astype(np.float32)
    if framework == "torch":
        import torch

        with torch.no_grad():
            return model.generator(torch.from_numpy(noise)).numpy()
    return np.asarray(model.generator(noise))
