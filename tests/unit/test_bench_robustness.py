"""The robustness benchmark's attacks and verdicts (bench/bench_robustness.py): what an attacker sends, the
label flip, the drop against clean FedAvg, and the 3-point target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import bench_robustness as bench
from federity.data import Dataset
from federity.training import TrainingParams

START = {"w": np.array([1.0, 2.0], np.float32), "steps": np.array([4], np.int64)}
TRAINED = {"w": np.array([2.0, 0.0], np.float32), "steps": np.array([5], np.int64)}  # delta (1, -2)


@pytest.mark.parametrize(("attack", "sent"), [("sign-flip", [0.0, 4.0]), ("scale-10", [11.0, -18.0])])
def test_sign_flip_and_scaling_send_minus_delta_and_ten_delta(attack: str, sent: list[float]) -> None:
    out = bench.poisoned(attack, START, TRAINED, np.random.default_rng(0))
    assert out["w"].tolist() == sent
    assert out["w"].dtype == np.float32
    assert out["steps"].tolist() == [5]  # integer tensors are sent as trained


def test_gaussian_noise_replaces_delta_with_noise_of_three_times_its_std() -> None:
    # delta (1, -2) has std 1.5, so sigma = 4.5
    out = bench.poisoned("gaussian-noise", START, TRAINED, np.random.default_rng(7))
    noise = np.random.default_rng(7).normal(0.0, 4.5, 2)
    np.testing.assert_allclose(out["w"], (START["w"] + noise).astype(np.float32))


def test_label_flip_trains_on_c_minus_one_minus_y() -> None:
    shard = Dataset(np.zeros((3, 1, 2, 2), np.float32), np.array([0, 3, 9]), pd.DataFrame(), "memory")
    task = bench.Task("t", "", "cnn", {"in_channels": 1, "num_classes": 10}, TrainingParams(), 1, 10, [shard], shard)
    assert bench.Federation(task).flipped[0].labels.tolist() == [9, 6, 0]


def test_target_is_three_points_below_clean_fedavg_under_the_worst_attack() -> None:
    attacks = {"none": {"accuracy": 0.95}, "sign-flip": {"accuracy": 0.88}, "scale-10": {"accuracy": 0.91},
               "gaussian-noise": {"accuracy": 0.90}, "label-flip": {"accuracy": 0.89}}
    cells = {"fedmedian": attacks, "trimmed-mean": {**attacks, "sign-flip": {"accuracy": 0.86}}}
    target = bench._target(cells, 0.90)
    assert target["fedmedian"] == {"worst_attack": "sign-flip", "worst_accuracy": 0.88,
                                   "worst_drop_points_vs_clean_fedavg": 2.0, "meets_target": True}
    assert target["trimmed-mean"]["worst_drop_points_vs_clean_fedavg"] == 4.0
    assert target["trimmed-mean"]["meets_target"] is False


def test_a_cell_that_stopped_counts_as_missing_the_target() -> None:
    attacks = {a: {"accuracy": 0.9} for a in bench.ATTACKS}
    attacks["scale-10"] = {"accuracy": None, "error": "non-finite", "stopped_at_round": 3}
    assert bench._target({"fedmedian": attacks}, 0.9)["fedmedian"] == {
        "worst_attack": "scale-10", "worst_accuracy": None, "worst_drop_points_vs_clean_fedavg": None,
        "meets_target": False}
