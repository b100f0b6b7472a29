"""``federity checkout``, ``branch`` and ``tag``: moving around the history, as git does."""

from __future__ import annotations

from typing import TYPE_CHECKING

from federity.errors import ConfigError
from federity.git import GitError
from federity.records import UPDATE_BRANCH_PREFIX, is_model_branch

if TYPE_CHECKING:
    from federity.repo import Repository


def checkout(repo: Repository, rev: str) -> str:
    """Switch the working tree, weights included, to ``rev`` (a branch stays attached; anything else detaches).

    ``rev``'s tracked tree and DVC manifest are validated before git or DVC writes anything
    (:meth:`~federity.repo.storage.WeightsStore.require_safe`). If the weights cannot be checked out (e.g. storage
    unreachable), the previous checkout is restored.
    """
    is_branch = repo.git.try_resolve(f"refs/heads/{rev}") is not None
    remote_branch = not is_branch and repo.git.try_resolve(f"refs/remotes/origin/{rev}") is not None
    target = repo.git.resolve(f"refs/remotes/origin/{rev}" if remote_branch else rev)
    repo.store.require_safe(target)
    with repo.transaction():
        repo.git.run("checkout", "--quiet", *(["--track", f"origin/{rev}"] if remote_branch else
                                              [rev] if is_branch else ["--detach", target]))
        repo.store.checkout()
    return target


def require_model_branch(name: str) -> str:
    """``name``, when it can be a branch a model lives on (:func:`federity.records.is_model_branch`); else a
    :class:`ConfigError` (an ``updates/…`` branch is reviewed and aggregated, never trained for or merged)."""
    if is_model_branch(name):
        return name
    if name.startswith(UPDATE_BRANCH_PREFIX):
        raise ConfigError(f"{name} is an update's branch: an update reaches a model only through review and "
                          "aggregation", "review it (`federity review approve`) and run `federity aggregate` on "
                          "the branch it was trained for")
    raise ConfigError(f"{name!r} is not a branch a model lives on",
                      "use main or a variant branch: letters, digits, '_', '.' and '-', up to four "
                      "'/'-separated parts")


def branch_tip(repo: Repository, name: str) -> str:
    """The commit of branch ``name``, local or else ``origin``'s."""
    for ref in (f"refs/heads/{name}", f"refs/remotes/origin/{name}"):
        if (commit := repo.git.try_resolve(ref)) is not None:
            return commit
    raise ConfigError(f"there is no branch named {name!r} (locally or on origin)",
                      "`federity pull` fetches origin's branches; `git branch -a` lists them")


def _new_ref(repo: Repository, kind: str, name: str, rev: str | None) -> str:
    target = repo.git.resolve(rev or "HEAD")
    check = ["check-ref-format", "--branch", name] if kind == "branch" else ["check-ref-format", f"refs/tags/{name}"]
    try:
        repo.git.run(*check)
    except GitError:
        raise ConfigError(
            f"{name!r} is not a valid {kind} name", "use letters, digits, '-', '_', '.' and '/'"
        ) from None
    ref = f"refs/{'heads' if kind == 'branch' else 'tags'}/{name}"
    if repo.git.try_resolve(ref) is not None:
        raise ConfigError(f"a {kind} named {name!r} already exists", "choose another name, or delete it with git")
    repo.git.run("update-ref", ref, target, "")
    return target


def branch(repo: Repository, name: str, rev: str | None = None) -> str:
    """Create branch ``name`` at ``rev`` (default HEAD) without switching to it."""
    return _new_ref(repo, "branch", name, rev)


def tag(repo: Repository, name: str, rev: str | None = None) -> str:
    """Create tag ``name`` at ``rev`` (default HEAD)."""
    return _new_ref(repo, "tag", name, rev)
