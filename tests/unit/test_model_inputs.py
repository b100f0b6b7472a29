"""What a repository refuses about models and data, each with a clear error and nothing changed: weights of
another framework or architecture, an unknown zoo id, data of another modality or shape than the model takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from federity.errors import DataError, UnknownPluginError, WeightsError
from federity.identity import Wallet
from federity.models import build_model
from federity.repo import Repository
from federity.weights import get_framework, tensors_to_bytes
from tests.conftest import snapshot, write_csv


def test_tensorflow_weights_offered_to_a_pytorch_repository_are_refused_naming_the_tensors(
        repo: Repository, owner: Wallet, tmp_path: Path) -> None:
    keras_model = build_model("logistic-regression", "tensorflow", {"in_features": 4, "num_classes": 2})
    path = tmp_path / "keras.safetensors"
    path.write_bytes(tensors_to_bytes(get_framework("tensorflow").get_tensors(keras_model)))
    before = snapshot(repo)
    with pytest.raises(WeightsError, match=r"missing tensor '0.weight'; unexpected tensor '0.kernel'"):
        repo.commit(owner, path, "Keras weights")
    assert snapshot(repo) == before


def test_an_unknown_zoo_id_lists_the_known_ones(tmp_path: Path, owner: Wallet) -> None:
    with pytest.raises(UnknownPluginError, match=r"no model 'resnet-9000' for framework 'tensorflow'") as caught:
        Repository.init(tmp_path / "repo", owner, name="x", framework="tensorflow", model="resnet-9000")
    assert "resnet" in caught.value.hint and "transformer-encoder" in caught.value.hint
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(("framework", "model", "args"), [
    ("torch", "cnn", ["in_channels=1", "num_classes=2"]),
    ("tensorflow", "cnn", ["in_channels=1", "num_classes=2"]),
    ("torch", "lstm", ["input_size=3"]),
])
def test_data_of_another_shape_than_the_model_takes_is_refused_before_training(
        tmp_path: Path, owner: Wallet, framework: str, model: str, args: list[str]) -> None:
    """A table (4 features) given to an image or sequence model fails on its first example, by shape only."""
    repo, _ = Repository.init(tmp_path / "repo", owner, name="x", framework=framework, model=model, model_args=args)
    before = snapshot(repo)
    with pytest.raises(DataError, match=r"the dataset's examples, of shape \(4,\), do not fit the model") as caught:
        repo.train(owner, write_csv(tmp_path / "d" / "t.csv", 30, seed=1))
    assert snapshot(repo) == before and caught.value.__context__ is None


def test_images_given_to_a_tabular_model_fail_its_data_contract(repo: Repository, owner: Wallet,
                                                                tmp_path: Path) -> None:
    np.savez(tmp_path / "images.npz", features=np.zeros((8, 1, 6, 6), np.float32), labels=np.arange(8) % 2)
    before = snapshot(repo)
    with pytest.raises(DataError, match="expect_table_column_count_to_equal"):
        repo.train(owner, tmp_path / "images.npz")
    assert snapshot(repo) == before
