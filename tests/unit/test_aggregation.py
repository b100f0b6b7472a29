"""Aggregation strategies through the streaming engine: the maths on small hand-checked tensors, the canonical
output file, and the refusals."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from federity.aggregation import get_strategy, installed_strategies
from federity.aggregation.engine import (
    CHUNK_ELEMENTS,
    Contribution,
    InMemory,
    Output,
    aggregate_into,
    aggregate_tensors,
)
from federity.errors import ConfigError, PickleRefusedError, UnknownPluginError, UpdateError
from federity.identity import Wallet
from federity.sealing.objects import Sealing, seal_file
from federity.weights.files import sha256_bytes, tensors_to_bytes
from federity.weights.tensor_file import TensorFile


def _t(*values: float, dtype: type = np.float32) -> dict[str, np.ndarray]:
    return {"w": np.array(values, dtype=dtype)}


def _run(spec: str, model: dict, updates: list[dict], samples: list[int], tmp_path: Path, *,
         bases: list[dict] | None = None, staleness: list[int] | None = None, **params: object) -> dict:
    contributions = [Contribution(n, s) for n, s in zip(samples, staleness or [0] * len(samples), strict=True)]
    new, _ = aggregate_tensors(get_strategy(spec, params), model, updates, bases or [model] * len(updates),
                               contributions, tmp_path)
    return new


def test_fedavg_of_weights_one_and_three_is_two_everywhere(tmp_path: Path) -> None:
    model = {"w": np.zeros((3, 4), np.float32), "b": np.zeros(4, np.float32)}
    ones = {name: np.full_like(t, 1.0) for name, t in model.items()}
    threes = {name: np.full_like(t, 3.0) for name, t in model.items()}
    new = _run("fedavg", model, [ones, threes], [10, 10], tmp_path)
    assert all((t == 2.0).all() and t.dtype == np.float32 for t in new.values())


def test_fedavg_weights_each_update_by_its_sample_count(tmp_path: Path) -> None:
    new = _run("fedavg", _t(0.0, 0.0), [_t(1.0, 2.0), _t(4.0, -1.0)], [30, 10], tmp_path)
    np.testing.assert_allclose(new["w"], [(30 * 1 + 10 * 4) / 40, (30 * 2 - 10) / 40], rtol=1e-7)


def test_a_stale_update_counts_less_and_moves_the_model_by_its_own_change(tmp_path: Path) -> None:
    current = _t(10.0)
    new = _run("fedavg", current, [_t(12.0), _t(1.0)], [10, 10], tmp_path, bases=[current, _t(0.0)],
               staleness=[0, 1])
    # weights 10 and 10/2; changes +2 and +1
    np.testing.assert_allclose(new["w"], [10.0 + (10 * 2.0 + 5 * 1.0) / 15], rtol=1e-7)


def test_fedavg_reads_every_input_once_and_is_exact_when_all_updates_share_the_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    model = {"w": rng.standard_normal(CHUNK_ELEMENTS + 77).astype(np.float32)}  # more than one chunk
    updates = [{"w": rng.standard_normal(model["w"].size).astype(np.float32)} for _ in range(3)]
    new = _run("fedavg", model, updates, [1, 2, 5], tmp_path)
    expected = updates[0]["w"] * np.float32(1 / 8)
    expected += updates[1]["w"] * np.float32(2 / 8)
    expected += updates[2]["w"] * np.float32(5 / 8)
    assert np.array_equal(new["w"], expected)  # the model's own term cancels exactly and is not computed


def test_integer_tensors_are_averaged_and_rounded_not_truncated(tmp_path: Path) -> None:
    model = {"count": np.array([10, 0], np.int64), "w": np.zeros(2, np.float32)}
    updates = [{"count": np.array([13, 1], np.int64), "w": np.ones(2, np.float32)},
               {"count": np.array([14, 0], np.int64), "w": np.ones(2, np.float32)}]
    new = _run("fedavg", model, updates, [1, 4], tmp_path)
    # 13*0.2 + 14*0.8 = 13.8 -> 14 (Flower's integer cast would give 13); 1*0.2 = 0.2 -> 0
    assert new["count"].tolist() == [14, 0] and new["count"].dtype == np.int64


def test_half_precision_is_combined_in_float32_and_stored_as_float16(tmp_path: Path) -> None:
    new = _run("fedavg", _t(0.0, dtype=np.float16), [_t(1.0, dtype=np.float16), _t(2.0, dtype=np.float16)],
               [1, 1], tmp_path)
    assert new["w"].dtype == np.float16 and new["w"].tolist() == [1.5]


def test_median_and_trimmed_mean_ignore_one_outlier(tmp_path: Path) -> None:
    model = _t(0.0)
    four = [_t(1.0), _t(2.0), _t(3.0), _t(1000.0)]
    assert _run("fedmedian", model, four, [1] * 4, tmp_path)["w"].tolist() == [2.5]
    ten = [*four, *(_t(2.0) for _ in range(6))]
    assert _run("trimmed-mean", model, ten, [1] * 10, tmp_path)["w"][0] == pytest.approx(17 / 8)
    # fraction 0.2 drops two each way from ten: 1.0 and the 1000.0 outlier both go with a 2.0 and a 3.0
    assert _run("trimmed-mean", model, ten, [1] * 10, tmp_path, fraction=0.2)["w"][0] == pytest.approx(2.0)


def _legacy(strategy: str, model: dict, updates: list[dict], bases: list[dict],
            contributions: list[Contribution]) -> dict:
    """The in-memory float64 maths of the version-1 strategies, as they were before the streaming engine."""
    deltas = [{n: u[n].astype(np.float64) - b[n].astype(np.float64) for n in u}
              for u, b in zip(updates, bases, strict=True)]
    if strategy == "fedavg@1":
        weights = [c.n_samples * (1.0 / (1.0 + c.staleness)) for c in contributions]
        change = {n: sum(w * d[n] for d, w in zip(deltas, weights, strict=True)) / float(sum(weights))
                  for n in deltas[0]}
    elif strategy == "fedmedian@1":
        change = {n: np.median(np.stack([d[n] for d in deltas]), axis=0) for n in deltas[0]}
    else:
        k = int(len(deltas) * 0.1)
        change = {n: np.sort(np.stack([d[n] for d in deltas]), axis=0)[k:len(deltas) - k].mean(axis=0)
                  for n in deltas[0]}
    out = {}
    for name, value in model.items():
        combined = value.astype(np.float64) + change[name]
        if np.issubdtype(value.dtype, np.integer):
            combined = np.rint(combined)
        out[name] = combined.astype(value.dtype)
    return out


@pytest.mark.parametrize("strategy", ["fedavg@1", "fedmedian@1", "trimmed-mean@1"])
def test_version_one_strategies_streamed_give_the_bytes_they_gave_in_memory(strategy: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)

    def model_like() -> dict:
        return {"big": rng.standard_normal(CHUNK_ELEMENTS + 1000).astype(np.float32),
                "count": rng.integers(0, 100, 3).astype(np.int64), "small": rng.standard_normal((2, 3))}

    model, older = model_like(), model_like()
    updates = [model_like() for _ in range(11)]
    bases = [model if i % 3 else older for i in range(11)]
    contributions = [Contribution(int(rng.integers(1, 50)), 0 if i % 3 else 1) for i in range(11)]
    new, _ = aggregate_tensors(get_strategy(strategy), model, updates, bases, contributions, tmp_path)
    assert tensors_to_bytes(new) == tensors_to_bytes(_legacy(strategy, model, updates, bases, contributions))


def test_the_streamed_output_file_is_the_canonical_safetensors_file(tmp_path: Path) -> None:
    model = {"b": np.zeros(3, np.float64), "a": np.zeros((2, 2), np.float32), "n": np.zeros(1, np.int64)}
    update = {"b": np.ones(3), "a": np.full((2, 2), 2.0, np.float32), "n": np.array([5])}
    out = tmp_path / "out.safetensors"
    written = aggregate_into(get_strategy("fedavg"), InMemory(model), [InMemory(update)], [InMemory(model)], [0],
                             [Contribution(3)], out)
    expected = tensors_to_bytes(update)
    assert out.read_bytes() == expected and written.weights_sha256 == sha256_bytes(expected)


def test_tensor_files_are_read_in_pieces_after_their_header_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    tensors = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "y": np.array([7], np.int64)}
    path.write_bytes(tensors_to_bytes(tensors))
    with TensorFile(path, "the test file") as file:
        assert file.layout == {"x": ((2, 3), "float32"), "y": ((1,), "int64")}
        assert file.read("x", 2, 5).tolist() == [2, 3, 4] and file.read("y", 0, 1).tolist() == [7]
        assert file.tensor("x").tolist() == [[0, 1, 2], [3, 4, 5]]
    path.write_bytes(b"\x80\x04" + b"pickle" * 10)
    with pytest.raises(PickleRefusedError, match="the test file is a Python pickle"):
        TensorFile(path, "the test file")


def test_updates_that_do_not_fit_the_model_are_refused_naming_the_tensor(tmp_path: Path) -> None:
    model = {"w": np.zeros(2, np.float32)}
    with pytest.raises(UpdateError, match=r"update 2's tensors do not fit the model: 'w' is \(3,\)"):
        _run("fedavg", model, [model, {"w": np.zeros(3, np.float32)}], [1, 1], tmp_path)
    assert not (tmp_path / "aggregate.safetensors").exists()


def test_non_finite_results_and_zero_samples_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UpdateError, match="the aggregate of tensor 'w' has values that are not finite float32"):
        _run("fedavg", _t(0.0), [_t(np.inf), _t(1.0)], [1, 1], tmp_path)
    assert not (tmp_path / "aggregate.safetensors").exists()
    # finite in float64, too large for float32: refused, not written as infinity
    with pytest.raises(UpdateError, match="not finite float32 numbers"):
        _run("fedavgm", _t(0.0), [_t(3e38), _t(3e38)], [1, 1], tmp_path, server_lr=10.0)
    # an integer counter pushed beyond int8's range (a stale change of +127 onto 120) is refused, not wrapped
    with pytest.raises(UpdateError, match="tensor 'w' has values that are not finite int8"):
        _run("fedavg", _t(120, dtype=np.int8), [_t(127, dtype=np.int8)], [1], tmp_path,
             bases=[_t(0, dtype=np.int8)], staleness=[1])
    with pytest.raises(UpdateError, match="weights sum to zero"):
        _run("fedavg", _t(0.0), [_t(1.0)], [0], tmp_path)


def test_bad_strategy_parameters_say_what_the_strategy_takes() -> None:
    with pytest.raises(ConfigError, match=r"trimmed-mean@1: fraction: Input should be less than 0\.5") as info:
        get_strategy("trimmed-mean", {"fraction": 0.7})
    assert "fraction" in info.value.hint
    with pytest.raises(ConfigError, match="beta: Extra inputs are not permitted"):
        get_strategy("fedavg", {"beta": 1})
    assert get_strategy("trimmed-mean", {"fraction": 0.25}).parameters() == {"fraction": 0.25}


def test_an_unknown_strategy_lists_the_installed_ones() -> None:
    with pytest.raises(UnknownPluginError, match="unknown aggregation strategy 'no-such'") as info:
        get_strategy("no-such")
    assert all(name in info.value.hint for name in installed_strategies())


def test_an_aggregation_above_the_memory_limit_is_refused_with_its_estimate(tmp_path: Path) -> None:
    model = _t(0.0)
    out = tmp_path / "out.safetensors"
    with pytest.raises(UpdateError, match=r"aggregating 3 updates would hold about \d+ MiB at once, above the "
                                          r"limit of 1 MiB") as info:
        aggregate_into(get_strategy("fedmedian"), InMemory(model), [InMemory(model)] * 3, [InMemory(model)],
                       [0, 0, 0], [Contribution(1)] * 3, out, memory_limit=1 << 20)
    assert "max_memory_bytes" in info.value.hint and not out.exists()


def _write_tensors(path: Path, tensors: dict, sealing: Sealing | None) -> Path:
    plain = path.with_name(path.name + ".plain")
    plain.write_bytes(tensors_to_bytes(tensors))
    if sealing is None:
        plain.rename(path)
    else:
        seal_file(plain, path, sealing)
        plain.unlink()
    return path


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
@pytest.mark.parametrize("spec", [*installed_strategies(), "multi-krum+clip"])
def test_every_strategy_writes_the_same_bytes_on_one_thread_and_on_three(spec: str, sealed: bool,
                                                                         tmp_path: Path) -> None:
    """Chunks computed on several threads, read from files into reused buffers (a sealed file's reader shared by
    the threads), and a stateful strategy's two state tensors read from one state file: the same weights and
    state, bit for bit, as one thread gives."""
    rng = np.random.default_rng(3)
    wallet = Wallet.create(tmp_path / "wallet.json")
    sealing = Sealing({}, (wallet.pubkey,)) if sealed else None
    key_for = (lambda header: header.data_key({}, wallet)) if sealed else None

    def model_like(scale: float = 1.0) -> dict:
        return {"big": (scale * rng.standard_normal(2 * CHUNK_ELEMENTS + 5)).astype(np.float32),
                "half": rng.standard_normal(1000).astype(np.float16), "count": rng.integers(0, 9, 3),
                "empty": np.zeros(0, np.float32)}

    model, older = model_like(), model_like()
    bases = [model if i % 3 else older for i in range(7)]
    updates = [{n: (b[n] + d).astype(b[n].dtype) for n, d in model_like(0.1 * (i + 1)).items()}
               for i, b in enumerate(bases)]
    files = {name: TensorFile(_write_tensors(tmp_path / f"{name}.safetensors", tensors, sealing), name, key_for)
             for name, tensors in [("model", model), ("older", older)]
             + [(f"update-{i}", u) for i, u in enumerate(updates)]}
    name, _, clip = spec.partition("+")
    strategy = get_strategy(name, {"clip_norm": 20.0} if clip else None)
    contributions = [Contribution(10 + i, 0 if i % 3 else 1) for i in range(7)]

    def aggregate(threads: int, out: str, state: TensorFile | None = None) -> tuple[Output, Path]:
        state_out = tmp_path / f"{out}-state.safetensors"
        written = aggregate_into(strategy, files["model"], [files[f"update-{i}"] for i in range(7)],
                                 [files["model"], files["older"]], [0 if i % 3 else 1 for i in range(7)],
                                 contributions, tmp_path / f"{out}.safetensors", state=state,
                                 state_out=state_out if strategy.state else None, sealing=sealing, threads=threads)
        return written, state_out

    _, state_path = aggregate(1, "first")
    state = TensorFile(state_path, "the state", key_for) if strategy.state else None
    one, _ = aggregate(1, "one", state)
    three, _ = aggregate(3, "three", state)
    assert (one.weights_sha256, one.state_sha256) == (three.weights_sha256, three.state_sha256)
    # the same inputs in memory (no file, no buffer): the same result
    (tmp_path / "in-memory").mkdir()
    in_memory, new_state = aggregate_tensors(
        strategy, model, updates, bases, contributions, tmp_path / "in-memory",
        state={n: state.tensor(n) for n in state.layout} if state is not None else None)
    assert sha256_bytes(tensors_to_bytes(in_memory)) == one.weights_sha256
    if strategy.state:
        assert sha256_bytes(tensors_to_bytes(new_state)) == one.state_sha256
    if not sealed:
        assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "three.safetensors").read_bytes()


def test_a_chunk_that_fails_on_a_thread_stops_the_aggregation_and_leaves_no_file(tmp_path: Path) -> None:
    model = {"w": np.zeros(3 * CHUNK_ELEMENTS, np.float32)}
    bad = {"w": np.ones(3 * CHUNK_ELEMENTS, np.float32)}
    bad["w"][-1] = np.inf  # in the last chunk: the threads have others in hand when it fails
    out = tmp_path / "out.safetensors"
    threads_before = threading.active_count()
    with pytest.raises(UpdateError, match="the aggregate of tensor 'w' has values that are not finite"):
        aggregate_into(get_strategy("fedavg"), InMemory(model), [InMemory(bad)], [InMemory(model)], [0],
                       [Contribution(1)], out, threads=2)
    assert not out.exists() and not list(tmp_path.iterdir())
    assert threading.active_count() == threads_before  # no thread left writing after the file was removed


def test_a_tensor_file_refuses_a_buffer_too_small_rather_than_reading_less(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(tensors_to_bytes({"x": np.arange(8, dtype=np.float64)}))
    with TensorFile(path, "the test file") as file:
        assert file.read("x", 2, 6, np.empty(32, np.uint8)).tolist() == [2, 3, 4, 5]
        with pytest.raises(ValueError, match="a buffer of 31 bytes cannot hold elements 2 to 6 of 'x'"):
            file.read("x", 2, 6, np.empty(31, np.uint8))
