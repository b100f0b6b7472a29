"""Local paths and URLs: which remotes live on this machine, and leaving directories as they were found."""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from federity.errors import WorkingTreeError

_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")


def is_local_url(url: str) -> bool:
    """Whether a git or storage URL names a path on this machine (plain path or ``file://``)."""
    return url.startswith("file://") or ("://" not in url and not _SCP_LIKE.match(url))


def local_path(url: str) -> Path:
    """The absolute path a local URL names."""
    return Path(url.removeprefix("file://")).expanduser().resolve()


def default_storage_for(remote_path: Path) -> Path:
    """DVC storage beside a local bare git remote: ``/x/model.git`` → ``/x/model.storage``."""
    return remote_path.with_name(remote_path.name.removesuffix(".git") + ".storage")


def require_empty_dir(path: Path, what: str) -> None:
    """Raise unless ``path`` is absent or an empty directory."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise WorkingTreeError(f"{what} {path} already exists and is not empty",
                               "choose a new directory, or empty this one first")


@contextlib.contextmanager
def restored_on_failure(directory: Path) -> Iterator[None]:
    """If the body fails, remove ``directory`` (when it did not exist) or empty it again (when it was empty)."""
    existed = directory.exists()
    try:
        yield
    except BaseException:
        if existed:
            for child in directory.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        else:
            shutil.rmtree(directory, ignore_errors=True)
        raise
