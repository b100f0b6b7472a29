"""A contributor's site: the workspace clone an edge agent trains in, kept next to the site's private data.

:func:`train_at_site` is what an agent does for one round — bring its clone to the round's base commit, train on
local data, push the update — and what it reports back (ids and metrics only; never data, paths or weights).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from federity.errors import RemoteError
from federity.identity import Wallet
from federity.repo import MAIN_BRANCH, Repository


def workspace(remote: str, directory: Path) -> Repository:
    """The site's clone of ``remote`` in ``directory`` (cloned on first use), on main and up to date."""
    directory = Path(directory)
    if not directory.exists() or not any(directory.iterdir()):
        return Repository.clone(remote, directory)
    repo = Repository.open(directory)
    if repo.git.current_branch() != MAIN_BRANCH:
        repo.checkout(MAIN_BRANCH)
    repo.pull()
    return repo


def train_at_site(remote: str, directory: Path, wallet: Wallet, data: Path, *, base: str, nonce: str | None,
                  epochs: int | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the round's ``base`` model on ``data`` and push the update; return what may leave the site (the
    proof summary holds a sha256, step counts, timings and sizes: no data)."""
    repo = workspace(remote, directory)
    if repo.head() != base:
        raise RemoteError(f"the round's base {base[:12]} is not origin's main ({repo.head()[:12]})",
                          "the round is out of date: the owner should start a new round")
    result = repo.train(wallet, data, base=base, nonce=nonce, epochs=epochs, progress=progress)
    repo.push()
    repo.checkout(MAIN_BRANCH)
    return {"update": result.update, "round": result.round, "n_samples": result.n_samples,
            "metrics": result.metrics, "proof": result.proof}
