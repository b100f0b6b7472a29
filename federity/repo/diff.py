"""``federity diff``: how two commits' weights differ, tensor by tensor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from federity.weights import read_tensors

if TYPE_CHECKING:
    from federity.repo import Repository


def compare_tensors(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per tensor: status (added, removed, changed, unchanged), L2 norm of ``b - a``, cosine of ``a`` and ``b``.

    ``l2`` and ``cosine`` are ``None`` where they are undefined: a tensor present on one side only, a change of
    shape, or a zero tensor (for the cosine).
    """
    rows = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            rows.append({"name": name, "status": "added" if name in b else "removed", "l2": None, "cosine": None})
            continue
        x, y = a[name], b[name]
        if x.shape != y.shape:
            rows.append({"name": name, "status": "changed", "l2": None, "cosine": None})
            continue
        x64, y64 = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
        norms = float(np.linalg.norm(x64) * np.linalg.norm(y64))
        rows.append({
            "name": name,
            "status": "unchanged" if x.dtype == y.dtype and np.array_equal(x, y) else "changed",
            "l2": float(np.linalg.norm(y64 - x64)),
            "cosine": float(np.dot(x64, y64) / norms) if norms > 0 else None,
        })
    return rows


def diff(repo: Repository, a: str, b: str) -> list[dict[str, Any]]:
    """Compare the weights committed at revisions ``a`` and ``b``."""
    commit_a, commit_b = repo.git.resolve(a), repo.git.resolve(b)
    return compare_tensors(
        read_tensors(repo.store.read(commit_a), f"the weights of {a}"),
        read_tensors(repo.store.read(commit_b), f"the weights of {b}"),
    )
