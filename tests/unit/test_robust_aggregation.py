"""Byzantine-robust strategies (Krum, Multi-Krum, Bulyan) and update-norm clipping: hand-computed selections and
results, the refusals, and the whole-model distance pass across chunk boundaries against numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from federity.aggregation import get_strategy
from federity.aggregation.bulyan import bulyan_selection, closest_to_median_mean
from federity.aggregation.engine import CHUNK_ELEMENTS, Contribution, InMemory, Round, aggregate_tensors
from federity.aggregation.krum import Krum, krum_scores
from federity.errors import ConfigError, UpdateError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.commits import read_commit
from federity.weights.files import read_tensors, tensors_to_bytes


def _run(spec: str, model: dict, updates: list[dict], samples: list[int], tmp_path: Path, *,
         bases: list[dict] | None = None, **params: object) -> dict:
    contributions = [Contribution(n) for n in samples]
    new, _ = aggregate_tensors(get_strategy(spec, params), model, updates, bases or [model] * len(updates),
                               contributions, tmp_path)
    return new


def _scalars(*changes: float, counts: list[int] | None = None) -> tuple[dict, list[dict]]:
    """A model of one float32 coordinate ``w`` (at 0) and an int64 ``count`` (at 0), and one update per change."""
    model = {"w": np.zeros(1, np.float32), "count": np.zeros(1, np.int64)}
    counts = counts or [0] * len(changes)
    return model, [{"w": np.array([c], np.float32), "count": np.array([n], np.int64)}
                   for c, n in zip(changes, counts, strict=True)]


# K = 5, f = 1: each score sums the K - f - 2 = 2 smallest squared distances to the other updates
#   change 0:   to 1, 2, 4, 100 -> 1, 4, 16, 10000      score 1 + 4 = 5
#   change 1:   to 0, 2, 4, 100 -> 1, 1, 9, 9801        score 1 + 1 = 2   (lowest)
#   change 2:   to 0, 1, 4, 100 -> 4, 1, 4, 9604        score 1 + 4 = 5
#   change 4:   to 0, 1, 2, 100 -> 16, 9, 4, 9216       score 4 + 9 = 13
#   change 100: to 0, 1, 2, 4   -> 10000, 9801, 9604, 9216   score 9216 + 9604 = 18820
FIVE = (0.0, 1.0, 2.0, 4.0, 100.0)


def test_krum_keeps_the_update_closest_to_its_neighbours_and_ignores_the_far_outlier(tmp_path: Path) -> None:
    model, updates = _scalars(*FIVE, counts=[3, 5, 7, 9, 1000])
    new = _run("krum", model, updates, [1] * 5, tmp_path)
    assert new["w"].tolist() == [1.0] and new["count"].tolist() == [5]  # update 1's weights, bit for bit
    round = Round(InMemory(model), [InMemory(u) for u in updates], [InMemory(model)], [0] * 5,
                  [Contribution(1)] * 5, None, ())
    order, scores = Krum().selection(round)
    assert order == [1, 0, 2, 3, 4] and scores.tolist() == [2.0, 5.0, 5.0, 13.0, 18820.0]


def test_krum_moves_the_model_by_the_selected_update_s_own_change(tmp_path: Path) -> None:
    current, older = {"w": np.array([10.0], np.float32)}, {"w": np.array([-5.0], np.float32)}
    updates = [{"w": np.array([b + c], np.float32)} for b, c in zip([10, 10, -5, 10, 10], FIVE, strict=True)]
    new = _run("krum", current, updates, [1] * 5, tmp_path, bases=[current, current, older, current, current])
    assert new["w"].tolist() == [11.0]  # change 1 (+1) applied to the current model, not update 1's weights


def test_multi_krum_averages_the_lowest_scoring_updates_by_sample_count(tmp_path: Path) -> None:
    model, updates = _scalars(*FIVE)
    samples = [10, 20, 30, 40, 1000]
    # default m = K - f = 4: changes 1, 0, 2 and 4 (scores 2, 5, 5, 13); the outlier's 1000 samples do not count
    new = _run("multi-krum", model, updates, samples, tmp_path)
    assert new["w"][0] == pytest.approx((10 * 0 + 20 * 1 + 30 * 2 + 40 * 4) / 100, rel=1e-7)  # 2.4
    # m = 2: change 1, then the tie at score 5 goes to update 0, combined first
    new = _run("multi-krum", model, updates, samples, tmp_path, selected=2)
    assert new["w"][0] == pytest.approx((10 * 0 + 20 * 1) / 30, rel=1e-7)


# K = 7, f = 1: theta = K - 2f = 5 picks by Krum among the updates left (r of them, max(1, r - 3) neighbours)
#   r = 7, 4 neighbours: 0 -> 1+4+9+25 = 39, 1 -> 1+1+4+16 = 22, 2 -> 1+1+4+9 = 15, 3 -> 1+4+4+9 = 18,
#                        5 -> 4+9+16+25 = 54, 40 and 100 in the thousands             pick change 2
#   r = 6, 3 neighbours: 0 -> 1+9+25 = 35, 1 -> 1+4+16 = 21, 3 -> 4+4+9 = 17, 5 -> 4+16+25 = 45      pick 3
#   r = 5, 2 neighbours: 0 -> 1+25 = 26, 1 -> 1+16 = 17, 5 -> 16+25 = 41                            pick 1
#   r = 4, 1 neighbour:  0 -> 25, 5 -> 25, 40 -> 1225, 100 -> 3600              tie: pick 0 (combined first)
#   r = 3, 1 neighbour:  5 -> 1225, 40 -> 1225, 100 -> 3600                           tie: pick 5
# picked changes {0, 1, 2, 3, 5}: median 2; the beta = theta - 2f = 3 closest are 1, 2, 3 -> mean 2
# the picked updates' integer counts (changes 0, 1, 2, 3, 5 count 10, 0, 4, 7, 8): sorted 0 4 7 8 10, median 7;
# the 3 closest are 7, 8 and, of 4 and 10 (both 3 away), the smaller -> (4 + 7 + 8) / 3 = 6.33 -> 6
SEVEN = (0.0, 1.0, 2.0, 3.0, 5.0, 40.0, 100.0)


def test_bulyan_picks_by_repeated_krum_then_averages_the_values_closest_to_the_median(tmp_path: Path) -> None:
    model, updates = _scalars(*SEVEN, counts=[10, 0, 4, 7, 8, 1000, -1000])
    distances = np.subtract.outer(np.array(SEVEN), np.array(SEVEN)) ** 2
    assert bulyan_selection(distances, 1) == [2, 3, 1, 0, 4]
    new = _run("bulyan", model, updates, [1] * 7, tmp_path)
    assert new["w"].tolist() == [2.0] and new["count"].tolist() == [6]


def test_the_values_closest_to_the_median_break_ties_towards_the_smaller_value() -> None:
    values = np.array([[10.0, 3.0], [0.0, 1.0], [4.0, 2.0], [8.0, 5.0], [7.0, 4.0]])
    # column 1 as above: (4 + 7 + 8) / 3; column 2: 1..5, median 3, closest 2, 3, 4 -> 3
    np.testing.assert_allclose(closest_to_median_mean(values, 3), [19 / 3, 3.0], rtol=1e-15)


@pytest.mark.parametrize(("spec", "k", "params", "message"), [
    ("krum", 4, {}, r"krum with byzantine=1 needs at least 5 updates \(K > 2f \+ 2\), 4 given"),
    ("krum", 6, {"byzantine": 2}, r"krum with byzantine=2 needs at least 7 updates \(K > 2f \+ 2\), 6 given"),
    ("multi-krum", 4, {}, r"multi-krum with byzantine=1 needs at least 5 updates \(K > 2f \+ 2\), 4 given"),
    ("multi-krum", 5, {"selected": 6}, r"multi-krum cannot select 6 updates from 5"),
    ("bulyan", 6, {}, r"bulyan with byzantine=1 needs at least 7 updates \(K >= 4f \+ 3\), 6 given"),
    ("bulyan", 10, {"byzantine": 2}, r"bulyan with byzantine=2 needs at least 11 updates \(K >= 4f \+ 3\), 10 given"),
])
def test_too_few_updates_for_the_byzantine_count_are_refused_saying_how_many_are_needed(
        spec: str, k: int, params: dict, message: str, tmp_path: Path) -> None:
    model, updates = _scalars(*range(k))
    with pytest.raises(UpdateError, match=message) as info:
        _run(spec, model, updates, [1] * k, tmp_path, **params)
    assert "approve" in info.value.hint
    assert not (tmp_path / "aggregate.safetensors").exists()


def test_robust_strategy_parameters_are_validated_and_signed() -> None:
    with pytest.raises(ConfigError, match="krum@1: byzantine: Input should be greater than or equal to 0") as info:
        get_strategy("krum", {"byzantine": -1})
    assert "byzantine" in info.value.hint and "clip_norm" in info.value.hint
    with pytest.raises(ConfigError, match="bulyan@1: byzantine: Input should be a valid integer"):
        get_strategy("bulyan", {"byzantine": 1.5})
    assert get_strategy("krum").parameters() == {"byzantine": 1}
    assert get_strategy("multi-krum", {"selected": 3}).parameters() == {"byzantine": 1, "selected": 3}
    assert get_strategy("bulyan", {"byzantine": 0}).parameters() == {"byzantine": 0}


def test_clipping_scales_a_change_of_norm_ten_to_five_over_all_floating_tensors_together(tmp_path: Path) -> None:
    model = {"a": np.zeros(2, np.float32), "b": np.zeros(1, np.float64), "n": np.zeros(1, np.int64)}
    # update 0's change is (6, 0) in a and 8 in b: norm sqrt(36 + 64) = 10 (each tensor alone is under 10);
    # update 1's is (0, 3) and 0: norm 3, under 5, so it is left as it is
    long = {"a": np.array([6.0, 0.0], np.float32), "b": np.array([8.0]), "n": np.array([7])}
    short = {"a": np.array([0.0, 3.0], np.float32), "b": np.array([0.0]), "n": np.array([1])}
    new = _run("fedavg", model, [long, short], [1, 1], tmp_path, clip_norm=5)
    # clip factor 5 / 10: update 0 contributes (3, 0) and 4; the integer tensor is not clipped: (7 + 1) / 2
    assert new["a"].tolist() == [1.5, 1.5] and new["b"].tolist() == [2.0] and new["n"].tolist() == [4]
    unclipped = _run("fedavg", model, [long, short], [1, 1], tmp_path)
    assert unclipped["a"].tolist() == [3.0, 1.5] and unclipped["b"].tolist() == [4.0]
    assert get_strategy("fedavg", {"clip_norm": 5}).parameters() == {"clip_norm": 5.0}
    assert get_strategy("fedavg").parameters() == {}


def test_the_norms_are_of_the_changes_as_trained_and_the_distances_of_the_clipped_ones() -> None:
    model = {"w": np.zeros(2, np.float32)}
    updates = [{"w": np.array([6.0, 8.0], np.float32)}, {"w": np.array([0.0, 3.0], np.float32)}]
    round = Round(InMemory(model), [InMemory(u) for u in updates], [InMemory(model)], [0, 0],
                  [Contribution(1)] * 2, None, (), clip_norm=5.0)
    assert round.delta_norms().tolist() == [10.0, 3.0] and round.clip_factors().tolist() == [0.5, 1.0]
    # the clipped changes (3, 4) and (0, 3): squared distance 9 + 1
    assert round.squared_distances().tolist() == [[0.0, 10.0], [10.0, 0.0]]


def test_clipping_applies_under_fedmedian_to_the_change_from_each_update_s_own_base(tmp_path: Path) -> None:
    current, older = {"w": np.array([1.0], np.float32)}, {"w": np.array([-100.0], np.float32)}
    # changes 1, 2, 30, 40 (update 3 from an older base) clipped to norm 10: 1, 2, 10, 10 -> median 6
    updates = [{"w": np.array([2.0], np.float32)}, {"w": np.array([3.0], np.float32)},
               {"w": np.array([31.0], np.float32)}, {"w": np.array([-60.0], np.float32)}]
    bases = [current, current, current, older]
    assert _run("fedmedian", current, updates, [1] * 4, tmp_path, bases=bases, clip_norm=10.0)["w"].tolist() == [7.0]
    assert _run("fedmedian", current, updates, [1] * 4, tmp_path, bases=bases)["w"].tolist() == [1.0 + 16.0]


def test_a_clip_norm_that_clips_nothing_gives_the_bytes_of_no_clipping(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    model = {"w": rng.standard_normal(1000).astype(np.float32), "n": np.array([4])}
    updates = [{"w": model["w"] + rng.standard_normal(1000).astype(np.float32), "n": np.array([i])} for i in range(3)]
    for spec in ("fedavg", "fedmedian", "trimmed-mean"):
        plain = _run(spec, model, updates, [1, 2, 3], tmp_path)
        assert tensors_to_bytes(_run(spec, model, updates, [1, 2, 3], tmp_path, clip_norm=1e6)) \
            == tensors_to_bytes(plain)


@pytest.mark.parametrize(("bad", "problem"), [(0, "greater than 0"), (float("inf"), "a finite number"),
                                              ("5", "a valid number"), (True, "a valid number")])
def test_bad_clip_norms_are_refused(bad: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"fedmedian@1: clip_norm: Input should be {problem}"):
        get_strategy("fedmedian", {"clip_norm": bad})


def _model_like(rng: np.random.Generator, scale: float = 1.0) -> dict:
    return {"big": (scale * rng.standard_normal(2 * CHUNK_ELEMENTS + 123)).astype(np.float32),
            "small": scale * rng.standard_normal((3, 5)), "count": rng.integers(0, 9, 2).astype(np.int64)}


def test_the_distance_pass_across_chunks_matches_numpy_and_selects_the_same_updates(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    model, older = _model_like(rng), _model_like(rng)
    bases = [model if i % 3 else older for i in range(7)]
    updates = [{n: (b[n] + d).astype(b[n].dtype) for n, d in _model_like(rng, 0.01 * (1 + i) ** 2).items()}
               for i, b in enumerate(bases)]
    distinct = [InMemory(model), InMemory(older)]
    round = Round(distinct[0], [InMemory(u) for u in updates], distinct, [0 if i % 3 else 1 for i in range(7)],
                  [Contribution(1)] * 7, None, ())
    assert round.chunk_elements == CHUNK_ELEMENTS  # so "big" spans three chunks
    flat = np.stack([np.concatenate([(u[n].astype(np.float64) - b[n].astype(np.float64)).ravel()
                                     for n in ("big", "small")]) for u, b in zip(updates, bases, strict=True)])
    direct = np.array([[np.sum((x - y) ** 2) for y in flat] for x in flat])
    np.testing.assert_allclose(round.squared_distances(), direct, rtol=1e-9)
    order = [int(i) for i in np.argsort(krum_scores(direct, range(7), 7 - 1 - 2), kind="stable")]
    assert Krum().selection(round)[0] == order
    assert bulyan_selection(round.squared_distances(), 1) == bulyan_selection(direct, 1)
    contributions = [Contribution(1)] * 7
    new, _ = aggregate_tensors(get_strategy("krum"), model, updates, bases, contributions, tmp_path)
    best = order[0]
    np.testing.assert_allclose(new["big"], model["big"] + (updates[best]["big"] - bases[best]["big"]), atol=1e-6)
    # Bulyan over the same inputs against the whole-model numpy computation
    new, _ = aggregate_tensors(get_strategy("bulyan"), model, updates, bases, contributions, tmp_path)
    picked = bulyan_selection(direct, 1)
    expected = closest_to_median_mean(flat[picked], 3)[:model["big"].size]
    np.testing.assert_allclose(new["big"], (model["big"] + expected).astype(np.float32), rtol=1e-6, atol=1e-6)


def test_clipped_distances_across_chunks_match_numpy_on_the_clipped_changes(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    model = _model_like(rng)
    updates = [{n: (model[n] + d).astype(model[n].dtype) for n, d in _model_like(rng, 0.01 * (1 + i)).items()}
               for i in range(5)]
    flat = np.stack([np.concatenate([(u[n].astype(np.float64) - model[n].astype(np.float64)).ravel()
                                     for n in ("big", "small")]) for u in updates])
    norms = np.sqrt((flat ** 2).sum(axis=1))
    clip = float(np.median(norms))  # clips the two longest changes
    round = Round(InMemory(model), [InMemory(u) for u in updates], [InMemory(model)], [0] * 5,
                  [Contribution(1)] * 5, None, (), clip_norm=clip)
    np.testing.assert_allclose(round.delta_norms(), norms, rtol=1e-12)
    factors = np.minimum(1.0, clip / norms)
    assert (factors < 1).sum() == 2
    clipped = flat * factors[:, None]
    direct = np.array([[np.sum((x - y) ** 2) for y in clipped] for x in clipped])
    np.testing.assert_allclose(round.squared_distances(), direct, rtol=1e-9)
    order = [int(i) for i in np.argsort(krum_scores(direct, range(5), 5 - 1 - 2), kind="stable")]
    assert Krum().selection(round)[0] == order
    new, _ = aggregate_tensors(get_strategy("multi-krum", {"clip_norm": clip}), model, updates, [model] * 5,
                               [Contribution(1)] * 5, tmp_path)
    expected = model["big"] + clipped[sorted(order[:4]), :model["big"].size].mean(axis=0)
    np.testing.assert_allclose(new["big"], expected, rtol=1e-5, atol=1e-6)


def test_a_clipped_aggregate_signs_clip_norm_and_verify_recomputes_it(federation: dict[str, Repository],
                                                                      owner: Wallet, approved_updates: list[str]
                                                                      ) -> None:
    owner_repo = federation["owner"]
    result = owner_repo.aggregate(owner, strategy="fedmedian", parameters={"clip_norm": 1e-3})
    meta = read_commit(owner_repo, result.commit).meta
    assert (meta.strategy, meta.strategy_params) == ("fedmedian@1", '{"clip_norm":0.001}')
    before, after = (read_tensors(owner_repo.store.read(c), "weights") for c in (result.parents[0], result.commit))
    moved = np.sqrt(sum(np.sum((after[n].astype(np.float64) - before[n]) ** 2) for n in before
                        if np.issubdtype(before[n].dtype, np.floating)))
    assert 0 < moved <= 1.001e-3  # the median of two changes clipped to norm 1e-3 moves the model no further
    assert owner_repo.verify().ok
