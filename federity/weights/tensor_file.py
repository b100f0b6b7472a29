"""Safetensors files read piece by piece, and written back piece by piece.

:class:`TensorFile` checks a file's header exactly as :func:`~federity.weights.files.read_tensors` does (the same
:func:`~federity.weights.files.parse_header`) before it reads any tensor, then reads ranges of a tensor's
elements on demand (``pread`` into a fresh array), so a reader that walks a file holds only the piece it is on,
however large the file, and however many files it walks at once.

Why not a memory map: on this machine's kernel (Linux 6.18, large page-cache folios) a mapping faults in up to a
whole folio, about 1 MiB, ahead of the reader, and ``madvise(MADV_DONTNEED)`` can give back only what lies
behind it; walking 100 mapped files at once held 100 to 220 MiB of mapped pages. Reading pieces costs a copy
from the page cache, into memory that stays in the processor's cache.

:class:`CanonicalWriter` writes a safetensors file whose bytes equal
:func:`~federity.weights.files.tensors_to_bytes` of the same tensors (so it hashes to the same sha256), taking
each tensor's data in pieces.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import TracebackType

import numpy as np

from federity.weights.files import (
    NUMPY_DTYPES,
    Layout,
    canonical_header,
    canonical_order,
    header_length,
    parse_header,
    refusal,
)


class TensorFile:
    """The tensors of the safetensors file at ``path``, read in pieces; ``source`` names the file in errors. Use
    it as a context manager (or call :meth:`close`)."""

    def __init__(self, path: Path, source: str) -> None:
        self.source = source
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 -- closed by close()
        try:
            size = os.fstat(self._file.fileno()).st_size
            prefix = self._file.read(8)
            try:
                prefix += self._file.read(header_length(prefix, size))
                header = parse_header(prefix, size)
            except ValueError as exc:  # the same error read_tensors gives
                raise refusal(prefix, str(exc), source) from None
        except BaseException:
            self._file.close()
            raise
        data_start = len(prefix)
        self._entries = {name: (tuple(int(d) for d in entry["shape"]),  # type: ignore[union-attr]
                                np.dtype(NUMPY_DTYPES[str(entry["dtype"])]),
                                data_start + int(entry["data_offsets"][0]))  # type: ignore[index]
                         for name, entry in sorted(header.items())}

    @property
    def layout(self) -> Layout:
        """Each tensor's shape and dtype, by name (as :func:`~federity.weights.files.tensor_layout` gives)."""
        return {name: (shape, str(dtype)) for name, (shape, dtype, _) in self._entries.items()}

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Elements ``start`` to ``stop`` of tensor ``name`` (flattened), read from the file into a new array."""
        shape, dtype, offset = self._entries[name]
        if not 0 <= start <= stop <= int(np.prod(shape, dtype=np.int64)):
            raise IndexError(f"elements {start} to {stop} are not inside tensor {name!r} of shape {shape}")
        out = np.empty(stop - start, dtype)
        view = memoryview(out).cast("B")
        position, done = offset + start * dtype.itemsize, 0
        while done < len(view):
            count = os.preadv(self._file.fileno(), [view[done:]], position + done)
            if count == 0:
                raise OSError(f"{self.source} ended early")
            done += count
        return out

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` whole, in its shape (for small tensors and tests)."""
        shape = self._entries[name][0]
        return self.read(name, 0, int(np.prod(shape, dtype=np.int64))).reshape(shape)

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class CanonicalWriter:
    """Writes tensors of ``layout`` to ``path`` as the canonical safetensors file: the header first, then each
    piece of a tensor's data at its place, in any order; :meth:`finish` returns the file's sha256."""

    def __init__(self, path: Path, layout: Layout) -> None:
        header = canonical_header(layout)
        self._layout = layout
        self._offsets: dict[str, int] = {}
        position = len(header)
        for name, (shape, dtype) in canonical_order(layout):
            self._offsets[name] = position
            position += int(np.prod(shape or (1,), dtype=np.int64)) * np.dtype(dtype).itemsize
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 -- closed by finish() or abort()
        self._file.write(header)
        self._file.truncate(position)

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Write ``values`` (cast to the tensor's dtype) as tensor ``name``'s elements from ``start`` on."""
        dtype = np.dtype(self._layout[name][1])
        data = np.ascontiguousarray(values, dtype=dtype)
        os.pwrite(self._file.fileno(), memoryview(data).cast("B"), self._offsets[name] + start * dtype.itemsize)

    def finish(self) -> str:
        """Close the file and return its sha256 (read back in blocks: nothing of it is held in memory)."""
        self._file.close()
        digest = hashlib.sha256()
        buffer = bytearray(_HASH_BLOCK)
        with open(self.path, "rb", buffering=0) as file:
            while count := file.readinto(buffer):
                digest.update(memoryview(buffer)[:count])
        return digest.hexdigest()

    def abort(self) -> None:
        """Close and remove the unfinished file."""
        self._file.close()
        self.path.unlink(missing_ok=True)


_HASH_BLOCK = 4 << 20
