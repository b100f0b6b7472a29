"""Safetensors only: pickles and torch checkpoints are refused unopened."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from federity.errors import PickleRefusedError, WeightsError
from federity.weights import read_tensors, tensors_to_bytes
from federity.weights.files import describe_mismatch, tensor_layout


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
