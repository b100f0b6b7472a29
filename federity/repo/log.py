"""``federity log`` and ``federity show``: reading the signed history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from federity.proofs.prove import describe as describe_proof
from federity.records import parse_mlflow_note, parse_nft_note
from federity.repo.commits import CommitRecord, read_commit, read_commits
from federity.repo.notes import MLFLOW, NFT, read_note, read_notes
from federity.repo.updates import read_update_record
from federity.weights import read_tensors, sha256_bytes

if TYPE_CHECKING:
    from federity.repo import Repository

NO_PROOF = "none: this commit carries no proof of training"

_GRAPH_FORMAT = (
    "%C(auto)%h%d %C(reset)%<(9,trunc)%(trailers:key=Federity-Kind,valueonly,separator=) "
    "%C(dim)%<(12,trunc)%(trailers:key=Federity-Author,valueonly,separator=)%C(reset) %s"
)


def log(repo: Repository, rev: str | None = None, all: bool = False) -> list[CommitRecord]:
    """The history reachable from ``rev`` (default HEAD), or from every branch and tag with ``all``, with each
    commit's MLflow run id from the notes."""
    if all:
        records = read_commits(repo, "--branches", "--tags", "--remotes")
    else:
        records = read_commits(repo, repo.git.resolve(rev or "HEAD"))
    runs, mints = read_notes(repo, MLFLOW, parse_mlflow_note), read_notes(repo, NFT, parse_nft_note)
    for record in records:
        record.mlflow_run = runs[record.commit].run_id if record.commit in runs else None
        record.nft = mints[record.commit].mint if record.commit in mints else None
    return records


def graph(repo: Repository, rev: str | None = None, all: bool = False, color: bool = False) -> str:
    """``git log --graph`` of the history with each commit's kind and author."""
    revs = ["--branches", "--tags", "--remotes"] if all else [repo.git.resolve(rev or "HEAD")]
    return repo.git.run("log", "--graph", f"--color={'always' if color else 'never'}",
                        f"--format={_GRAPH_FORMAT}", *revs, "--")


def tensor_sha256(value: np.ndarray) -> str:
    """sha256 of a tensor's raw little-endian bytes (C order)."""
    return sha256_bytes(np.ascontiguousarray(value).tobytes())


def show(repo: Repository, rev: str) -> dict[str, Any]:
    """One commit as ``log`` lists it, plus its tensors and what its proof covers."""
    record = read_commit(repo, rev)
    run, mint = read_note(repo, MLFLOW, record.commit, parse_mlflow_note), read_note(repo, NFT, record.commit,
                                                                                      parse_nft_note)
    record.mlflow_run = run.run_id if run else None
    record.nft = mint.mint if mint else None
    update = read_update_record(repo, record.commit) if record.meta and record.meta.kind == "update" else None
    tensors = read_tensors(repo.store.read(record.commit), f"the weights of {record.commit[:12]}")
    return {
        **record.to_json(),
        "update": update,
        "tensors": [
            {"name": name, "shape": list(value.shape), "dtype": str(value.dtype), "sha256": tensor_sha256(value)}
            for name, value in tensors.items()
        ],
        "proof": describe_proof(update["proof"]) if update and update.get("proof") else None,
    }

