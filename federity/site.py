"""A contributor's site: the workspace clone an edge agent trains in, kept next to the site's private data.

:func:`train_at_site` is what an agent does for one round — bring its clone to the round's base commit, train on
local data, push the update — and what it reports back (ids and metrics only; never data, paths or weights). The
agent's flow runs its stages as separate task runs: :func:`start_training`, the stages of
:class:`~federity.repo.train.LocalTraining`, :func:`publish`.
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
from federity.repo.train import LocalTraining, UpdateResult, prepare_training


def workspace(remote: str, directory: Path, wallet: Wallet, branch: str = MAIN_BRANCH,
              pinned: str | None = None) -> Repository:
    """The site's clone of ``remote`` in ``directory`` (cloned on first use), on ``branch`` and up to date;
    ``wallet`` (the site's) reads the weights if they are private.

    ``remote`` comes with the round, from whoever can write to the Prefect server, so it is held to the site's
    own choice: ``pinned`` (the agent's ``--remote``) when given, and always the remote the workspace was cloned
    from. A round that names another repository is refused before anything is fetched from it."""
    require_model_branch(branch)  # before git sees it: the name comes from the round's parameters
    if pinned is not None and remote != pinned:
        raise RemoteError(f"the round names the repository {remote!r}, but this agent serves {pinned!r}",
                          "a round for another repository must go to another agent (`agent start --remote`)")
    directory = Path(directory)
    fresh = not directory.exists() or not any(directory.iterdir())
    if fresh:
        repo = Repository.clone(remote, directory, wallet=wallet)
    else:
        repo = Repository.open(directory)
        repo.keys.use(wallet)
    if not fresh:
        origin = repo.git.run("remote", "get-url", "origin")
        if origin != remote:
            raise RemoteError(f"the round names the repository {remote!r}, but this agent's workspace is a clone "
                              f"of {origin!r}", "a round for another repository must go to another agent, with "
                              "its own --workspace")
        fetch_checked(repo)  # first, so that a branch origin gained since the last round is known here
    if repo.git.current_branch() != branch:
        repo.checkout(branch)
    if not fresh:
        repo.pull(fetch=False)  # fast-forward to what was just fetched
    return repo


def start_training(remote: str, directory: Path, wallet: Wallet, data: Path, *, base: str, nonce: str | None,
                   branch: str = MAIN_BRANCH, epochs: int | None = None, pinned: str | None = None) -> LocalTraining:
    """Bring the site's clone (:func:`workspace`) to the round's ``base`` (the head of origin's ``branch``) and
    prepare to train on ``data`` (:func:`federity.repo.train.prepare_training`: nothing is read from the data
    yet)."""
    repo = workspace(remote, directory, wallet, branch, pinned)
    if repo.head() != base:
        raise RemoteError(f"the round's base {base[:12]} is not the head of origin's {branch} ({repo.head()[:12]})",
                          "the round is out of date: the owner should start a new round")
    return prepare_training(repo, wallet, data, base=base, branch=branch, nonce=nonce, epochs=epochs)


def publish(training: LocalTraining, update: UpdateResult) -> dict[str, Any]:
    """Push the committed update, return the clone to the round's branch, and say what may leave the site (the
    proof summary holds a sha256, step counts, timings and sizes: no data)."""
    training.repo.push()
    training.repo.checkout(training.branch)
    return {"update": update.update, "round": update.round, "n_samples": update.n_samples,
            "metrics": update.metrics, "proof": update.proof}


def train_at_site(remote: str, directory: Path, wallet: Wallet, data: Path, *, base: str, nonce: str | None,
                  branch: str = MAIN_BRANCH, epochs: int | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One round at a site, whole: :func:`start_training`, check the data, train, commit, :func:`publish`."""
    training = start_training(remote, directory, wallet, data, base=base, nonce=nonce, branch=branch, epochs=epochs)
    training.check_data()
    training.fit(progress)
    return publish(training, training.commit())
