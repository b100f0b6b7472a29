"""Aggregation strategies: the maths, on small hand-checked tensors."""

from __future__ import annotations

import numpy as np
import pytest

from federity.aggregation import Contribution, get_strategy, installed_strategies, staleness_discount
from federity.aggregation.aggregate import apply_delta, deltas, trimmed_mean, weighted_mean
from federity.errors import UnknownPluginError


def _t(*values: float) -> dict[str, np.ndarray]:
    return {"w": np.array(values, dtype=np.float32)}


def test_fedavg_of_updates_from_the_current_model_is_the_sample_weighted_mean_of_their_weights() -> None:
    base = _t(0.0, 0.0)
    updates = [_t(1.0, 2.0), _t(4.0, -1.0)]
    contributions = [Contribution(d, n) for d, n in zip(deltas(updates, [base, base]), [30, 10], strict=True)]
    new = apply_delta(base, get_strategy("fedavg").combine(contributions))
    np.testing.assert_allclose(new["w"], [(30 * 1 + 10 * 4) / 40, (30 * 2 - 10) / 40])
    assert new["w"].dtype == np.float32


def test_a_stale_update_counts_less_and_moves_the_model_by_its_own_change() -> None:
    current = _t(10.0)
    fresh = Contribution(deltas([_t(12.0)], [current])[0], 10, staleness=0)
    stale = Contribution(deltas([_t(1.0)], [_t(0.0)])[0], 10, staleness=1)
    new = apply_delta(current, get_strategy("fedavg").combine([fresh, stale]))
    expected = 10.0 + (10 * 2.0 + 10 * 0.5 * 1.0) / (10 + 10 * 0.5)
    np.testing.assert_allclose(new["w"], [expected], rtol=1e-6)
    assert staleness_discount(0) == 1.0 and staleness_discount(3) == 0.25


def test_median_and_trimmed_mean_ignore_one_outlier() -> None:
    values = [_t(1.0), _t(2.0), _t(3.0), _t(1000.0)]
    contributions = [Contribution({"w": v["w"].astype(np.float64)}, 1) for v in values]
    assert get_strategy("fedmedian").combine(contributions)["w"][0] == pytest.approx(2.5)
    ten = [*values, *(_t(2.0) for _ in range(6))]
    assert trimmed_mean([{"w": v["w"].astype(np.float64)} for v in ten], 0.1)["w"][0] == pytest.approx(17 / 8)


def test_integer_tensors_are_rounded_not_truncated() -> None:
    model = {"count": np.array([10], dtype=np.int64)}
    assert apply_delta(model, {"count": np.array([2.6])})["count"].tolist() == [13]


def test_weights_must_be_positive() -> None:
    with pytest.raises(ValueError, match="sum to a positive"):
        weighted_mean([_t(1.0)], [0.0])


def test_an_unknown_strategy_lists_the_installed_ones() -> None:
    with pytest.raises(UnknownPluginError, match="unknown aggregation strategy 'krum'") as info:
        get_strategy("krum")
    assert all(name in info.value.hint for name in installed_strategies())
