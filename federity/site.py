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
from federity.repo.branches import require_model_branch
from federity.repo.sync import fetch_checked


def workspace(remote: str, directory: Path, branch: str = MAIN_BRANCH) -> Repository:
    """The site's clone of ``remote`` in ``directory`` (cloned on first use), on ``branch`` and up to date."""
    require_model_branch(branch)  # before git sees it: the name comes from the round's parameters
    directory = Path(directory)
    fresh = not directory.exists() or not any(directory.iterdir())
    repo = Repository.clone(remote, directory) if fresh else Repository.open(directory)
    if not fresh:
        fetch_checked(repo)  # first, so that a branch origin gained since the last round is known here
    if repo.git.current_branch() != branch:
        repo.checkout(branch)
    if not fresh:
        repo.pull(fetch=False)  # fast-forward to what was just fetched
    return repo


def train_at_site(remote: str, directory: Path, wallet: Wallet, data: Path, *, base: str, nonce: str | None,
                  branch: str = MAIN_BRANCH, epochs: int | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the round's ``base`` model (the head of origin's ``branch``) on ``data`` and push the update; return
    what may leave the site (the proof summary holds a sha256, step counts, timings and sizes: no data)."""
    repo = workspace(remote, directory, branch)
    if repo.head() != base:
        raise RemoteError(f"the round's base {base[:12]} is not the head of origin's {branch} ({repo.head()[:12]})",
                          "the round is out of date: the owner should start a new round")
    result = repo.train(wallet, data, base=base, branch=branch, nonce=nonce, epochs=epochs, progress=progress)
    repo.push()
    repo.checkout(branch)
    return {"update": result.update, "round": result.round, "n_samples": result.n_samples,
            "metrics": result.metrics, "proof": result.proof}
