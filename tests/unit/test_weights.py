"""Safetensors only: pickles and torch checkpoints are refused unopened."""

from __future__ import annotations

import hashlib
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from federity.errors import PickleRefusedError, WeightsError
from federity.sealing.keys import new_key
from federity.sealing.objects import SealedReader, Sealing, is_sealed
from federity.weights import read_tensors, tensors_to_bytes
from federity.weights.files import describe_mismatch, tensor_layout
from federity.weights.tensor_file import CanonicalWriter


def test_tensors_round_trip_through_safetensors_bytes() -> None:
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(2, np.float64)}
    back = read_tensors(tensors_to_bytes(tensors), "t")
    assert tensor_layout(back) == tensor_layout(tensors)
    assert all(np.array_equal(back[k], tensors[k]) for k in tensors)
    assert tensors_to_bytes(tensors) == tensors_to_bytes(dict(reversed(tensors.items())))


class _Exploit:
    def __reduce__(self):  # pragma: no cover - must never run
        return (Path("/tmp/federity-pwned").touch, ())


def test_pickle_is_refused_without_being_loaded(tmp_path: Path) -> None:
    data = pickle.dumps(_Exploit())
    with pytest.raises(PickleRefusedError, match="never loads pickles"):
        read_tensors(data, "evil.pkl")
    assert not Path("/tmp/federity-pwned").exists()


def test_torch_save_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(2)}, tmp_path / "ckpt.pt")
    with pytest.raises(PickleRefusedError, match=r"torch\.save checkpoint") as info:
        read_tensors((tmp_path / "ckpt.pt").read_bytes(), "ckpt.pt")
    assert "safetensors" in info.value.hint


@pytest.mark.parametrize("data", [b"", b"\x05\x00", b"\xff" * 16, b"\x04\x00\x00\x00\x00\x00\x00\x00[1]x"])
def test_garbage_is_not_taken_for_weights(data: bytes) -> None:
    with pytest.raises(WeightsError, match=r"not a safetensors file|damaged"):
        read_tensors(data, "junk")


def test_layout_mismatch_names_every_difference() -> None:
    expected = {"a": ((2,), "float32"), "b": ((3,), "float32")}
    got = {"a": ((4,), "float32"), "c": ((1,), "float32")}
    assert describe_mismatch(expected, got) == [
        "missing tensor 'b'", "unexpected tensor 'c'", "'a' is (4,) float32, expected (2,) float32",
    ]


def _pieces(tensors: dict[str, np.ndarray], size: int) -> list[tuple[str, int, np.ndarray]]:
    return [(name, start, t.reshape(-1)[start:start + size]) for name, t in sorted(tensors.items())
            for start in range(0, t.size, size)]


@pytest.mark.parametrize("writers", [1, 3], ids=["one writer", "three writers"])
@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
@pytest.mark.parametrize("order", ["front to back", "back to front", "shuffled", "a piece written twice"])
def test_the_canonical_writer_hashes_what_it_wrote_in_any_order(tmp_path: Path, order: str, sealed: bool,
                                                                 writers: int) -> None:
    rng = np.random.default_rng(0)
    tensors = {"a.weight": rng.normal(size=(300, 700)).astype(np.float32), "b.bias": np.arange(9, dtype=np.int64),
               "c": rng.normal(size=(1 << 20,)).astype(np.float32)}  # 5 MiB: more than one hashing block
    expected = tensors_to_bytes(tensors)
    pieces = _pieces(tensors, 65_536)
    if order == "back to front":
        pieces.reverse()
    elif order == "shuffled":
        pieces = [pieces[i] for i in rng.permutation(len(pieces))]
    elif order == "a piece written twice":
        name, start, values = pieces[0]
        pieces = [(name, start, np.zeros_like(values)), *pieces[1:], pieces[0]]  # the zeros were hashed already
    key_id, key = b"k" * 32, new_key()
    out = tmp_path / "out.safetensors"
    writer = CanonicalWriter(out, tensor_layout(tensors), Sealing({key_id: key}) if sealed else None,
                             writers=writers)
    if writers == 1:
        for name, start, values in pieces:
            writer.write(name, start, values)
    else:  # the threads write (and take turns hashing) at once, between a first and a last piece
        first, *middle, last = pieces
        writer.write(*first)
        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(lambda piece: writer.write(*piece), middle))
        writer.write(*last)
    sha256 = writer.finish()
    assert sha256 == hashlib.sha256(expected).hexdigest() and writer.md5 == hashlib.md5(out.read_bytes()).hexdigest()
    assert list(tmp_path.iterdir()) == [out]
    if sealed:  # the sealed object at out, its plaintext written beside it and removed
        assert is_sealed(out.read_bytes()[:8]) and expected[-4096:] not in out.read_bytes()
        with SealedReader(out, lambda header: header.data_key({key_id: key}, None), "out") as reader:
            assert reader.read(0, len(expected)) == expected
    else:
        assert out.read_bytes() == expected


@pytest.mark.parametrize("writers", [1, 3], ids=["one writer", "three writers"])
@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_an_aborted_canonical_writer_leaves_nothing(tmp_path: Path, sealed: bool, writers: int) -> None:
    tensors = {"w": np.ones((1000,), np.float32)}
    writer = CanonicalWriter(tmp_path / "out.safetensors", tensor_layout(tensors),
                             Sealing({b"k" * 32: new_key()}) if sealed else None, writers=writers)
    writer.write("w", 0, tensors["w"][:10])
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_scalar_tensor_keeps_its_empty_shape_through_safetensors() -> None:
    """BatchNorm's step counter is a 0-d int64 tensor: stored as shape (1,), the model would refuse it."""
    tensors = {"bn.num_batches_tracked": np.array(7, np.int64), "bn.weight": np.ones(3, np.float32)}
    back = read_tensors(tensors_to_bytes(tensors), "weights")
    assert back["bn.num_batches_tracked"].shape == () and int(back["bn.num_batches_tracked"]) == 7


def test_the_canonical_writer_keeps_a_scalar_tensor_scalar_and_matches_the_whole_file(tmp_path: Path) -> None:
    """What aggregation and merging write piece by piece is byte for byte what tensors_to_bytes writes, 0-d
    tensors included (a BatchNorm counter stored as (1,) would not load into its model)."""
    tensors = {"bn.num_batches_tracked": np.array(9, np.int64), "w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    writer = CanonicalWriter(tmp_path / "out.safetensors", tensor_layout(tensors))
    for name, value in tensors.items():
        writer.write(name, 0, value.reshape(-1))
    writer.finish()
    assert (tmp_path / "out.safetensors").read_bytes() == tensors_to_bytes(tensors)
    assert read_tensors((tmp_path / "out.safetensors").read_bytes(), "out")["bn.num_batches_tracked"].shape == ()
