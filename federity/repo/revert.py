"""``federity revert REV``: a new commit that undoes REV's change to the weights, as ``git revert`` does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from federity.errors import ConfigError
from federity.identity import Wallet
from federity.repo.commits import CommitRecord, create_commit, read_commit
from federity.repo.privacy import sealing_for
from federity.repo.storage import MODEL_DVC_FILE
from federity.weights import read_tensors, sha256_bytes, tensors_to_bytes
from federity.weights.files import require_layout, tensor_layout

if TYPE_CHECKING:
    from federity.repo import Repository


def reverted_tensors(
    head: dict[str, np.ndarray], target: dict[str, np.ndarray], before: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """``head`` with the change ``before → target`` undone: ``head + (before - target)`` per tensor.

    When ``head`` is ``target`` (reverting the latest change) this is exactly ``before``.
    """
    require_layout(tensor_layout(head), target, "the reverted commit's weights")
    require_layout(tensor_layout(head), before, "the weights before the reverted commit")
    if all(np.array_equal(head[n], target[n]) for n in head):
        return {n: before[n].copy() for n in head}
    return {n: (head[n] + (before[n] - target[n])).astype(head[n].dtype) for n in head}


def revert(repo: Repository, wallet: Wallet, rev: str, message: str | None = None) -> CommitRecord:
    """Commit, on the current branch, the current weights with REV's change undone (relative to its first
    parent). Genesis and membership commits cannot be reverted this way."""
    repo.keys.use(wallet)
    target = read_commit(repo, rev)
    if target.meta is None:
        raise ConfigError(f"{rev} is not a Federity commit", "pick a commit listed by `federity log`")
    if target.meta.kind in ("genesis", "members"):
        hint = ("use `federity members add|remove` to change membership" if target.meta.kind == "members"
                else "check out or branch from the commit you want instead")
        raise ConfigError(f"a {target.meta.kind} commit cannot be reverted", hint)
    repo.require_branch()
    head = repo.head()
    tensors = reverted_tensors(
        read_tensors(repo.store.read(head), "the checked-out weights"),
        read_tensors(repo.store.read(target.commit), f"the weights of {rev}"),
        read_tensors(repo.store.read(target.parents[0]), f"the weights before {rev}"),
    )
    data = tensors_to_bytes(tensors)
    with repo.transaction():
        repo.weights_path.write_bytes(data)
        repo.store.track(sealing=sealing_for(repo, wallet, "revert", repo.config(head)))
        return create_commit(
            repo, wallet, "revert", message or f"Revert {target.commit[:12]}: {target.message.splitlines()[0]}",
            [head], reverts=target.commit, paths=(MODEL_DVC_FILE,), weights_sha256=sha256_bytes(data),
        )
