"""``federity push`` and ``federity pull``: weights through DVC storage, history and notes through git.

Push uploads weights before history, so the remote never names weights its storage lacks; pull moves the
branch only after the weights have arrived.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from federity.errors import RemoteError, WorkingTreeError
from federity.repo.git import GitError
from federity.repo.notes import ALL_NOTES, fetch_notes

if TYPE_CHECKING:
    from federity.repo import Repository

_NO_REMOTE_HINT = "add one with `git remote add origin URL`, or create the repository with `federity init --remote`"


def _require_origin(repo: Repository) -> None:
    try:
        repo.git.run("remote", "get-url", "origin")
    except GitError:
        raise RemoteError("this repository has no remote named origin", _NO_REMOTE_HINT) from None


def push_notes(repo: Repository) -> None:
    """Publish the notes (reviews, MLflow runs, NFT mints) to origin."""
    if repo.git.run("for-each-ref", "--count=1", ALL_NOTES):
        repo.git.remote_run("push", "--quiet", "origin", f"{ALL_NOTES}:{ALL_NOTES}")


def push(repo: Repository) -> str:
    """Publish the current branch (and tags): its weights to DVC storage, then its commits to origin."""
    branch = repo.require_branch()
    _require_origin(repo)
    unpublished = repo.git.run("rev-list", "HEAD", "--not", "--remotes=origin").split()
    repo.store.push(unpublished)
    repo.git.remote_run("push", "--quiet", "--follow-tags", "origin", f"refs/heads/{branch}:refs/heads/{branch}")
    push_notes(repo)
    repo.git.run("branch", "--quiet", "--set-upstream-to", f"origin/{branch}")
    return repo.head()


def pull(repo: Repository) -> str:
    """Fetch origin and fast-forward the current branch, weights included."""
    branch = repo.require_branch()
    _require_origin(repo)
    repo.git.remote_run("fetch", "--quiet", "--tags", "origin")
    fetch_notes(repo)
    upstream = repo.git.try_resolve(f"refs/remotes/origin/{branch}")
    if upstream is None:
        raise RemoteError(f"origin has no branch {branch!r}", "push it first with `federity push`")
    if repo.git.run("merge-base", "HEAD", upstream) != upstream:
        with repo.transaction():
            try:
                repo.git.run("merge", "--quiet", "--ff-only", upstream)
            except GitError:
                raise WorkingTreeError(
                    f"local {branch} and origin/{branch} have diverged",
                    f"keep your commits on another branch (`federity branch NAME`), then reset {branch} to "
                    f"origin/{branch} with git",
                ) from None
            repo.store.checkout()
    return repo.head()
