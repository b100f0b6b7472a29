"""Benchmark: how long commit, verify and diff take as the model and the history grow.

Run with `make bench` (or `dvc repro`); parameters come from the root params.yaml (``bench`` section) and the
results are written to bench/results/repository.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from federity.identity import Wallet
from federity.repo import Repository
from federity.weights import read_tensors, tensors_to_bytes

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def run_case(work: Path, wallet: Wallet, hidden: int, commits: int) -> dict[str, float]:
    """Init an MLP repository with ``hidden`` units, make ``commits`` weights commits, verify and diff."""
    repo, init_seconds = _timed(lambda: Repository.init(
        work / f"repo-{hidden}", wallet, name="bench", framework="torch", model="mlp",
        model_args=["in_features=64", f"hidden={hidden}"])[0])
    tensors = read_tensors(repo.store.read(repo.head()), "weights")
    parameters = int(sum(v.size for v in tensors.values()))
    commit_seconds = []
    for i in range(commits):
        path = work / f"w-{hidden}-{i}.safetensors"
        path.write_bytes(tensors_to_bytes({k: v + np.float32(i + 1) for k, v in tensors.items()}))
        commit_seconds.append(_timed(lambda p=path, n=i: repo.commit(wallet, p, f"commit {n}"))[1])
    report, verify_seconds = _timed(repo.verify)
    assert report.ok, report.failures
    _, diff_seconds = _timed(lambda: repo.diff(repo.log()[-1].commit, "HEAD"))
    return {
        "hidden": hidden,
        "parameters": parameters,
        "weights_bytes": len(repo.store.read(repo.head())),
        "init_seconds": round(init_seconds, 3),
        "commit_seconds_median": round(float(np.median(commit_seconds)), 3),
        "verify_seconds": round(verify_seconds, 3),
        "verify_seconds_per_commit": round(verify_seconds / (commits + 1), 4),
        "diff_seconds": round(diff_seconds, 3),
    }


def main() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["bench"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wallet = Wallet.create(work / "owner.json")
        results = [run_case(work, wallet, hidden, params["commits"]) for hidden in params["hidden"]]
    out = ROOT / "bench" / "results" / "repository.json"
    out.write_text(json.dumps({"commits": params["commits"], "cases": results}, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
