"""The memory estimate made before local training, and the refusal of a configuration too large for the machine."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federity.data import Dataset
from federity.errors import DataError
from federity.identity import Wallet
from federity.models import build_model
from federity.repo import Repository
from federity.training import TrainingParams, get_trainer
from federity.training import memory as training_memory
from federity.training.memory import MemoryEstimate, estimate, require_fits
from tests.conftest import snapshot


def _images(n: int, side: int) -> Dataset:
    return Dataset(np.zeros((n, 1, side, side), np.float32), np.zeros(n, np.int64), pd.DataFrame(), "npz")


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_the_estimate_counts_weights_gradients_optimizer_state_and_every_layers_output(framework: str) -> None:
    mlp = build_model("mlp", framework, {"in_features": 4, "hidden": 8, "num_classes": 2})
    tabular = Dataset(np.zeros((50, 4), np.float32), np.zeros(50, np.int64), pd.DataFrame(), "csv")
    got = get_trainer(framework).memory(mlp, tabular, TrainingParams(batch_size=10, optimizer="adam"))
    # 4*8 + 8 + 8*2 + 2 = 58 float32 values; Adam keeps two buffers; outputs 8 + 8 + 2 floats a sample, twice
    assert got == MemoryEstimate(weights=232, gradients=232, optimizer=464, activations=2 * 18 * 4 * 10,
                                 batch_size=10)
    cnn = build_model("cnn", framework, {"in_channels": 1, "num_classes": 3})
    got = get_trainer(framework).memory(cnn, _images(64, 8), TrainingParams(batch_size=32))
    # conv 8x8x8, ReLU 8x8x8, pool 8x4x4, conv 16x4x4, ReLU 16x4x4, global pool 16, (PyTorch's Flatten 16,) 3
    per_sample = 512 + 512 + 128 + 256 + 256 + 16 + (16 if framework == "torch" else 0) + 3
    assert got.optimizer == 0 and got.activations == 2 * per_sample * 4 * 32


def test_the_batch_counts_at_most_the_samples_there_are_and_fedprox_and_momentum_keep_copies() -> None:
    params = TrainingParams(batch_size=1000, momentum=0.9, mu=0.1)
    assert estimate(100, 80, 10, params, n_samples=40) == MemoryEstimate(100, 80, 160, 800, 40)


def test_a_configuration_above_the_available_memory_is_refused_with_the_estimate_and_what_to_change() -> None:
    needed = MemoryEstimate(2 * 1024**3, 2 * 1024**3, 0, 30 * 1024**3, 512)
    with pytest.raises(DataError, match=r"needs about 34\.00 GiB \(weights 2\.00, gradients 2\.00, optimizer "
                                        r"state 0\.00, activations for batch_size 512 30\.00\), but 20\.00 GiB"):
        require_fits(needed, available=20 * 1024**3)
    require_fits(needed, available=40 * 1024**3)
    assert training_memory.available_memory() > 0  # read from /proc/meminfo on this machine


def test_training_that_would_not_fit_fails_before_a_step_and_commits_nothing(
        tmp_path: Path, owner: Wallet, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, _ = Repository.init(tmp_path / "repo", owner, name="big", framework="tensorflow", model="cnn",
                              model_args=["in_channels=1", "num_classes=2"])
    data = tmp_path / "images.npz"
    np.savez(data, features=np.random.default_rng(0).random((40, 1, 16, 16), np.float32),
             labels=np.arange(40) % 2)
    before = snapshot(repo)
    fitted: list[object] = []
    monkeypatch.setattr(type(get_trainer("tensorflow")), "fit", lambda *args: fitted.append(args))
    monkeypatch.setattr(training_memory, "available_memory", lambda: 64 * 1024)
    with pytest.raises(DataError, match=r"lower batch_size in params\.yaml"):
        repo.train(owner, data)
    assert fitted == [] and snapshot(repo) == before


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_recurrent_models_activations_grow_with_the_sequences_length(framework: str) -> None:
    model = build_model("lstm", framework, {"input_size": 3, "hidden": 8, "layers": 2, "num_classes": 2})
    sizes = [get_trainer(framework).memory(model, Dataset(np.zeros((4, steps, 3), np.float32), np.zeros(4, np.int64),
                                                          pd.DataFrame(), "npz"), TrainingParams(batch_size=4))
             for steps in (10, 20, 30)]
    growth = [b.activations - a.activations for a, b in itertools.pairwise(sizes)]
    assert growth[0] == growth[1] > 0 and sizes[0].weights == sizes[2].weights
