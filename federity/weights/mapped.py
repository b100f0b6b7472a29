"""Safetensors files read in place: memory-mapped, tensor by tensor, and written back chunk by chunk.

:class:`MappedTensors` checks a file's header exactly as :func:`~federity.weights.files.read_tensors` does (the
same :func:`~federity.weights.files.parse_header`) before it maps anything, then hands out read-only views of
each tensor's bytes. Nothing is copied: reading a range faults its pages in from the page cache, and
:meth:`MappedTensors.release` gives them back, so a reader that walks a file once holds only the window it is on,
however large the file.

:class:`CanonicalWriter` writes a safetensors file whose bytes equal :func:`~federity.weights.files.tensors_to_bytes`
of the same tensors (so it hashes to the same sha256), taking each tensor's data in pieces.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
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

_PAGE = mmap.PAGESIZE


class MappedTensors:
    """The tensors of the safetensors file at ``path``, memory-mapped read-only; ``source`` names the file in
    errors. Use it as a context manager (or call :meth:`close`)."""

    def __init__(self, path: Path, source: str) -> None:
        self.source = source
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            prefix = file.read(8)
            try:
                prefix += file.read(header_length(prefix, size))
                header = parse_header(prefix, size)
            except ValueError as exc:  # the same error read_tensors gives
                raise refusal(prefix, str(exc), source) from None
            self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self._data_start = len(prefix)
        self._entries = {name: (tuple(int(d) for d in entry["shape"]),  # type: ignore[union-attr]
                                np.dtype(NUMPY_DTYPES[str(entry["dtype"])]),
                                int(entry["data_offsets"][0]))  # type: ignore[index]
                         for name, entry in sorted(header.items())}

    @property
    def layout(self) -> Layout:
        """Each tensor's shape and dtype, by name (as :func:`~federity.weights.files.tensor_layout` gives)."""
        return {name: (shape, str(dtype)) for name, (shape, dtype, _) in self._entries.items()}

    def flat(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a read-only one-dimensional view of the file (no copy)."""
        shape, dtype, begin = self._entries[name]
        count = int(np.prod(shape, dtype=np.int64))
        if count == 0 or self._map is None:
            return np.zeros(0, dtype)
        return np.frombuffer(self._map, dtype, count, self._data_start + begin)

    def release(self, name: str, stop: int) -> None:
        """Give back the pages of tensor ``name``'s first ``stop`` elements (whole pages only): they stay in the
        page cache, not in this process."""
        _, dtype, begin = self._entries[name]
        start = self._data_start + begin
        end = (start + stop * dtype.itemsize) // _PAGE * _PAGE
        start = start // _PAGE * _PAGE
        if self._map is not None and end > start:
            self._map.madvise(mmap.MADV_DONTNEED, start, end - start)

    def close(self) -> None:
        """Unmap the file (views handed out must no longer be used)."""
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a view is still referenced: the map goes with the last one
                self._map.close()
            self._map = None

    def __enter__(self) -> MappedTensors:
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
