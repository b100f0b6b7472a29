"""Safetensors files, and the refusal of everything else.

Only safetensors is ever parsed. A pickle, or a ``torch.save`` checkpoint (a zip holding a pickle), is recognised
by its first bytes and refused without being opened: unpickling a foreign file runs arbitrary code.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import load as _load
from safetensors.numpy import save as _save

from federity.errors import PickleRefusedError, WeightsError

WEIGHTS_FILE = "model.safetensors"
"""The weights file inside the repository's DVC-tracked ``model/`` directory."""

_PICKLE_PROTOCOL_MARK = 0x80
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_HEADER = 100 * 1024 * 1024
_CONVERT_HINT = (
    "convert the checkpoint where it was made, e.g. "
    "`safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')`, and commit that file"
)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _looks_like_pickle(data: bytes) -> str | None:
    if data[:4] == _ZIP_MAGIC:
        return "a torch.save checkpoint (zip with a pickle)"
    if data[:1] == bytes([_PICKLE_PROTOCOL_MARK]) and data[1:2] and 2 <= data[1] <= 5:
        return "a Python pickle"
    return None


def check_safetensors(data: bytes, source: str) -> None:
    """Raise unless ``data`` is a well-formed safetensors file. ``source`` names it in the error.

    Anything that is not safetensors is refused unopened; a pickle or torch checkpoint gets its own error.
    """
    problem = None
    if len(data) < 8:
        problem = f"only {len(data)} bytes"
    else:
        (header_len,) = struct.unpack("<Q", data[:8])
        if header_len > min(_MAX_HEADER, len(data) - 8):
            problem = "bad header length"
        else:
            try:
                if not isinstance(json.loads(data[8 : 8 + header_len]), dict):
                    problem = "header is not a table"
            except (UnicodeDecodeError, json.JSONDecodeError):
                problem = "header is not JSON"
    if problem is None:
        return
    kind = _looks_like_pickle(data)
    if kind:
        raise PickleRefusedError(
            f"{source} is {kind}; Federity never loads pickles, because loading one can run arbitrary code",
            _CONVERT_HINT,
        )
    raise WeightsError(f"{source} is not a safetensors file ({problem})", _CONVERT_HINT)


def read_tensors(data: bytes, source: str) -> dict[str, np.ndarray]:
    """Parse safetensors bytes into named numpy arrays (sorted by name), refusing anything else."""
    check_safetensors(data, source)
    try:
        return dict(sorted(_load(data).items()))
    except Exception as exc:  # safetensors raises its own SafetensorError for any malformed content
        raise WeightsError(f"{source} is a damaged safetensors file: {exc}", _CONVERT_HINT) from None


def tensors_to_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """Serialise named arrays to safetensors bytes (deterministic for equal tensors)."""
    return _save({name: np.ascontiguousarray(value) for name, value in tensors.items()})


def read_tensor_file(path: Path) -> tuple[bytes, dict[str, np.ndarray]]:
    """Read a weights file a user offers, returning its bytes and tensors."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weights file at {path}", "pass the path of a .safetensors file")
    data = path.read_bytes()
    return data, read_tensors(data, str(path))


Layout = dict[str, tuple[tuple[int, ...], str]]


def tensor_layout(tensors: dict[str, np.ndarray]) -> Layout:
    """Each tensor's shape and dtype, by name."""
    return {name: (tuple(value.shape), str(value.dtype)) for name, value in tensors.items()}


def describe_mismatch(expected: Layout, got: Layout) -> list[str]:
    """Human-readable differences between two layouts; empty when they match."""
    problems = [f"missing tensor {n!r}" for n in sorted(set(expected) - set(got))]
    problems += [f"unexpected tensor {n!r}" for n in sorted(set(got) - set(expected))]
    for name in sorted(set(expected) & set(got)):
        if expected[name] != got[name]:
            (got_shape, got_dtype), (want_shape, want_dtype) = got[name], expected[name]
            problems.append(f"{name!r} is {got_shape} {got_dtype}, expected {want_shape} {want_dtype}")
    return problems


def require_layout(expected: Layout, tensors: dict[str, np.ndarray], source: str) -> None:
    """Raise unless ``tensors`` have exactly the ``expected`` names, shapes and dtypes."""
    problems = describe_mismatch(expected, tensor_layout(tensors))
    if problems:
        raise WeightsError(
            f"{source} does not fit the repository's model: " + "; ".join(problems),
            "commit weights saved from the repository's own model architecture",
        )
