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
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import numpy as np

from federity.sealing.objects import MAGIC, ObjectHeader, SealedFile, SealedReader, Sealing, is_sealed, no_key
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
    it as a context manager (or call :meth:`close`).

    A sealed file (a private repository's, :mod:`federity.sealing.objects`) is read through a
    :class:`~federity.sealing.objects.SealedReader` with the data key ``key_for`` gives for its header: the
    same pieces, decrypted chunk by chunk (each authenticated before any of it is used)."""

    def __init__(self, path: Path, source: str,
                 key_for: Callable[[ObjectHeader], bytes | None] | None = None) -> None:
        self.source = source
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 -- closed by close()
        self._sealed: SealedReader | None = None
        try:
            if is_sealed(os.pread(self._file.fileno(), len(MAGIC), 0)):
                self._sealed = SealedReader(path, key_for or no_key, source)
                size = self._sealed.size
            else:
                size = os.fstat(self._file.fileno()).st_size
            prefix = self._read(0, min(8, size))
            try:
                length = header_length(prefix, size)
                prefix += self._read(8, length)
                header = parse_header(prefix, size)
            except ValueError as exc:  # the same error read_tensors gives
                raise refusal(prefix, str(exc), source) from None
        except BaseException:
            self.close()
            raise
        self.size = size
        """The size of the (plaintext) safetensors file."""
        data_start = len(prefix)
        self._entries = {name: (tuple(int(d) for d in entry["shape"]),  # type: ignore[union-attr]
                                np.dtype(NUMPY_DTYPES[str(entry["dtype"])]),
                                data_start + int(entry["data_offsets"][0]))  # type: ignore[index]
                         for name, entry in sorted(header.items())}

    @property
    def layout(self) -> Layout:
        """Each tensor's shape and dtype, by name (as :func:`~federity.weights.files.tensor_layout` gives)."""
        return {name: (shape, str(dtype)) for name, (shape, dtype, _) in self._entries.items()}

    def read(self, name: str, start: int, stop: int, into: np.ndarray | None = None) -> np.ndarray:
        """Elements ``start`` to ``stop`` of tensor ``name`` (flattened), read from the file into a new array, or
        into the bytes of ``into`` (a contiguous array at least that large) and returned as a view of them. Safe
        to call from several threads at once."""
        shape, dtype, offset = self._entries[name]
        if not 0 <= start <= stop <= int(np.prod(shape, dtype=np.int64)):
            raise IndexError(f"elements {start} to {stop} are not inside tensor {name!r} of shape {shape}")
        nbytes = (stop - start) * dtype.itemsize
        if into is None:
            out = np.empty(stop - start, dtype)
        elif into.nbytes < nbytes:  # a caller's mistake: never read fewer elements than asked for
            raise ValueError(f"a buffer of {into.nbytes} bytes cannot hold elements {start} to {stop} of {name!r}")
        else:
            out = into.reshape(-1).view(np.uint8)[:nbytes].view(dtype)
        self._read_into(memoryview(out).cast("B"), offset + start * dtype.itemsize)
        return out

    def digest(self, algorithm: str) -> str:
        """The hex digest of the whole (plaintext) file, read in blocks."""
        if self._sealed is not None:
            return self._sealed.digest(algorithm)
        digest = hashlib.new(algorithm, usedforsecurity=False)
        buffer = bytearray(4 << 20)
        for position in range(0, self.size, len(buffer)):
            view = memoryview(buffer)[:min(len(buffer), self.size - position)]
            self._read_into(view, position)
            digest.update(view)
        return digest.hexdigest()

    def _read(self, position: int, length: int) -> bytes:
        out = bytearray(length)
        self._read_into(memoryview(out), position)
        return bytes(out)

    def _read_into(self, view: memoryview, position: int) -> None:
        if self._sealed is not None:
            self._sealed.read_into(view, position)
            return
        done = 0
        while done < len(view):
            count = os.preadv(self._file.fileno(), [view[done:]], position + done)
            if count == 0:
                raise OSError(f"{self.source} ended early")
            done += count

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` whole, in its shape (for small tensors and tests)."""
        shape = self._entries[name][0]
        return self.read(name, 0, int(np.prod(shape, dtype=np.int64))).reshape(shape)

    def close(self) -> None:
        """Close the file."""
        if self._sealed is not None:
            self._sealed.close()
        self._file.close()

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class CanonicalWriter:
    """Writes tensors of ``layout`` to ``path`` as the canonical safetensors file: the header first, then each
    piece of a tensor's data at its place, in any order; :meth:`finish` returns the file's sha256 and sets
    :attr:`md5` (DVC's id of the object).

    Both hashes are computed while the file is written: whenever the written part of the file grows from its
    start, the new bytes are read back from the page cache and hashed, so a writer that goes front to back (the
    aggregation engine, a merge) has its file hashed when it finishes. With one writing thread (``writers=1``),
    a thread of the writer's own hashes, at no cost to the thread that computes (hashlib and ``preadv`` release
    the GIL). With several (the engine on several cores), the writing threads take turns hashing what is ready,
    after their piece: a hashing thread beside them would compete with them for the cores while the hash is
    what finishes last (measured: FedAvg of 10 updates of 100 MB to a hashed file took 0.28 s on two computing
    threads with a hashing thread, 0.24 s with the turns, on two cores). A piece written over bytes already
    hashed makes :meth:`finish` hash the whole file again, so the result is always the file's hash.

    With ``sealing`` (a private repository's), ``path`` receives the sealed object instead
    (:class:`~federity.sealing.objects.SealedFile`), encrypted as it is hashed, from the plaintext, which is
    written beside it (``path`` + ``.plain``) and removed at the end: the sha256 is the plaintext's (what a
    commit signs), :attr:`md5` the sealed object's. The cipher (``cryptography``'s ChaCha20-Poly1305) holds the
    GIL while it encrypts a chunk, so the engine's Python waits for it meanwhile; its numpy work does not.
    """

    def __init__(self, path: Path, layout: Layout, sealing: Sealing | None = None, *, writers: int = 1) -> None:
        header = canonical_header(layout)
        self._layout = layout
        self._offsets: dict[str, int] = {}
        position = len(header)
        for name, (shape, dtype) in canonical_order(layout):
            self._offsets[name] = position
            position += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        self.path = path
        self.md5: str | None = None
        self._size = position
        self._sealing = sealing
        self._plain = path if sealing is None else path.with_name(f"{path.name}.plain")
        self._file = open(self._plain, "w+b")  # noqa: SIM115 -- closed by finish() or abort(); read back to hash
        self._file.write(header)
        self._file.flush()
        self._file.truncate(position)
        self._written = len(header)  # every byte before this offset is written
        self._pieces: dict[int, int] = {}  # pieces written beyond it: start offset → end offset
        self._rewritten = False
        self._state = threading.Condition()
        self._closing = self._aborted = False
        try:
            self._hashes = self._start_hashes()
        except BaseException:  # e.g. a sealing the header cannot hold: nothing is left behind
            self._file.close()
            self._plain.unlink()
            raise
        self._hashing = False  # a writing thread is hashing (when several write)
        self._hasher: threading.Thread | None = None
        if writers == 1:
            self._hasher = threading.Thread(target=self._hash_behind, name=f"hash {path.name}", daemon=True)
            self._hasher.start()

    def _start_hashes(self) -> _FileHashes:
        sealed = None if self._sealing is None else SealedFile(self.path, self._sealing, self._size)
        return _FileHashes(self._file.fileno(), sealed)

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Write ``values`` (cast to the tensor's dtype) as tensor ``name``'s elements from ``start`` on."""
        dtype = np.dtype(self._layout[name][1])
        data = np.ascontiguousarray(values, dtype=dtype)
        offset = self._offsets[name] + start * dtype.itemsize
        os.pwrite(self._file.fileno(), memoryview(data).cast("B"), offset)
        with self._state:
            if offset < self._written:
                self._rewritten = True
            self._pieces[offset] = max(offset + data.nbytes, self._pieces.get(offset, 0))
            while self._written in self._pieces:
                self._written = self._pieces.pop(self._written)
            if self._hasher is not None:
                self._state.notify()
                return
            if self._hashing:
                return  # the thread hashing now goes on up to these bytes
            self._hashing = True
        self._hash_while_ready()

    def _hash_while_ready(self) -> None:
        """A writing thread's turn: hash the written prefix until no written byte is left to hash."""
        while True:
            with self._state:
                until = self._written
                if self._hashes.done >= until or self._hashes.error is not None:
                    self._hashing = False
                    return
            self._hashes.update_to(until)

    def _hash_behind(self) -> None:
        """The hashing thread: hash the written prefix as it grows; at the close, the rest of the file."""
        while True:
            with self._state:
                while self._hashes.done == self._written and not self._closing:
                    self._state.wait()
                if self._aborted:
                    return
                until = self._size if self._closing else self._written
            self._hashes.update_to(until)
            if self._hashes.error is not None or until == self._size:
                return  # finish() hashes again after an error

    def finish(self) -> str:
        """Close the file and return its sha256 (its md5 in :attr:`md5`); nothing of it is held in memory."""
        self._stop(aborted=False)
        try:
            if self._rewritten or self._hashes.error is not None:
                self._hashes.close()
                self._hashes = self._start_hashes()
                self._hashes.update_to(self._size)
                if self._hashes.error is not None:
                    raise self._hashes.error
            self.md5 = self._hashes.finish()
        except BaseException:
            self.abort()
            raise
        finally:
            self._file.close()
        if self._sealing is not None:
            self._plain.unlink()
        return self._hashes.sha256.hexdigest()

    def abort(self) -> None:
        """Close and remove the unfinished file."""
        self._stop(aborted=True)
        self._hashes.close()
        self._file.close()
        self._plain.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)

    def _stop(self, *, aborted: bool) -> None:
        with self._state:
            self._closing, self._aborted = True, aborted
            self._state.notify()
        if self._hasher is not None:
            self._hasher.join()
        elif not aborted:
            self._hashes.update_to(self._size)  # what no write made ready (bytes never written)


class _FileHashes:
    """The sha256 of a file's bytes from its start, read back in blocks as far as :meth:`update_to` is told, and
    either their md5 or, given ``sealed``, those bytes sealed (the sealed object's md5). A read error is kept in
    :attr:`error` (the caller hashes again, or raises it)."""

    def __init__(self, fd: int, sealed: SealedFile | None = None) -> None:
        self._fd = fd
        self.done = 0
        self.sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sealed = sealed
        self.error: OSError | None = None
        self._buffer = bytearray(_HASH_BLOCK)

    def update_to(self, end: int) -> None:
        """Hash the bytes from where the last call stopped up to offset ``end``."""
        view = memoryview(self._buffer)
        while self.done < end and self.error is None:
            try:
                count = os.preadv(self._fd, [view[:min(_HASH_BLOCK, end - self.done)]], self.done)
                if count == 0:
                    raise OSError(f"the file ended at byte {self.done}, before {end}")
                self.sha256.update(view[:count])
                if self._sealed is None:
                    self._md5.update(view[:count])
                else:
                    self._sealed.write(view[:count])  # a full disk raises here
            except OSError as exc:
                self.error = exc
                return
            self.done += count

    def finish(self) -> str:
        """The md5 of the file, or of the sealed object (whose last chunk this seals)."""
        return self._md5.hexdigest() if self._sealed is None else self._sealed.finish()

    def close(self) -> None:
        """Close the sealed object's file, if any."""
        if self._sealed is not None:
            self._sealed.close()


_HASH_BLOCK = 4 << 20
