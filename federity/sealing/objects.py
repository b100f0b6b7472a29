"""Sealed objects: a file encrypted in chunks under a fresh data key, with that key wrapped in its header.

Layout (all integers little-endian)::

    magic "FEDSEAL1" | chunk size u32 | plaintext size u64 | data key commitment (32) | entry count u16
    entries: 0x01 group key id (32) | salt (16) | wrapped data key (48)        -- for every holder of a group key
             0x02 ephemeral X25519 key (32) | fingerprint (8) | wrapped (48)   -- for one wallet
    chunks:  ciphertext of chunk i | Poly1305 tag (16)

The chunks follow the STREAM construction (Hoang, Reyhanitabar, Rogaway and Vizár, "Online
Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015): chunk ``i`` is sealed with
ChaCha20-Poly1305 under the data key with the nonce ``i`` (11 bytes) followed by 1 for the last chunk and 0 for
the others, and with the BLAKE2b digest of the whole header as associated data. So a chunk moved, dropped,
repeated or taken from another object, a truncated file and an altered header all fail to open, and any chunk
opens alone: readers decrypt only the chunks a range covers, and hold one chunk at a time.

The data key is fresh for each object, so its nonces never repeat. Its commitment (BLAKE2b) in the header makes
every entry open to the same key, or be reported as damaged: ChaCha20-Poly1305 alone does not bind a ciphertext
to one key.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from federity.errors import SealingError
from federity.identity import Wallet
from federity.sealing.keys import (
    ENTRY_BYTES,
    KEY_BYTES,
    TAG_BYTES,
    WRAPPED_BYTES,
    SealedKey,
    key_commitment,
    new_key,
    seal,
    unseal,
    unwrap,
    wrap,
)

MAGIC = b"FEDSEAL1"
CHUNK_SIZE = 1 << 18
"""New objects' chunk size (any power of two from MIN_CHUNK_SIZE to MAX_CHUNK_SIZE opens: the header says which). A
reader keeps its last opened chunk, so reading K objects at once holds K chunks: 25 MiB for 100 updates at
256 KiB, 100 MiB at 1 MiB (which encrypts and decrypts about 10% faster)."""
MIN_CHUNK_SIZE = 1 << 12
MAX_CHUNK_SIZE = 1 << 24
MAX_ENTRIES = 1024
_FIXED = struct.Struct("<8sIQ32sH")
_GROUP_ENTRY = 1 + KEY_BYTES + 16 + WRAPPED_BYTES
_WALLET_ENTRY = 1 + KEY_BYTES + ENTRY_BYTES
_COMMITMENT_PURPOSE = b"data key"


def is_sealed(prefix: bytes) -> bool:
    """Whether a file that starts with ``prefix`` is a sealed object."""
    return prefix.startswith(MAGIC)


def chunk_count(size: int, chunk_size: int) -> int:
    """How many chunks hold ``size`` bytes (one, empty, for nothing)."""
    return max(1, -(-size // chunk_size))


def sealed_size(header_size: int, size: int, chunk_size: int) -> int:
    """The size of a sealed object of ``size`` plaintext bytes."""
    return header_size + size + chunk_count(size, chunk_size) * TAG_BYTES


@dataclass(frozen=True)
class ObjectHeader:
    """A sealed object's header: its parameters and who can open its data key."""

    chunk_size: int
    size: int
    commitment: bytes
    groups: tuple[tuple[bytes, bytes, bytes], ...]  # (group key id, salt, wrapped data key)
    wallets: tuple[SealedKey, ...]
    raw: bytes

    @property
    def digest(self) -> bytes:
        """The associated data of every chunk."""
        return hashlib.blake2b(self.raw, digest_size=32, person=b"federity-object").digest()

    @property
    def wrapping_context(self) -> bytes:
        """What every wrapped data key is bound to: the header's fixed fields."""
        return self.raw[:_FIXED.size - 2]

    def group_ids(self) -> list[bytes]:
        """The ids of the group keys that open the data key."""
        return [key_id for key_id, _, _ in self.groups]

    def data_key(self, group_keys: Mapping[bytes, bytes], wallet: Wallet | None = None) -> bytes | None:
        """The data key, opened with one of ``group_keys`` (id → key) or ``wallet``; ``None`` when neither opens
        it. An entry that opens to another key than the committed one raises :class:`SealingError`."""
        context = self.wrapping_context
        for key_id, salt, wrapped in self.groups:
            if key_id in group_keys:
                key = unwrap(wrapped, group_keys[key_id], salt, context)
                if key is None:
                    raise _damaged("its data key does not open under the group key its header names")
                return self._committed(key)
        if wallet is not None:
            for sealed in self.wallets:
                key = unseal(sealed, wallet, context)
                if key is not None:
                    return self._committed(key)
        return None

    def _committed(self, key: bytes) -> bytes:
        if key_commitment(key, _COMMITMENT_PURPOSE) != self.commitment:
            raise _damaged("an entry of its header opens to another data key than the one it commits to")
        return key


def _damaged(what: str) -> SealingError:
    return SealingError(f"a sealed weights object is damaged or was altered: {what}",
                        "run `federity verify`; fetch the object again (`federity pull`) or ask its author")


@dataclass(frozen=True)
class Sealing:
    """Whom new objects are sealed to: the holders of each group key in ``groups`` (key id → key), and each
    wallet in ``wallets`` (base58 public keys)."""

    groups: Mapping[bytes, bytes]
    wallets: tuple[str, ...] = ()

    def header(self, size: int, data_key: bytes, chunk_size: int = CHUNK_SIZE) -> ObjectHeader:
        """The header of a new object of ``size`` bytes under ``data_key``."""
        return build_header(size, data_key, self.groups, self.wallets, chunk_size)


def build_header(size: int, data_key: bytes, groups: Mapping[bytes, bytes], wallets: Iterable[str],
                 chunk_size: int = CHUNK_SIZE) -> ObjectHeader:
    """The header of an object of ``size`` bytes whose ``data_key`` is wrapped under each group key in
    ``groups`` (id → key) and sealed to each wallet in ``wallets`` (base58 public keys)."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    recipients = list(dict.fromkeys(wallets))
    count = len(groups) + len(recipients)
    if not 0 < count <= MAX_ENTRIES:
        raise ValueError(f"an object's data key is wrapped for 1 to {MAX_ENTRIES} holders, not {count}")
    commitment = key_commitment(data_key, _COMMITMENT_PURPOSE)
    fixed = _FIXED.pack(MAGIC, chunk_size, size, commitment, count)
    context = fixed[:-2]
    raw = bytearray(fixed)
    for key_id, group_key in groups.items():
        salt = os.urandom(16)
        raw += b"\x01" + key_id + salt + wrap(data_key, group_key, salt, context)
    for pubkey in recipients:
        sealed = seal(data_key, [pubkey], context)
        raw += b"\x02" + sealed.ephemeral + sealed.entries
    return parse_header(bytes(raw))


def parse_header(data: bytes) -> ObjectHeader:
    """The header at the start of ``data`` (at least the whole header); :class:`SealingError` when it is not a
    well-formed sealed object's header. Bounds come from the fixed fields, checked before anything is read."""
    if len(data) < _FIXED.size or not is_sealed(data):
        raise _damaged("it does not start with a sealed object's header")
    _, chunk_size, size, commitment, count = _FIXED.unpack_from(data)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or chunk_size & (chunk_size - 1):
        raise _damaged(f"its chunk size {chunk_size} is not a power of two from {MIN_CHUNK_SIZE} to "
                       f"{MAX_CHUNK_SIZE}")
    if not 0 < count <= MAX_ENTRIES:
        raise _damaged(f"it names {count} key entries (1 to {MAX_ENTRIES} allowed)")
    position, groups, wallets = _FIXED.size, [], []
    for _ in range(count):
        kind = data[position:position + 1]
        if kind == b"\x01" and len(data) >= position + _GROUP_ENTRY:
            entry = data[position + 1:position + _GROUP_ENTRY]
            groups.append((entry[:KEY_BYTES], entry[KEY_BYTES:KEY_BYTES + 16], entry[KEY_BYTES + 16:]))
            position += _GROUP_ENTRY
        elif kind == b"\x02" and len(data) >= position + _WALLET_ENTRY:
            entry = data[position + 1:position + _WALLET_ENTRY]
            wallets.append(SealedKey.parsed(entry[:KEY_BYTES], entry[KEY_BYTES:]))
            position += _WALLET_ENTRY
        else:
            raise _damaged("a key entry of its header is cut short or of an unknown kind")
    return ObjectHeader(chunk_size, size, commitment, tuple(groups), tuple(wallets), bytes(data[:position]))


def header_bound() -> int:
    """The most bytes a header can take: enough to read before :func:`parse_header`."""
    return _FIXED.size + MAX_ENTRIES * max(_GROUP_ENTRY, _WALLET_ENTRY)


def no_key(header: ObjectHeader) -> None:
    """The key opener of a reader that holds no key: every sealed object is refused as private."""
    return None


def seal_file(path: Path, out: Path, sealing: Sealing) -> str:
    """Seal the file at ``path`` to ``out`` under a fresh data key; the md5 of ``out`` (DVC's id of the sealed
    object), computed as it is written."""
    with path.open("rb", buffering=0) as plain, SealedFile(out, sealing, os.fstat(plain.fileno()).st_size) as sealed:
        buffer = bytearray(CHUNK_SIZE)
        while count := plain.readinto(buffer):
            sealed.write(memoryview(buffer)[:count])
        return sealed.finish()


class SealedFile:
    """A new sealed object at ``path``, under a fresh data key, of the ``size`` bytes of plaintext given to
    :meth:`write` in order; :meth:`finish` returns its md5 (DVC's id of the object), computed as it is written.
    Use it in a ``with`` block, which closes the file."""

    def __init__(self, path: Path, sealing: Sealing, size: int) -> None:
        data_key = new_key()
        header = sealing.header(size, data_key)
        self._file = path.open("wb")
        self._hashing = _Md5Writer(self._file)
        self._writer = SealedWriter(self._hashing, header, data_key)  # type: ignore[arg-type]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the plaintext."""
        self._writer.write(data)

    def finish(self) -> str:
        """Seal the last chunk and close the file; the object's md5."""
        self._writer.finish()
        self._file.close()
        return self._hashing.md5.hexdigest()

    def close(self) -> None:
        """Close the file (finished or not)."""
        self._file.close()

    def __enter__(self) -> SealedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Md5Writer:
    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.md5 = hashlib.md5(usedforsecurity=False)

    def write(self, data: bytes | memoryview) -> int:
        self.md5.update(data)
        return self._file.write(data)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class SealedWriter:
    """Writes a sealed object to ``file``: the header, then the plaintext given to :meth:`write` (exactly
    ``header.size`` bytes in all, in order), chunk by chunk; :meth:`finish` seals the last chunk."""

    def __init__(self, file: BinaryIO, header: ObjectHeader, data_key: bytes) -> None:
        self._file = file
        self._header = header
        self._cipher = ChaCha20Poly1305(data_key)
        self._aad = header.digest
        self._buffer = bytearray(header.chunk_size)
        self._filled = 0
        self._out = bytearray(header.chunk_size + TAG_BYTES)
        self._index = 0
        self._written = 0
        self._last = chunk_count(header.size, header.chunk_size) - 1
        file.write(header.raw)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the plaintext."""
        view = memoryview(data).cast("B")
        if self._written + len(view) > self._header.size:
            raise ValueError(f"more than the {self._header.size} bytes the header announced")
        self._written += len(view)
        chunk = self._header.chunk_size
        while len(view):
            if self._filled == 0 and len(view) >= chunk and self._index < self._last:
                self._seal(view[:chunk])
                view = view[chunk:]
                continue
            take = min(chunk - self._filled, len(view))
            self._buffer[self._filled:self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == chunk and self._index < self._last:
                self._seal(memoryview(self._buffer))
                self._filled = 0

    def _seal(self, plaintext: memoryview) -> None:
        out = memoryview(self._out)[:len(plaintext) + TAG_BYTES]
        self._cipher.encrypt_into(_nonce(self._index, self._index == self._last), plaintext, self._aad, out)
        self._file.write(out)
        self._index += 1

    def finish(self) -> None:
        """Seal the last chunk; the plaintext must be complete."""
        if self._written != self._header.size or self._index != self._last:
            raise ValueError(f"{self._written} of the {self._header.size} bytes the header announced were written")
        self._seal(memoryview(self._buffer)[:self._filled])


_BUFFERS = threading.local()


def _sealed_buffer(size: int) -> memoryview:
    """A buffer of at least ``size`` bytes for one sealed chunk, shared by every reader on this thread: a reader
    keeps only its last plaintext chunk, so walking K sealed updates at once holds K chunks, not 2K."""
    buffer = getattr(_BUFFERS, "sealed", None)
    if buffer is None or len(buffer) < size:
        buffer = _BUFFERS.sealed = bytearray(size)
    return memoryview(buffer)


class SealedReader:
    """Reads ranges of a sealed object's plaintext, decrypting only the chunks a range covers (the last one
    opened is kept). ``key_for(header)`` gives the data key, or ``None`` when this reader may not open it; the
    file's size must be the one its header implies. Use it as a context manager (or call :meth:`close`)."""

    def __init__(self, path: Path, key_for: Callable[[ObjectHeader], bytes | None], source: str) -> None:
        self.source = source
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 -- closed by close()
        try:
            self.header = parse_header(os.pread(self._file.fileno(), header_bound(), 0))
            file_size = os.fstat(self._file.fileno()).st_size
            expected = sealed_size(len(self.header.raw), self.header.size, self.header.chunk_size)
            if file_size != expected:
                raise _damaged(f"{source} is {file_size} bytes, but its header says {expected}")
            key = key_for(self.header)
            if key is None:
                raise SealingError(f"{source} is private: it is sealed to the repository's members, and this "
                                   "wallet cannot open it", "ask the repository's owner to add your wallet as a "
                                   "member (`federity members add PUBKEY --role reader`)")
        except BaseException:
            self._file.close()
            raise
        self._cipher = ChaCha20Poly1305(key)
        self._aad = self.header.digest
        self._last = chunk_count(self.header.size, self.header.chunk_size) - 1
        self._cached_index = -1
        self._cached = bytearray(self.header.chunk_size)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """The plaintext's size."""
        return self.header.size

    def _chunk(self, index: int) -> memoryview:
        chunk = self.header.chunk_size
        length = min(chunk, self.header.size - index * chunk)
        if index != self._cached_index:
            sealed = _sealed_buffer(chunk + TAG_BYTES)[:length + TAG_BYTES]
            position = len(self.header.raw) + index * (chunk + TAG_BYTES)
            if os.preadv(self._file.fileno(), [sealed], position) != len(sealed):
                raise _damaged(f"{self.source} ended early")
            self._cached_index = -1
            try:
                self._cipher.decrypt_into(_nonce(index, index == self._last), sealed, self._aad,
                                          memoryview(self._cached)[:length])
            except InvalidTag:
                raise _damaged(f"chunk {index} of {self.source} does not authenticate") from None
            self._cached_index = index
        return memoryview(self._cached)[:length]

    def read_into(self, view: memoryview, position: int) -> None:
        """Fill ``view`` with the plaintext from ``position`` on (one thread at a time: the others wait)."""
        if position < 0 or position + len(view) > self.header.size:
            raise IndexError(f"bytes {position} to {position + len(view)} are outside {self.source}")
        chunk, done = self.header.chunk_size, 0
        with self._lock:
            while done < len(view):
                index, offset = divmod(position + done, chunk)
                plain = self._chunk(index)[offset:]
                take = min(len(plain), len(view) - done)
                view[done:done + take] = plain[:take]
                done += take

    def read(self, position: int, length: int) -> bytes:
        """``length`` bytes of plaintext from ``position``."""
        out = bytearray(length)
        self.read_into(memoryview(out), position)
        return bytes(out)

    def digest(self, algorithm: str) -> str:
        """The hex digest of the whole plaintext, every chunk authenticated on the way."""
        digest = hashlib.new(algorithm, usedforsecurity=False)
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def chunks(self) -> Iterable[memoryview]:
        """The whole plaintext, chunk by chunk, each authenticated (the view is reused: copy what you keep)."""
        for index in range(self._last + 1):
            yield self._chunk(index)

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> SealedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
