"""Benchmark: ``federity aggregate`` end to end at K updates of a P-parameter model, against the maths alone on the
same DVC objects, in a public repository (``public``) and in a private one (``private``, whose objects are sealed:
every update is decrypted as it is read, the aggregate encrypted as it is written, before DVC sees it). Writes
``bench/results/aggregate_e2e.json`` and prints the phases.

    python bench/bench_aggregate_e2e.py             # K=10 sites, an MLP of about 25M float32 parameters
    python bench/bench_aggregate_e2e.py --quick     # K=3, about 70k parameters

A real repository: an owner, K contributors each with their own clone, each training an update on its own data
(4 features, 40 rows) and pushing it; the owner pulls and reviews (approves) them. Then, timed:

* ``review_seconds``: the K reviews, which check each update (its DVC object's md5 and sha256, its tensors, its
  finiteness: the first read of each object, remembered afterwards);
* ``aggregate_seconds``: the library call ``Repository.aggregate`` (checks again, the maths from the
  DVC objects, read in pieces, to the output file, DVC tracking, the signed commit), and ``aggregate_phases``:
  the same call's phases, each timed by a wrapper around the function that does it (``the rest``: reading
  the branch head, choosing the strategy, the history snapshot, the transaction). It is the median of three
  later calls in the process, each made after the previous one is undone (main reset, the new object deleted
  from the DVC cache, so the next copies it in again); the first call (``aggregate_first_seconds``,
  ``aggregate_first_phases``) is reported apart. On this virtual machine memory a process touches for the
  first time costs far more than memory it touched before (compare ``maths_first_seconds``, the first of the
  maths runs, with their median), and the first ``dvc add`` in a process builds DVC's graph of the repository
  (about 0.2 s, imports included);
* ``output_hash_seconds``: md5 (DVC's object id) and sha256 (the signed weights hash) of the new weights file,
  each one pass over it: the work an aggregate adds to the maths whatever else is removed;
* ``cli_aggregate_seconds``: the same through the command line, a new process (interpreter start and imports
  included, and the NFT it mints on the embedded ledger), on a second copy of the owner's repository;
* ``maths_seconds``: the engine alone on the same DVC objects (``aggregate_into`` to an in-memory sink; the
  median of three runs, the first of them ``maths_first_seconds``): what the end-to-end figures are compared
  with (``aggregate_over_maths``: the later calls' median over the maths' median;
  ``aggregate_first_over_maths_first``: the first call over the first run);
* ``verify_seconds``: ``Repository.verify`` of the whole repository afterwards (every commit's weights, the
  aggregate recomputed).

Every timed step starts after ``os.sync()``, so no earlier step's writes are still being flushed to disk while
it runs (this machine's disk writes about 0.4 GB/s; a write that waits on it is the disk's time, not Federity's).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "aggregate_e2e.json"
MATHS_RUNS = 3
AGGREGATE_RUNS = 3
PHASES = {
    "checks of the approved updates": ("federity.repo.aggregate", "_approved"),
    "maths (streaming engine, output written, hashed and in a private repository sealed)": (
        "federity.repo.aggregate", "aggregate_weights"),
    "dvc add of the new weights": ("federity.repo.storage", "WeightsStore.track"),
    "signed commit": ("federity.repo.aggregate", "create_commit"),
}


@contextlib.contextmanager
def _timed_phases() -> Iterator[dict[str, float]]:
    """Wrap each phase's function with a timer for the duration of the block; yields phase → seconds."""
    import importlib

    seconds: dict[str, float] = {}
    originals = []
    for label, (module_name, attribute) in PHASES.items():
        owner: Any = importlib.import_module(module_name)
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        function = getattr(owner, name)

        @functools.wraps(function)
        def timed(*args: Any, _function: Any = function, _label: str = label, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _function(*args, **kwargs)
            finally:
                seconds[_label] = round(seconds.get(_label, 0.0) + time.perf_counter() - started, 3)

        setattr(owner, name, timed)
        originals.append((owner, name, function))
    try:
        yield seconds
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)


def _csv(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 4))
    label = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    rows = ["f0,f1,f2,f3,label", *(",".join(f"{v:.6f}" for v in row) + f",{y}" for row, y in zip(x, label,
                                                                                                  strict=True))]
    path.write_text("\n".join(rows) + "\n")
    return path


def _timed_aggregate(repo: Any, owner: Any) -> tuple[Any, float, dict[str, float]]:
    """``repo.aggregate(owner)`` after ``os.sync()``: its result, seconds and phases (``the rest`` included)."""
    os.sync()
    with _timed_phases() as phases:
        started = time.perf_counter()
        result = repo.aggregate(owner)
        seconds = time.perf_counter() - started
    return result, seconds, {**phases, "the rest": round(seconds - sum(phases.values()), 3)}


def _undo(repo: Any, result: Any) -> None:
    """Undo aggregate ``result``: main reset to its first parent, its new object deleted from the DVC cache (so
    that the next aggregate copies it in again)."""
    subprocess.run(["git", "reset", "--quiet", "--hard", result.parents[0]], cwd=repo.root, check=True)
    repo.store.checkout()
    new_object = repo.store.manifest(result.commit)["model.safetensors"]
    (repo.root / ".dvc" / "cache" / "files" / "md5" / new_object[:2] / new_object[2:]).unlink()


def _hash_seconds(path: Path) -> dict[str, float]:
    """Seconds for one md5 and one sha256 pass over ``path`` (read from the page cache)."""
    data = path.read_bytes()
    seconds = {}
    for algorithm in ("md5", "sha256"):
        started = time.perf_counter()
        hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()
        seconds[algorithm] = round(time.perf_counter() - started, 3)
    return seconds


def _measure(work: Path, k: int, hidden: int, public: bool) -> dict[str, Any]:
    """Build the federation under ``work`` (``public`` or private) and time review, aggregate (library and CLI),
    the maths alone and verify."""
    from federity.aggregation import get_strategy
    from federity.aggregation.engine import ArraySink, Contribution, aggregate_into
    from federity.identity import Wallet
    from federity.repo import Repository

    owner = Wallet.create(work / "owner.json")
    repo, _ = Repository.init(work / "owner", owner, name="bench", framework="torch", model="mlp",
                              model_args=["in_features=4", f"hidden={hidden}"], remote=str(work / "remote.git"),
                              public=public)
    sites = [Wallet.create(work / f"site-{i}.json") for i in range(k)]
    for site in sites:
        repo.add_member(owner, site.pubkey, "contributor")
    repo.push()
    for i, wallet in enumerate(sites):
        clone = Repository.clone(str(work / "remote.git"), work / f"site-{i}", wallet=wallet)
        clone.train(wallet, _csv(work / f"data-{i}.csv", i))
        clone.push()
    repo.pull()
    parameters = sum(int(np.prod(shape)) for shape, _ in repo.store.open(repo.head()).layout.values())
    shutil.copytree(repo.root, work / "owner-cli", symlinks=True)

    started = time.perf_counter()
    for update in repo.updates():
        repo.review(owner, update.id, approve=True)
    review_seconds = time.perf_counter() - started
    main_before = repo.head()
    infos = sorted((u for u in repo.updates() if u.status == "approved"), key=lambda u: u.id)
    approved = [u.id for u in infos]

    model = repo.store.open(main_before)
    sources = [repo.store.open(u) for u in approved]
    samples = [u.n_samples for u in infos]
    maths_runs = []
    for _ in range(MATHS_RUNS):
        os.sync()
        started = time.perf_counter()
        aggregate_into(get_strategy("fedavg"), model, sources, [model], [0] * len(sources),
                       [Contribution(n) for n in samples], ArraySink(model.layout))
        maths_runs.append(time.perf_counter() - started)
    maths_seconds = float(np.median(maths_runs))

    first, first_seconds, first_phases = _timed_aggregate(repo, owner)
    again = []  # (seconds, phases) of the later calls, each after the previous one is undone
    result = first
    for _ in range(AGGREGATE_RUNS):
        _undo(repo, result)
        result, seconds, phases = _timed_aggregate(repo, owner)
        again.append((seconds, phases))
    aggregate_seconds, phases = sorted(again, key=lambda run: run[0])[len(again) // 2]
    hash_seconds = _hash_seconds(repo.weights_path)

    cli_repo = work / "owner-cli"
    for update in approved:  # the copy was taken before the reviews: review there too (not timed)
        subprocess.run([sys.executable, "-m", "federity", "--wallet", str(work / "owner.json"), "review",
                        "approve", update], cwd=cli_repo, check=True, capture_output=True)
    os.sync()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "federity", "--wallet", str(work / "owner.json"), "aggregate"],
                   cwd=cli_repo, check=True, capture_output=True)
    cli_seconds = time.perf_counter() - started

    os.sync()
    started = time.perf_counter()
    report = repo.verify()
    verify_seconds = time.perf_counter() - started
    assert report.ok, report.failures
    return {"updates": k, "parameters": parameters, "input_bytes": k * parameters * 4,
            "review_seconds": round(review_seconds, 3), "maths_seconds": round(maths_seconds, 3),
            "maths_first_seconds": round(maths_runs[0], 3), "aggregate_seconds": round(aggregate_seconds, 3),
            "aggregate_phases": phases, "aggregate_first_seconds": round(first_seconds, 3),
            "aggregate_first_phases": first_phases, "output_hash_seconds": hash_seconds,
            "aggregate_over_maths": round(aggregate_seconds / maths_seconds, 2),
            "aggregate_first_over_maths_first": round(first_seconds / maths_runs[0], 2),
            "cli_aggregate_seconds": round(cli_seconds, 3), "verify_seconds": round(verify_seconds, 3),
            "commit": result.commit}


def main() -> None:
    """The public repository's figures (the engine's target), then a private one's (what sealing adds)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="K=3 and a small model; results are not written")
    args = parser.parse_args()
    k, hidden = (3, 10_000) if args.quick else (10, 3_600_000)
    row: dict[str, Any] = {}
    for label, public in (("public", True), ("private", False)):
        work = Path(tempfile.mkdtemp(prefix="bench-e2e-", dir=os.environ.get("BENCH_SCRATCH")))
        try:
            row[label] = _measure(work, k, hidden, public)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(row, indent=2))
    if not args.quick:
        RESULTS.write_text(json.dumps(row, indent=2) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
