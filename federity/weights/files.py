"""Safetensors files, and the refusal of everything else.

Only safetensors is ever parsed. A pickle, or a ``torch.save`` checkpoint (a zip holding a pickle), is recognised
by its first bytes and refused without being opened: unpickling a foreign file runs arbitrary code.
"""

from __future__ import annotations

import hashlib
import json
import re
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


_MAX_TENSORS = 100_000
_MAX_DIMS = 16
_MAX_ELEMENTS = 2**48
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,255}")
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "I32": 4, "U32": 4, "F32": 4,
             "I64": 8, "U64": 8, "F64": 8}
"""The dtypes Federity reads (those numpy holds; bfloat16 and the 8-bit floats are refused)."""


class _BadHeader(ValueError):
    """Internal: why a safetensors header is refused."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise _BadHeader("a tensor name appears twice")
    return data


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(name: str, entry: object, buffer: int) -> tuple[int, int]:
    """The ``(begin, end)`` byte range of one tensor, after checking its name, dtype, shape and offsets."""
    if not _NAME.fullmatch(name):
        raise _BadHeader(f"tensor name {name[:40]!r} is not a plain name (letters, digits, _ . : -, at most 256)")
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _BadHeader(f"tensor {name!r} is not {{dtype, shape, data_offsets}}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _ITEMSIZE:
        raise _BadHeader(f"tensor {name!r} has a dtype Federity does not read ({str(dtype)[:20]!r})")
    if not isinstance(shape, list) or len(shape) > _MAX_DIMS or not all(
            _is_int(d) and 0 <= d <= _MAX_ELEMENTS for d in shape):
        raise _BadHeader(f"tensor {name!r} has an invalid shape")
    elements = 1
    for dim in shape:
        elements *= max(dim, 1)
        if elements > _MAX_ELEMENTS:
            raise _BadHeader(f"tensor {name!r} has too many elements")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise _BadHeader(f"tensor {name!r} has invalid data_offsets")
    begin, end = offsets
    size = _ITEMSIZE[dtype] * (0 if 0 in shape else elements)
    if not 0 <= begin <= end <= buffer or end - begin != size:
        raise _BadHeader(f"tensor {name!r} has data_offsets that do not fit its shape and the file")
    return begin, end


def read_header(data: bytes) -> dict[str, dict[str, object]]:
    """The tensor table of a safetensors file, checked before any tensor is touched: the 8-byte header length
    within the file (and at most 100 MiB), a UTF-8 JSON object without duplicate names, at most 100,000 tensors
    with plain names, dtypes numpy reads, bounded shapes, and data offsets that tile the data exactly (in range,
    no overlap, no gap). Raises ``ValueError`` with a short reason."""
    return parse_header(data, len(data))


def header_length(prefix: bytes, size: int) -> int:
    """The JSON header's length from a safetensors file's first 8 bytes, checked against the file's ``size``."""
    if size < 8 or len(prefix) < 8:
        raise _BadHeader(f"only {size} bytes")
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > min(_MAX_HEADER, size - 8):
        raise _BadHeader("bad header length")
    return length


def parse_header(prefix: bytes, size: int) -> dict[str, dict[str, object]]:
    """:func:`read_header` of a file of ``size`` bytes whose first bytes are ``prefix`` (at least the 8-byte
    length and the JSON header): what a reader of pieces checks before it reads any tensor."""
    header_len = header_length(prefix, size)
    if len(prefix) < 8 + header_len:
        raise _BadHeader("the header is cut short")
    try:
        header = json.loads(prefix[8 : 8 + header_len].decode("utf-8"), object_pairs_hook=_unique_keys)
    except _BadHeader:
        raise
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _BadHeader("header is not JSON") from None
    if not isinstance(header, dict):
        raise _BadHeader("header is not a table")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _BadHeader("__metadata__ is not a table of strings")
    if len(header) > _MAX_TENSORS:
        raise _BadHeader(f"more than {_MAX_TENSORS} tensors")
    buffer = size - 8 - header_len
    ranges = sorted(_check_entry(name, entry, buffer) for name, entry in header.items())
    position = 0
    for begin, end in ranges:
        if begin != position:
            raise _BadHeader("tensor data overlaps or leaves a gap")
        position = end
    if position != buffer:
        raise _BadHeader("tensor data does not cover the file")
    return header


NUMPY_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "<i2", "U16": "<u2", "F16": "<f2",
                "I32": "<i4", "U32": "<u4", "F32": "<f4", "I64": "<i8", "U64": "<u8", "F64": "<f8"}
"""Each safetensors dtype Federity reads, as a little-endian numpy dtype."""
_SAFETENSORS_DTYPES = {np.dtype(v).str: k for k, v in NUMPY_DTYPES.items()}


_STORAGE_ORDER = ["U64", "I64", "F64", "F32", "U32", "I32", "F16", "U16", "I16", "I8", "U8", "BOOL"]
"""The order in which the safetensors library lays out tensor data: by dtype in this order, then by name."""


def canonical_order(layout: Layout) -> list[tuple[str, tuple[tuple[int, ...], str]]]:
    """The tensors of ``layout`` in the order a canonical safetensors file stores their data."""
    return sorted(layout.items(),
                  key=lambda item: (_STORAGE_ORDER.index(_SAFETENSORS_DTYPES[np.dtype(item[1][1]).str]), item[0]))


def canonical_header(layout: Layout) -> bytes:
    """The first bytes (length, JSON header, padding) of the canonical safetensors file of tensors with this
    ``layout``: byte for byte what :func:`tensors_to_bytes` writes before the data, so a file written tensor by
    tensor after it hashes as the one written whole. Tensors are laid out as the safetensors library lays them out
    (:func:`canonical_order`); a 0-d tensor keeps its shape ``[]`` and holds one value, as
    :func:`tensors_to_bytes` stores it."""
    position, entries = 0, {}
    for name, (shape, dtype) in canonical_order(layout):
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        entries[name] = {"dtype": _SAFETENSORS_DTYPES[np.dtype(dtype).str], "shape": list(shape),
                         "data_offsets": [position, position + size]}
        position += size
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def check_safetensors(data: bytes, source: str) -> None:
    """Raise unless ``data`` is a well-formed safetensors file (:func:`read_header`). ``source`` names it in
    the error.

    Anything that is not safetensors is refused unopened; a pickle or torch checkpoint gets its own error.
    """
    try:
        read_header(data)
    except _BadHeader as exc:
        raise refusal(data[:8], str(exc), source) from None


def refusal(head: bytes, problem: str, source: str) -> WeightsError:
    """The error for a file that is not safetensors (``problem`` says why), from its first bytes ``head``: a
    pickle or torch checkpoint gets its own."""
    if head.startswith(b"FEDSEAL1"):  # federity.sealing.objects.MAGIC (weights sits below sealing)
        return WeightsError(f"{source} is sealed: a private repository's weights, which Federity reads only "
                            "through the repository, with a member's wallet",
                            "export them in plain form first: `federity export REV --format safetensors --out "
                            "FILE`")
    kind = _looks_like_pickle(head)
    if kind:
        return PickleRefusedError(
            f"{source} is {kind}; Federity never loads pickles, because loading one can run arbitrary code",
            _CONVERT_HINT,
        )
    return WeightsError(f"{source} is not a safetensors file Federity reads ({problem})", _CONVERT_HINT)


def read_tensors(data: bytes, source: str) -> dict[str, np.ndarray]:
    """Parse safetensors bytes into named numpy arrays (sorted by name), refusing anything else. The header is
    checked first (:func:`read_header`), so a hostile file is a :class:`WeightsError`, never a huge allocation."""
    check_safetensors(data, source)
    try:
        return dict(sorted(_load(data).items()))
    except Exception as exc:  # safetensors raises its own SafetensorError for any malformed content
        raise WeightsError(f"{source} is a damaged safetensors file: {str(exc)[:200]!r}", _CONVERT_HINT) from None


def tensors_to_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """Serialise named arrays to safetensors bytes (deterministic for equal tensors). Scalars stay scalars (shape
    ``()``, as BatchNorm's step counters are): ``np.ascontiguousarray`` would make them shape ``(1,)``."""
    return _save({name: np.asarray(value, order="C") for name, value in tensors.items()})


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


def stored_values(values: np.ndarray, dtype: np.dtype) -> np.ndarray | None:
    """``values`` (computed in float64) as ``dtype``, integers rounded to the nearest; ``None`` when that is not
    finite or, for an integer tensor, out of the dtype's range."""
    if np.issubdtype(dtype, np.floating):
        with np.errstate(over="ignore", invalid="ignore"):
            stored = np.asarray(values).astype(dtype, copy=False)
        return stored if bool(np.isfinite(stored).all()) else None
    rounded = np.rint(values)
    limits = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.iinfo(np.uint8)
    fits = bool(np.isfinite(rounded).all() and (rounded >= limits.min).all() and (rounded <= limits.max).all())
    return rounded.astype(dtype) if fits else None
