"""Merge methods against hand-computed tensors: what each computes, its parameters, its reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from federity.errors import ConfigError, MergeError, UnknownPluginError
from federity.merging import get_merge_method, installed_merge_methods
from federity.merging.task_vectors import drop_mask, trimmed


def merged(spec: str, ours: list[float], theirs: list[float], base: list[float], /, **parameters: object
           ) -> np.ndarray:
    method = get_merge_method(spec, parameters)
    return method.merge("w", *(np.asarray(v, np.float64) for v in (ours, theirs, base)))


def test_every_builtin_method_is_installed_with_version_one() -> None:
    assert set(installed_merge_methods()) >= {"average", "weighted", "task-arithmetic", "ties", "dare"}
    for name in ("average", "weighted", "task-arithmetic", "ties", "dare"):
        method = get_merge_method(f"{name}@1")
        assert (method.name, method.version) == (name, 1)


def test_average_of_one_and_three_is_two_everywhere() -> None:
    assert merged("average", [1.0] * 5, [3.0] * 5, [7.0] * 5).tolist() == [2.0] * 5


def test_weighted_average_with_given_weights() -> None:
    assert merged("weighted", [1.0, 2.0], [5.0, 10.0], [0.0, 0.0], ours=1.0, theirs=3.0).tolist() == [4.0, 8.0]


def test_weighted_takes_the_sample_counts_only_when_no_weights_are_given() -> None:
    by_samples = get_merge_method("weighted").with_sample_counts(30, 10)
    assert by_samples.parameters() == {"ours": 30.0, "theirs": 10.0}
    assert by_samples.merge("w", np.array([4.0]), np.array([8.0]), np.array([0.0])).tolist() == [5.0]
    given = get_merge_method("weighted", {"ours": 1.0, "theirs": 1.0})
    assert given.with_sample_counts(30, 10).parameters() == {"ours": 1.0, "theirs": 1.0}
    with pytest.raises(MergeError, match="theirs trained on none") as raised:
        get_merge_method("weighted").with_sample_counts(30, 0)
    assert "--strategy-param ours=1" in raised.value.hint


@pytest.mark.parametrize(("parameters", "message"), [
    ({"ours": 1.0}, "give both weights"),
    ({"ours": 0.0, "theirs": 1.0}, "greater than 0"),
    ({"ours": float("inf"), "theirs": 1.0}, "finite"),
    ({"ours": "1", "theirs": 1.0}, "ours"),
])
def test_weighted_refuses_bad_weights(parameters: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_merge_method("weighted", parameters)


def test_task_arithmetic_adds_the_scaled_task_vectors_to_the_base() -> None:
    # 1 + 0.5 * ((2 - 1) + (4 - 1)) = 3
    assert merged("task-arithmetic", [2.0], [4.0], [1.0], scale=0.5).tolist() == [3.0]
    assert merged("task-arithmetic", [2.0, 0.0], [4.0, -1.0], [1.0, 1.0]).tolist() == [5.0, -2.0]


def test_ties_trims_elects_signs_and_averages_what_agrees() -> None:
    base = [1.0] * 5
    ours = [1.0 + t for t in [3.0, -1.0, 0.5, 2.0, 0.2]]     # task vector trimmed to 60%: [3, -1, 0, 2, 0]
    theirs = [1.0 + t for t in [-2.0, -1.5, 1.0, 0.1, 4.0]]  # task vector trimmed to 60%: [-2, -1.5, 0, 0, 4]
    # elected signs [+, -, 0, +, +]; agreeing means [3, (-1 - 1.5) / 2, 0, 2, 4]
    assert merged("ties", ours, theirs, base, density=0.6).tolist() == [4.0, -0.25, 1.0, 3.0, 5.0]
    assert merged("ties", ours, theirs, base, density=0.6, scale=2.0).tolist() == [7.0, -1.5, 1.0, 5.0, 9.0]


def test_ties_trimming_keeps_ties_at_the_threshold_and_handles_empty_tensors() -> None:
    assert trimmed(np.array([1.0, -3.0, 3.0, 2.0]), 0.25).tolist() == [0.0, -3.0, 3.0, 0.0]
    assert trimmed(np.array([]), 0.5).size == 0
    assert trimmed(np.array([1.0, 2.0]), 1.0).tolist() == [1.0, 2.0]


def test_dare_is_reproducible_from_its_seed_and_drops_at_its_rate() -> None:
    size = 200_000
    base, ours, theirs = np.zeros(size), np.full(size, 0.3), np.zeros(size)
    first = get_merge_method("dare", {"seed": 7, "drop_rate": 0.25}).merge("w", ours, theirs, base)
    again = get_merge_method("dare", {"seed": 7, "drop_rate": 0.25}).merge("w", ours, theirs, base)
    other_seed = get_merge_method("dare", {"seed": 8, "drop_rate": 0.25}).merge("w", ours, theirs, base)
    other_tensor = get_merge_method("dare", {"seed": 7, "drop_rate": 0.25}).merge("v", ours, theirs, base)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other_seed) and not np.array_equal(first, other_tensor)
    assert set(np.unique(first)) == {0.0, 0.3 / 0.75}  # dropped, or kept and rescaled by 1 / (1 - p)
    assert abs(float((first == 0).mean()) - 0.25) < 0.005
    assert abs(float(first.mean()) - 0.3) < 0.005  # the rescaling keeps the expected task vector


def test_dare_masks_are_fixed_bits_and_independent_per_branch() -> None:
    mask = drop_mask(0, "layer.weight", 0, 0.5, (2, 8))
    assert mask.shape == (2, 8) and mask.dtype == bool
    assert np.array_equal(mask, drop_mask(0, "layer.weight", 0, 0.5, (2, 8)))
    assert not np.array_equal(drop_mask(0, "w", 0, 0.5, (4096,)), drop_mask(0, "w", 1, 0.5, (4096,)))
    assert drop_mask(0, "w", 0, 0.0, (1000,)).all()


def test_dare_without_drops_is_task_arithmetic() -> None:
    ours, theirs, base = [2.0, -1.0], [4.0, 0.5], [1.0, 0.0]
    assert merged("dare", ours, theirs, base, drop_rate=0.0, scale=0.5).tolist() == \
        merged("task-arithmetic", ours, theirs, base, scale=0.5).tolist()


@pytest.mark.parametrize(("spec", "parameters", "error", "message"), [
    ("nosuch", {}, UnknownPluginError, "nosuch"),
    ("average@9", {}, UnknownPluginError, "average@1"),
    ("average", {"scale": 1.0}, ConfigError, "merge method average@1 takes"),
    ("ties", {"density": 0.0}, ConfigError, "density"),
    ("ties", {"density": 1.5}, ConfigError, "density"),
    ("dare", {"drop_rate": 1.0}, ConfigError, "drop_rate"),
    ("dare", {"seed": -1}, ConfigError, "seed"),
    ("task-arithmetic", {"scale": float("nan")}, ConfigError, "scale"),
])
def test_bad_methods_and_parameters_are_refused_with_what_they_take(
        spec: str, parameters: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        get_merge_method(spec, parameters)
