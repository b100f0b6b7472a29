"""``federity clone``: a repository and its checked-out weights from a remote."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from federity.config import CONFIG_FILE
from federity.errors import NotARepositoryError
from federity.repo.git import Git
from federity.repo.notes import fetch_notes
from federity.repo.paths import is_local_url, local_path, require_empty_dir, restored_on_failure
from federity.repo.storage import UnsafeCommitError, tree_problems

if TYPE_CHECKING:
    from federity.repo import Repository


def clone(url: str, directory: Path) -> Repository:
    """Clone ``url`` into ``directory`` (new or empty) with its notes, and fetch the checked-out weights from DVC
    storage.

    git clones without checking out; the commit to check out is validated first (its tracked tree: no symlinks,
    gitlinks or files git tracks under ``model/``; then, with the tracked files in place, its DVC manifest),
    and only then does DVC write ``model/``. On failure the directory is left as it was found.
    """
    from federity.repo import Repository

    directory = Path(directory).expanduser().resolve()
    require_empty_dir(directory, "directory")
    source = str(local_path(url)) if is_local_url(url) else url
    directory.parent.mkdir(parents=True, exist_ok=True)
    with restored_on_failure(directory):
        Git(directory.parent).remote_run("clone", "--quiet", "--no-checkout", source, str(directory))
        repo = Repository(directory)
        head = repo.git.try_resolve("HEAD")
        if head is None or repo.git.show_file(head, CONFIG_FILE) is None:
            raise NotARepositoryError(f"{url} is not a Federity repository (no {CONFIG_FILE})",
                                      "check the URL; `federity init` creates repositories")
        problems = tree_problems(repo.git, head)
        if problems:
            raise UnsafeCommitError(
                f"{url} cannot be cloned safely: commit {head[:12]} {'; '.join(problems[:5])}",
                "nothing was cloned; do not use this repository, or ask its owner to remove what is named",
            )
        repo.git.run("checkout", "--quiet")  # the tracked files only: model/ is DVC's, checked below
        fetch_notes(repo)  # reviews, MLflow runs and NFT mints: git clone leaves notes behind
        repo.store.pull()  # validates the manifest (WeightsStore.require_safe) before DVC writes model/
        return repo
