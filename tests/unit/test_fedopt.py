"""Server-side optimisers (FedAvgM, FedAdagrad, FedAdam, FedYogi): two rounds on tiny tensors against values worked
out by hand, the state carried between rounds, integer tensors, the refusals, and the state through the repository
(across a restart, recomputed by verify, a tampered state file named)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from federity.aggregation import get_strategy
from federity.aggregation.engine import CHUNK_ELEMENTS, Contribution, InMemory, aggregate_into, aggregate_tensors
from federity.errors import ConfigError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.aggregate import aggregate_problems
from federity.repo.commits import create_commit
from federity.repo.history import History
from federity.repo.layout import STATE_FILE
from federity.repo.metadata import canonical_params
from federity.repo.storage import MODEL_DVC_FILE
from federity.weights import read_tensors, tensors_to_bytes
from federity.weights.tensor_file import TensorFile
from tests.conftest import track_sealed, train_and_push, write_csv

Tensors = dict[str, np.ndarray]

MODEL = {"w": np.array([1.0, 2.0], np.float32)}
# round 1: changes [1, -1] (3 samples) and [5, -1] (1 sample), so delta1 = (3 [1, -1] + [5, -1]) / 4 = [2, -1]
ROUND1 = ([{"w": np.array([2.0, 1.0], np.float32)}, {"w": np.array([6.0, 1.0], np.float32)}], [3, 1])
DELTA2 = np.array([2.0, 0.25])
"""Round 2: one update trained on round 1's aggregate, changing it by delta2."""


def _round(spec: str, params: dict, model: Tensors, updates: list[Tensors], samples: list[int], tmp_path: Path,
           state: Tensors | None = None) -> tuple[Tensors, Tensors]:
    work = tmp_path / f"work-{len(list(tmp_path.iterdir()))}"
    work.mkdir()
    return aggregate_tensors(get_strategy(spec, params), model, updates, [model] * len(updates),
                             [Contribution(n) for n in samples], work, state=state)


def _two_rounds(spec: str, params: dict, tmp_path: Path) -> tuple[Tensors, Tensors, Tensors, Tensors]:
    x1, state1 = _round(spec, params, MODEL, *ROUND1, tmp_path)
    update = {"w": (x1["w"].astype(np.float64) + DELTA2).astype(np.float32)}
    x2, state2 = _round(spec, params, x1, [update], [5], tmp_path, state=state1)
    return x1, state1, x2, state2


def _close(actual: np.ndarray, expected: object) -> None:
    np.testing.assert_allclose(actual, np.asarray(expected, np.float64), rtol=1e-6, atol=1e-7)


def test_fedavgm_adds_the_decayed_momentum_to_each_rounds_fedavg_change(tmp_path: Path) -> None:
    x1, s1, x2, s2 = _two_rounds("fedavgm", {"server_lr": 0.5, "beta": 0.5}, tmp_path)
    # v1 = delta1 = [2, -1]; x1 = [1, 2] + 0.5 v1
    _close(s1["w:momentum"], [2.0, -1.0])
    _close(x1["w"], [2.0, 1.5])
    # v2 = 0.5 [2, -1] + [2, 0.25] = [3, -0.25]; x2 = [2, 1.5] + 0.5 v2
    _close(s2["w:momentum"], [3.0, -0.25])
    _close(x2["w"], [3.5, 1.375])
    assert set(s2) == {"w:momentum"} and s2["w:momentum"].dtype == np.float32 and x2["w"].dtype == np.float32


def test_fedavgm_without_momentum_and_with_unit_rate_is_fedavg(tmp_path: Path) -> None:
    x1, _ = _round("fedavgm", {"server_lr": 1.0, "beta": 0.0}, MODEL, *ROUND1, tmp_path)
    _close(x1["w"], [3.0, 1.0])  # [1, 2] + [2, -1]


ADAPTIVE = {"eta": 1.5, "beta1": 0.5, "beta2": 0.75, "tau": 0.5}


def test_fedadam_steps_by_the_first_moment_over_the_root_of_the_second(tmp_path: Path) -> None:
    x1, s1, x2, s2 = _two_rounds("fedadam", ADAPTIVE, tmp_path)
    # m1 = 0.5 [2, -1] = [1, -0.5]; v1 = 0.25 [4, 1] = [1, 0.25]; x1 = [1, 2] + 1.5 m1 / ([1, 0.5] + 0.5)
    _close(s1["w:m"], [1.0, -0.5])
    _close(s1["w:v"], [1.0, 0.25])
    _close(x1["w"], [2.0, 1.25])
    # m2 = 0.5 m1 + 0.5 [2, 0.25] = [1.5, -0.125]; v2 = 0.75 v1 + 0.25 [4, 0.0625] = [1.75, 0.203125]
    _close(s2["w:m"], [1.5, -0.125])
    _close(s2["w:v"], [1.75, 0.203125])
    _close(x2["w"], [2.0 + 1.5 * 1.5 / (np.sqrt(1.75) + 0.5), 1.25 - 1.5 * 0.125 / (np.sqrt(0.203125) + 0.5)])


def test_fedyogi_moves_the_second_moment_by_at_most_its_share_of_the_square(tmp_path: Path) -> None:
    x1, s1, x2, s2 = _two_rounds("fedyogi", ADAPTIVE, tmp_path)
    # from v0 = 0: v1 = 0 - 0.25 [4, 1] sign(0 - [4, 1]) = [1, 0.25], as FedAdam's first round
    _close(s1["w:m"], [1.0, -0.5])
    _close(s1["w:v"], [1.0, 0.25])
    _close(x1["w"], [2.0, 1.25])
    # delta2^2 = [4, 0.0625]: v1 - delta2^2 = [-3, 0.1875], so v2 = [1 + 0.25 * 4, 0.25 - 0.25 * 0.0625]
    _close(s2["w:m"], [1.5, -0.125])
    _close(s2["w:v"], [2.0, 0.234375])
    _close(x2["w"], [2.0 + 2.25 / (np.sqrt(2.0) + 0.5), 1.25 - 0.1875 / (np.sqrt(0.234375) + 0.5)])


def test_fedadagrad_accumulates_every_rounds_squared_change(tmp_path: Path) -> None:
    x1, s1, x2, s2 = _two_rounds("fedadagrad", {"eta": 1.5, "beta1": 0.5, "tau": 1.0}, tmp_path)
    # m1 = [1, -0.5]; v1 = [4, 1]; x1 = [1, 2] + 1.5 [1 / (2 + 1), -0.5 / (1 + 1)]
    _close(s1["w:m"], [1.0, -0.5])
    _close(s1["w:v"], [4.0, 1.0])
    _close(x1["w"], [1.5, 1.625])
    # m2 = [1.5, -0.125]; v2 = v1 + [4, 0.0625] = [8, 1.0625]
    _close(s2["w:m"], [1.5, -0.125])
    _close(s2["w:v"], [8.0, 1.0625])
    _close(x2["w"], [1.5 + 2.25 / (np.sqrt(8.0) + 1.0), 1.625 - 0.1875 / (np.sqrt(1.0625) + 1.0)])


def test_without_previous_state_the_moments_start_from_zero(tmp_path: Path) -> None:
    # round 2's update alone, with no state: m = 0.5 [2, 0.25], v = 0.25 [4, 0.0625], unlike the carried state
    x1 = {"w": np.array([2.0, 1.25], np.float32)}
    update = {"w": np.array([4.0, 1.5], np.float32)}
    new, state = _round("fedadam", ADAPTIVE, x1, [update], [5], tmp_path)
    _close(state["w:m"], [1.0, 0.125])
    _close(state["w:v"], [1.0, 0.015625])
    _close(new["w"], [2.0 + 1.5 * 1.0 / 1.5, 1.25 + 1.5 * 0.125 / (0.125 + 0.5)])


def test_the_state_follows_each_coordinate_across_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = CHUNK_ELEMENTS + 501  # two chunks
    model = {"w": rng.standard_normal(n).astype(np.float32)}
    updates = [{"w": (model["w"] + rng.standard_normal(n) * 0.1).astype(np.float32)} for _ in range(2)]
    x1, s1 = _round("fedadam", {}, model, updates, [1, 3], tmp_path)
    later = [{"w": (x1["w"] + rng.standard_normal(n) * 0.1).astype(np.float32)} for _ in range(3)]
    x2, s2 = _round("fedadam", {}, x1, later, [2, 2, 1], tmp_path, state=s1)

    def reference(x: np.ndarray, ups: list[np.ndarray], samples: list[int], m: np.ndarray, v: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        delta = sum(s * (u.astype(np.float64) - x) for s, u in zip(samples, ups, strict=True)) / sum(samples)
        m = 0.9 * m + 0.1 * delta
        v = 0.99 * v + 0.01 * delta**2
        return x.astype(np.float64) + 1e-2 * m / (np.sqrt(v) + 1e-3), m, v

    zero = np.zeros(n)
    want1, m1, v1 = reference(model["w"], [u["w"] for u in updates], [1, 3], zero, zero)
    want2, m2, v2 = reference(x1["w"], [u["w"] for u in later], [2, 2, 1], s1["w:m"].astype(np.float64),
                              s1["w:v"].astype(np.float64))
    np.testing.assert_allclose(x1["w"], want1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s1["w:m"], m1, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(s1["w:v"], v1, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(x2["w"], want2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s2["w:m"], m2, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(s2["w:v"], v2, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("spec", ["fedavgm", "fedadam", "fedyogi", "fedadagrad"])
def test_integer_tensors_are_fedavg_rounded_and_keep_no_state(spec: str, tmp_path: Path) -> None:
    model = {"count": np.array([10, 0], np.int64), "w": np.zeros(2, np.float32), "empty": np.zeros((0, 3))}
    updates = [{"count": np.array([13, 1], np.int64), "w": np.ones(2, np.float32), "empty": np.zeros((0, 3))},
               {"count": np.array([14, 0], np.int64), "w": np.ones(2, np.float32), "empty": np.zeros((0, 3))}]
    new, state = _round(spec, {}, model, updates, [1, 4], tmp_path)
    # 13 * 0.2 + 14 * 0.8 = 13.8 -> 14; 1 * 0.2 = 0.2 -> 0: FedAvg, not an optimiser step
    assert new["count"].tolist() == [14, 0] and new["count"].dtype == np.int64
    names = get_strategy(spec).state
    assert set(state) == {f"{t}:{s}" for t in ("w", "empty") for s in names}
    assert state["empty:" + names[0]].shape == (0, 3)
    # the integer tensor of the next round ignores the state too
    again, _ = _round(spec, {}, new, [{**new, "count": np.array([20, 3], np.int64)}], [1], tmp_path, state=state)
    assert again["count"].tolist() == [20, 3]


@pytest.mark.parametrize(("spec", "params", "message"), [
    ("fedadam", {"beta1": 1.5}, r"fedadam@1: beta1: Input should be less than 1"),
    ("fedyogi", {"beta2": -0.1}, r"fedyogi@1: beta2: Input should be greater than or equal to 0"),
    ("fedadam", {"tau": 0.0}, r"fedadam@1: tau: Input should be greater than 0"),
    ("fedadagrad", {"tau": 0}, r"fedadagrad@1: tau: Input should be greater than 0"),
    ("fedadagrad", {"beta2": 0.9}, r"fedadagrad@1: beta2: Extra inputs are not permitted"),
    ("fedadam", {"eta": float("inf")}, r"fedadam@1: eta: Input should be a finite number"),
    ("fedavgm", {"beta": 1.0}, r"fedavgm@1: beta: Input should be less than 1"),
    ("fedavgm", {"server_lr": -1.0}, r"fedavgm@1: server_lr: Input should be greater than 0"),
])
def test_bad_parameters_are_refused_naming_the_parameter(spec: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        get_strategy(spec, params)
    assert info.value.hint.startswith(f"aggregation strategy {spec}@1 takes: ")


def test_the_defaults_are_flowers_fedyogi_defaults_and_are_signed() -> None:
    assert get_strategy("fedadam").parameters() == {"eta": 0.01, "beta1": 0.9, "beta2": 0.99, "tau": 0.001}
    assert get_strategy("fedyogi").parameters() == {"eta": 0.01, "beta1": 0.9, "beta2": 0.99, "tau": 0.001}
    assert get_strategy("fedadagrad").parameters() == {"eta": 0.01, "beta1": 0.9, "tau": 0.001}
    assert get_strategy("fedavgm").parameters() == {"server_lr": 1.0, "beta": 0.9}
    assert get_strategy("fedadam", {"eta": 1}).parameters()["eta"] == 1.0  # an integer is taken as a float


def _approve_all(repo: Repository, owner: Wallet) -> None:
    for update in repo.updates():
        if update.status not in ("approved", "rejected", "aggregated"):
            repo.review(owner, update.id, approve=True)


def test_fedadam_state_survives_a_restart_and_verify_recomputes_it(
        federation: dict[str, Repository], owner: Wallet, contributor: Wallet, site_b: Wallet, tmp_path: Path) -> None:
    owner_repo = federation["owner"]
    params = {"eta": 0.05, "beta1": 0.8, "beta2": 0.9, "tau": 0.01}
    train_and_push(federation["a"], contributor, write_csv(tmp_path / "da" / "1.csv", 50, seed=1))
    train_and_push(federation["b"], site_b, write_csv(tmp_path / "db" / "1.csv", 70, seed=2))
    owner_repo.pull()
    _approve_all(owner_repo, owner)
    first = owner_repo.aggregate(owner, strategy="fedadam", parameters=params)
    assert STATE_FILE in owner_repo.store.files(first.commit)
    owner_repo.push()
    state1 = read_tensors(owner_repo.store.read(first.commit, STATE_FILE), "round 1's state")

    # round 2, aggregated by a fresh Repository object, as a new process would open it
    update_a = train_and_push(federation["a"], contributor, write_csv(tmp_path / "da" / "2.csv", 40, seed=3))
    update_b = train_and_push(federation["b"], site_b, write_csv(tmp_path / "db" / "2.csv", 60, seed=4))
    reopened = Repository(owner_repo.root)
    reopened.pull()
    _approve_all(reopened, owner)
    second = reopened.aggregate(owner, strategy="fedadam", parameters=params)
    assert second.round == 2 and sorted(second.updates) == sorted([update_a, update_b])
    # the updates trained on round 1's aggregate do not carry its state: only aggregates do
    assert all(STATE_FILE not in reopened.store.files(u) for u in (update_a, update_b))

    model = read_tensors(reopened.store.read(first.commit), "round 1's model")
    ordered = sorted([update_a, update_b])
    updates = [read_tensors(reopened.store.read(u), u) for u in ordered]
    samples = {update_a: 40, update_b: 60}
    expected, expected_state = aggregate_tensors(get_strategy("fedadam", params), model, updates,
                                                 [model] * 2, [Contribution(samples[u]) for u in ordered],
                                                 tmp_path, state=state1)
    assert tensors_to_bytes(read_tensors(reopened.store.read(second.commit), "round 2")) \
        == tensors_to_bytes(expected)
    assert reopened.store.read(second.commit, STATE_FILE) == tensors_to_bytes(expected_state)
    # round 2 started from round 1's moments, not from zero
    afresh, _ = aggregate_tensors(get_strategy("fedadam", params), model, updates, [model] * 2,
                                  [Contribution(samples[u]) for u in ordered], tmp_path)
    assert tensors_to_bytes(afresh) != tensors_to_bytes(expected)
    assert reopened.verify().ok


def test_verify_names_an_aggregate_whose_state_file_its_parents_do_not_make(
        federation: dict[str, Repository], owner: Wallet, approved_updates: list[str], tmp_path: Path) -> None:
    owner_repo = federation["owner"]
    update_a, update_b = approved_updates
    main = owner_repo.head()
    ordered = sorted([update_a, update_b])
    model = read_tensors(owner_repo.store.read(main), "main")
    updates = [read_tensors(owner_repo.store.read(u), u) for u in ordered]
    samples = {update_a: 50, update_b: 70}
    weights, state = aggregate_tensors(get_strategy("fedadam"), model, updates, [model] * 2,
                                       [Contribution(samples[u]) for u in ordered], tmp_path)
    # a maintainer signs the right weights with a second moment of their own (v doubled: later steps shrink)
    forged_state = {name: value * 2 if name.endswith(":v") else value for name, value in state.items()}
    with owner_repo.transaction():
        owner_repo.weights_path.write_bytes(tensors_to_bytes(weights))
        (owner_repo.weights_path.parent / STATE_FILE).write_bytes(tensors_to_bytes(forged_state))
        track_sealed(owner_repo, owner, "aggregate")
        forged = create_commit(owner_repo, owner, "aggregate", "Round 1: by hand", [main, *ordered], round=1,
                               strategy="fedadam@1", strategy_params=canonical_params(get_strategy("fedadam")
                                                                                      .parameters()),
                               paths=(MODEL_DVC_FILE,)).commit
    report = owner_repo.verify()
    assert [(f["commit"], f["check"]) for f in report.failures] == [(forged, "aggregate")]
    assert report.failures[0]["reason"] == (f"its strategy state (model/{STATE_FILE}) is not what fedadam@1 "
                                            f"{canonical_params(get_strategy('fedadam').parameters())} computes "
                                            "from its parents")
    # the weights passed (they are checked first): the state file alone is what aggregate_problems rejects
    history = History.load(owner_repo)
    assert aggregate_problems(history, history.commit(forged)) == [report.failures[0]["reason"]]


def test_a_state_file_is_read_by_its_own_tensor_names(tmp_path: Path) -> None:
    model = {"a": np.zeros(3, np.float32), "n": np.array([1], np.int64)}
    update = {"a": np.ones(3, np.float32), "n": np.array([3], np.int64)}
    previous = {"a:momentum": np.array([1.0, 2.0, 4.0], np.float32)}
    path = tmp_path / "state.safetensors"
    path.write_bytes(tensors_to_bytes(previous))
    out = tmp_path / "out.safetensors"
    with TensorFile(path, "the state") as state:
        aggregate_into(get_strategy("fedavgm", {"beta": 0.5}), InMemory(model), [InMemory(update)],
                       [InMemory(model)], [0], [Contribution(1)], out, state=state,
                       state_out=tmp_path / "new-state.safetensors")
    new = read_tensors(out.read_bytes(), "out")
    assert new["a"].tolist() == [1.5, 2.0, 3.0] and new["n"].tolist() == [3]  # 0.5 [1, 2, 4] + 1
    assert read_tensors((tmp_path / "new-state.safetensors").read_bytes(), "state")["a:momentum"].tolist() \
        == [1.5, 2.0, 3.0]
