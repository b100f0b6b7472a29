"""``federity clone``: a repository and its checked-out weights from a remote."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from federity.config import CONFIG_FILE
from federity.errors import NotARepositoryError
from federity.repo.git import Git
from federity.repo.notes import fetch_notes
from federity.repo.paths import is_local_url, local_path, require_empty_dir, restored_on_failure

if TYPE_CHECKING:
    from federity.repo import Repository


def clone(url: str, directory: Path) -> Repository:
    """Clone ``url`` into ``directory`` (new or empty) with its notes, and fetch the checked-out weights from DVC
    storage.

    On failure the directory is left as it was found.
    """
    from federity.repo import Repository

    directory = Path(directory).expanduser().resolve()
    require_empty_dir(directory, "directory")
    source = str(local_path(url)) if is_local_url(url) else url
    directory.parent.mkdir(parents=True, exist_ok=True)
    with restored_on_failure(directory):
        Git(directory.parent).remote_run("clone", "--quiet", source, str(directory))
        if not (directory / CONFIG_FILE).is_file():
            raise NotARepositoryError(f"{url} is not a Federity repository (no {CONFIG_FILE})",
                                      "check the URL; `federity init` creates repositories")
        repo = Repository(directory)
        fetch_notes(repo)  # reviews, MLflow runs and NFT mints: git clone leaves notes behind
        repo.store.pull()
        return repo
