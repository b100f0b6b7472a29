"""TensorFlow (Keras 3) as a first-class framework: stable tensor names, a full round per zoo model (train at two
sites, review, FedAvg, verify), and the same rounds through PyTorch, with the real library, git, DVC and
great-expectations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from federity.data import load_dataset
from federity.errors import ConfigError, DataError, WeightsError
from federity.identity import Wallet
from federity.models import build_model
from federity.training import TrainingParams, get_trainer
from federity.weights import get_framework
from tests.conftest import full_round, write_csv


def _digits(path: Path, part: int) -> Path:
    """Half of scikit-learn's bundled 8x8 digits (classes 0-3), channel-first, as an NPZ file."""
    digits = load_digits(n_class=4)
    rows = np.arange(len(digits.target))[part::2][:120]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=(digits.images[rows] / 16.0)[:, None].astype(np.float32), labels=digits.target[rows])
    return path


def _sequences(path: Path, part: int) -> Path:
    """Sequences of 10 steps of 3 features whose label says whether the first feature's sum is positive."""
    rng = np.random.default_rng(10 + part)
    x = rng.normal(size=(80 + 20 * part, 10, 3)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=x, labels=(x[:, :, 0].sum(axis=1) > 0).astype(np.int64))
    return path


FAMILIES = {
    "logistic-regression": (["in_features=4"], lambda path, part: write_csv(path.with_suffix(".csv"), 60 + 20 * part,
                                                                           seed=1 + part)),
    "mlp": (["in_features=4", "hidden=8"], lambda path, part: write_csv(path.with_suffix(".csv"), 60 + 20 * part,
                                                                       seed=1 + part)),
    "cnn": (["in_channels=1", "num_classes=4"], _digits),
    "lstm": (["input_size=3", "hidden=6", "layers=2"], _sequences),
    "gru": (["input_size=3", "hidden=6"], _sequences),
}


def test_the_zoo_lists_every_family_in_both_frameworks_but_graphs_without_importing_either() -> None:
    listing = ("import sys; from federity.models import zoo; "
               "print(sorted((m.framework, m.id) for m in zoo()), any(k in sys.modules for k in ('torch', 'keras')))")
    out = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, check=True).stdout
    ids = ["autoencoder", "cnn", "efficientnet", "gan", "gru", "logistic-regression", "lstm", "mlp", "mobilenet",
           "resnet", "transformer-decoder", "transformer-encoder"]
    both = [(f, i) for f in ("tensorflow", "torch") for i in ids]
    assert out.strip() == f"{sorted([*both, ('torch', 'gcn')])} False"  # graphs: PyTorch only


def test_a_keras_model_built_twice_has_the_same_tensor_names_and_seeded_values() -> None:
    adapter = get_framework("tensorflow")
    adapter.seed(7)
    first = adapter.get_tensors(build_model("cnn", "tensorflow", {"in_channels": 1, "num_classes": 3}))
    adapter.seed(7)
    second = build_model("cnn", "tensorflow", {"in_channels": 1, "num_classes": 3})  # Keras names it conv2d_2...
    assert list(first) == ["0.kernel", "0.bias", "3.kernel", "3.bias", "6.kernel", "6.bias"]
    assert all(np.array_equal(first[n], v) for n, v in adapter.get_tensors(second).items())
    assert first["6.kernel"].shape == (16, 3)  # Keras' layout, [features, classes]


def test_keras_weights_round_trip_and_a_mismatch_is_named() -> None:
    adapter = get_framework("tensorflow")
    model = build_model("mlp", "tensorflow", {"in_features": 4, "hidden": 8, "num_classes": 2})
    tensors = {n: v + np.float32(1) for n, v in adapter.get_tensors(model).items()}
    adapter.set_tensors(model, tensors)
    assert all(np.array_equal(adapter.get_tensors(model)[n], v) for n, v in tensors.items())
    tensors["2.kernel"] = np.zeros((3, 2), np.float32)
    with pytest.raises(WeightsError, match=r"'2.kernel' is \(3, 2\) float32, expected \(8, 2\) float32"):
        adapter.set_tensors(model, tensors)


def test_keras_training_is_deterministic_and_learns(tmp_path: Path) -> None:
    data = load_dataset(write_csv(tmp_path / "t.csv", 200, seed=3))
    trainer, adapter = get_trainer("tensorflow"), get_framework("tensorflow")
    results = []
    for _ in range(2):
        adapter.seed(0)
        model = build_model("logistic-regression", "tensorflow", {"in_features": 4, "num_classes": 2})
        metrics = trainer.fit(model, data, TrainingParams(lr=0.5, epochs=5, batch_size=16, seed=3))
        results.append((metrics, adapter.get_tensors(model)))
    (first, weights), (second, again) = results
    assert first == second and all(np.array_equal(weights[n], again[n]) for n in weights)
    assert first["accuracy"] > 0.9


def test_fedprox_weight_decay_and_adam_train_a_keras_model(tmp_path: Path) -> None:
    data = load_dataset(write_csv(tmp_path / "t.csv", 100, seed=4))
    adapter = get_framework("tensorflow")
    adapter.seed(0)
    model = build_model("mlp", "tensorflow", {"in_features": 4, "hidden": 8, "num_classes": 2})
    start = adapter.get_tensors(model)
    near = get_trainer("tensorflow").fit(model, data, TrainingParams(lr=0.1, epochs=3, batch_size=10, mu=100.0,
                                                                     weight_decay=0.01, optimizer="adam"))
    moved = max(float(np.abs(adapter.get_tensors(model)[n] - start[n]).max()) for n in start)
    assert 0 < moved < 0.05 and near["accuracy"] > 0  # a large proximal weight keeps the weights near the start


@pytest.mark.parametrize("framework", ["tensorflow", "torch"])
@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_a_zoo_model_goes_through_a_full_round_in_each_framework(tmp_path: Path, owner: Wallet, contributor: Wallet,
                                                                 site_b: Wallet, framework: str, model: str) -> None:
    args, make_data = FAMILIES[model]
    full_round(tmp_path, (owner, contributor, site_b), framework, model, args, make_data)


def _images_32(path: Path, part: int) -> Path:
    """Digits (classes 0-3) enlarged to 32x32, the smallest size keras.applications' networks take."""
    digits = load_digits(n_class=4)
    rows = np.arange(len(digits.target))[part::2][:40 + 8 * part]
    images = np.kron(digits.images[rows] / 16.0, np.ones((4, 4)))[:, None].astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=images, labels=digits.target[rows])
    return path


@pytest.mark.parametrize(("framework", "model", "args"), [
    ("torch", "resnet", ["in_channels=1", "num_classes=4", "depth=18", "width=8"]),
    ("torch", "mobilenet", ["in_channels=1", "num_classes=4", "width_percent=35"]),
    ("torch", "efficientnet", ["in_channels=1", "num_classes=4", "width_percent=25", "depth_percent=25"]),
    ("tensorflow", "resnet", ["in_channels=1", "num_classes=4", "depth=50"]),
    ("tensorflow", "mobilenet", ["in_channels=1", "num_classes=4", "width_percent=35"]),
    ("tensorflow", "efficientnet", ["in_channels=1", "num_classes=4", "variant=0"]),
])
def test_an_image_network_family_goes_through_afull_round(tmp_path: Path, owner: Wallet, contributor: Wallet,
                                                           site_b: Wallet, framework: str, model: str,
                                                           args: list[str]) -> None:
    full_round(tmp_path, (owner, contributor, site_b), framework, model, args, _images_32)


def test_a_keras_process_refuses_another_keras_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ConfigError, match="Keras runs on the 'jax' backend in this process"):
        get_framework("tensorflow").seed(0)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_training_that_diverges_is_stopped_with_what_to_change(tmp_path: Path, framework: str) -> None:
    data = load_dataset(write_csv(tmp_path / "t.csv", 64, seed=5))
    data.features[:] *= 1e37  # float32 overflows in the first layer: the loss is NaN from the first step
    model = build_model("mlp", framework, {"in_features": 4, "hidden": 8, "num_classes": 2})
    with pytest.raises(DataError, match="training diverged: the loss became infinite or NaN"):
        get_trainer(framework).fit(model, data, TrainingParams(lr=0.1, epochs=2, batch_size=16))
