"""``federity clone``: a repository and its checked-out weights from a remote."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from federity.config import CONFIG_FILE
from federity.errors import NotARepositoryError, WorkingTreeError
from federity.repo.git import Git

if TYPE_CHECKING:
    from federity.repo import Repository


def clone(url: str, directory: Path) -> Repository:
    """Clone ``url`` into ``directory`` (new or empty) and fetch the checked-out weights from DVC storage.

    On failure the directory is left as it was found.
    """
    from federity.repo import Repository
    from federity.repo.init import is_local_url, local_path

    directory = Path(directory).expanduser().resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise WorkingTreeError(f"{directory} already exists and is not empty", "clone into a new directory")
    existed = directory.exists()
    source = str(local_path(url)) if is_local_url(url) else url
    try:
        Git(directory.parent).remote_run("clone", "--quiet", source, str(directory))
        if not (directory / CONFIG_FILE).is_file():
            raise NotARepositoryError(f"{url} is not a Federity repository (no {CONFIG_FILE})",
                                      "check the URL; `federity init` creates repositories")
        repo = Repository(directory)
        repo.store.pull()
        return repo
    except BaseException:
        if existed:
            for child in directory.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(directory, ignore_errors=True)
        raise
