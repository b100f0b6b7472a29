"""Local paths and URLs: which remotes live on this machine, and leaving directories as they were found."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
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


def write_inside(root: Path, relpath: str, data: bytes) -> None:
    """Write ``data`` to ``root/relpath`` without following a symbolic link anywhere below ``root``.

    Each directory on the way is opened with ``O_NOFOLLOW`` (and created when absent); a file already there is
    unlinked (a link is removed, never followed) and the new one created with ``O_EXCL | O_NOFOLLOW``. A link on
    the way raises :class:`WorkingTreeError` and nothing is written.
    """
    parts = relpath.split("/")
    if any(part in ("", ".", "..") for part in parts) or relpath.startswith("/"):
        raise ValueError(f"not a plain relative path: {relpath!r}")
    flags = os.O_RDONLY | os.O_DIRECTORY
    fd = os.open(root, flags)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _link_refused(root, relpath) from None
                raise
            os.close(fd)
            fd = child
        name = parts[-1]
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                raise _link_refused(root, relpath)
            os.unlink(name, dir_fd=fd)
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        with os.fdopen(out, "wb") as stream:
            stream.write(data)
    finally:
        os.close(fd)


def _link_refused(root: Path, relpath: str) -> WorkingTreeError:
    return WorkingTreeError(f"{relpath} in {root} is reached through a symbolic link or is a directory; "
                            "Federity never writes through links",
                            f"remove the link (or directory) at {relpath} and retry")
