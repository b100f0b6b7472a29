"""``federity clone``: a repository and its checked-out weights from a remote.

The remote is hostile until checked: git fetches its history without checking anything out, the same checks as
``pull`` run over everything it presents (one root, the main-line rule, every commit's signature, role and
config), and only then is main checked out and its weights fetched. The genesis commit is recorded
(``federity.genesis`` in the clone's git config), so every later pull is held to the same root. ``genesis``
pins it: pass the repository's genesis commit id, learnt from its owner, to refuse a remote that presents
another history (without it, the clone trusts the root of the remote's main on first use).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from federity.config import CONFIG_FILE
from federity.errors import NotARepositoryError, RemoteError, listed
from federity.git import Git
from federity.identity import Wallet
from federity.repo.checks import incoming_problems
from federity.repo.history import ORIGIN_MAIN_REF, History, record_genesis
from federity.repo.notes import fetch_notes
from federity.repo.paths import is_local_url, local_path, require_empty_dir, restored_on_failure
from federity.repo.privacy import require_reader

if TYPE_CHECKING:
    from federity.repo import Repository


def clone(url: str, directory: Path, genesis: str | None = None, *, wallet: Wallet | None = None,
          wallet_path: Path | None = None) -> Repository:
    """Clone ``url`` into ``directory`` (new or empty) with its notes, check what it presents, and fetch the
    checked-out weights from DVC storage. ``genesis``: the commit id the repository's history must start from.
    A private repository is cloned only for a member: ``wallet`` (else the one at ``wallet_path``, default: the
    default wallet) must be one, or nothing is left and the error names the owners to ask.

    git clones without checking out, and everything the remote presents is checked first
    (:func:`federity.repo.checks.incoming_problems`, which includes each commit's tracked tree: no symlinks,
    gitlinks or files git tracks under ``model/``); then main's tracked files are checked out, its DVC manifest
    validated, and only then does DVC write ``model/``. On failure the directory is left as it was found.
    """
    from federity.repo import MAIN_BRANCH, Repository

    directory = Path(directory).expanduser().resolve()
    require_empty_dir(directory, "directory")
    source = str(local_path(url)) if is_local_url(url) else url
    directory.parent.mkdir(parents=True, exist_ok=True)
    with restored_on_failure(directory):
        Git(directory.parent).remote_run("clone", "--quiet", "--no-checkout", source, str(directory))
        repo = Repository(directory, wallet_path)
        if wallet is not None:
            repo.keys.use(wallet)
        fetch_notes(repo)  # reviews, MLflow runs and NFT mints: git clone leaves notes behind
        _check_remote(repo, url, genesis)
        repo.git.run("checkout", "--quiet", MAIN_BRANCH)  # the tracked files only: model/ is DVC's
        if not (directory / CONFIG_FILE).is_file():
            raise NotARepositoryError(f"{url} is not a Federity repository (no {CONFIG_FILE})",
                                      "check the URL; `federity init` creates repositories")
        repo.store.require_safe(repo.head())  # a hostile manifest is named whoever clones
        require_reader(repo)
        repo.store.pull()  # validates the DVC manifest (WeightsStore.require_safe) before DVC writes model/
        return repo


def _check_remote(repo: Repository, url: str, genesis: str | None) -> None:
    """Refuse a remote whose history the checks reject; record its genesis otherwise."""
    origin_main = repo.git.try_resolve(ORIGIN_MAIN_REF)
    if origin_main is None:
        raise NotARepositoryError(f"{url} has no main branch, so it is not a Federity repository",
                                  "check the URL; `federity init` creates repositories")
    pinned = repo.git.try_resolve(genesis) if genesis else None
    if genesis and pinned is None:
        raise RemoteError(f"{url} does not hold the genesis commit {genesis}",
                          "check the genesis id with the repository's owner, or the URL")
    history = History.load(repo, "refs/remotes", "refs/tags", genesis=pinned)
    if pinned is None:
        history.genesis = history.first_parent_line(origin_main)[-1]
    problems = incoming_problems(history, history.refs, {})
    if problems:
        raise RemoteError(f"{url} presents a history this repository's checks reject, so it was not cloned: "
                          f"{listed(problems)}",
                          "tell the repository's maintainers (the remote may have been tampered with); pass "
                          "--genesis COMMIT to name the history you expect")
    assert history.genesis is not None
    record_genesis(repo, history.genesis)
