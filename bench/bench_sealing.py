"""Benchmark: sealing a private repository's weights (federity.sealing). Writes bench/results/sealing.json.

    python bench/bench_sealing.py

* **Encryption and decryption of a 100 MB weights file**, file to file, beside a plain copy of the same file in
  the same run (``shutil.copyfile``, which the kernel does with ``sendfile``): each of the three is run
  ``RUNS`` times, interleaved, after ``os.sync()``, and the medians are reported with throughput in GB/s of
  plaintext. Encryption reads the file in 1 MiB pieces into :class:`~federity.sealing.objects.SealedWriter`;
  decryption writes each authenticated chunk of :class:`~federity.sealing.objects.SealedReader` out.
  ``decrypt_to_memory`` is the same without the output file (what aggregation and verification do, reading
  ranges of tensors).
* **Sealing to 100 members**: creating a keyring for 100 members and an owner, and removing one member (a new
  epoch, sealed to the other 100): the seconds, and the bytes the change adds to the commit (the new keyring
  files, and the same zlib-compressed, as git stores them). And an object's header with its data key wrapped
  under the group key and sealed to its author: its bytes, and the seconds to build it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from federity.identity import Wallet
from federity.sealing.keyring import Keyring
from federity.sealing.keys import new_key
from federity.sealing.objects import CHUNK_SIZE, SealedReader, SealedWriter, build_header
from federity.weights.files import tensors_to_bytes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "sealing.json"
RUNS = 5
MEMBERS = 100


def _timed(action: object) -> float:
    os.sync()
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-sealing-", dir=os.environ.get("BENCH_SCRATCH")))
    try:
        owner = Wallet.create(work / "owner.json")
        members = [Wallet.create(work / f"member-{i}.json").pubkey for i in range(MEMBERS)]
        rng = np.random.default_rng(0)
        weights = {f"layers.{i}.weight": rng.standard_normal((1000, 2500), dtype=np.float32) for i in range(10)}
        source = work / "model.safetensors"
        source.write_bytes(tensors_to_bytes(weights))
        size = source.stat().st_size

        started = time.perf_counter()
        keyring = Keyring.created("bench", {"versions": [owner.pubkey, *members]})
        create_seconds = time.perf_counter() - started
        started = time.perf_counter()
        rotated = keyring.resealed({"versions": [owner.pubkey, *members[1:]]}, owner)
        rotate_seconds = time.perf_counter() - started
        added = {path: raw for path, raw in rotated.files().items() if path not in keyring.files()}
        key_id, group_key = rotated.current_key("versions", owner)

        data_key = new_key()
        started = time.perf_counter()
        header = build_header(size, data_key, {key_id: group_key}, [owner.pubkey])
        header_seconds = time.perf_counter() - started
        keys = rotated.keys(owner)

        def encrypt() -> None:
            buffer = bytearray(CHUNK_SIZE)
            with source.open("rb", buffering=0) as plain, (work / "sealed").open("wb") as out:
                writer = SealedWriter(out, header, data_key)
                while count := plain.readinto(buffer):
                    writer.write(memoryview(buffer)[:count])
                writer.finish()

        def decrypt() -> None:
            with SealedReader(work / "sealed", lambda h: h.data_key(keys, owner), "bench") as reader, \
                    (work / "opened").open("wb") as out:
                for chunk in reader.chunks():
                    out.write(chunk)

        def decrypt_to_memory() -> None:
            with SealedReader(work / "sealed", lambda h: h.data_key(keys, owner), "bench") as reader:
                for _ in reader.chunks():
                    pass

        def copy() -> None:
            shutil.copyfile(source, work / "copied")

        seconds: dict[str, list[float]] = {"copy": [], "encrypt": [], "decrypt": [], "decrypt_to_memory": []}
        for _ in range(RUNS):
            for name, action in (("copy", copy), ("encrypt", encrypt), ("decrypt", decrypt),
                                 ("decrypt_to_memory", decrypt_to_memory)):
                seconds[name].append(_timed(action))
            assert (work / "opened").read_bytes() == source.read_bytes()
            for name in ("copied", "opened"):
                (work / name).unlink()
        sealed_size = (work / "sealed").stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)

    medians = {name: statistics.median(runs) for name, runs in seconds.items()}
    row = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "weights_bytes": size,
        "sealed_bytes": sealed_size,
        "runs": RUNS,
        "seconds_median": {name: round(value, 4) for name, value in medians.items()},
        "gb_per_second": {name: round(size / value / 1e9, 2) for name, value in medians.items()},
        "seconds_all": {name: [round(v, 4) for v in runs] for name, runs in seconds.items()},
        "members": MEMBERS + 1,
        "keyring_create_seconds": round(create_seconds, 4),
        "member_removed": {"seconds": round(rotate_seconds, 4), "files_added": sorted(added),
                           "bytes_added": sum(map(len, added.values())),
                           "bytes_added_compressed": sum(len(zlib.compress(raw)) for raw in added.values())},
        "object_header": {"bytes": len(header.raw), "seconds": round(header_seconds, 5)},
    }
    RESULTS.write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
