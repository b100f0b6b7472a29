"""The :class:`Repository` front object. Each operation lives in its own module, as in ``dvc/repo/``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from federity.config import CONFIG_FILE, RepoConfig
from federity.errors import NotARepositoryError, WorkingTreeError
from federity.git import Git, GitError
from federity.records import MAIN_BRANCH, UPDATE_FILE
from federity.repo.privacy import KeyChain
from federity.repo.storage import MODEL_DIR, WeightsStore
from federity.weights import WEIGHTS_FILE

__all__ = ["MAIN_BRANCH", "Repository"]


class Repository:
    """A Federity repository: a git working tree with ``federity.yaml`` and DVC-tracked weights."""

    from federity.repo.aggregate import aggregate  # type: ignore[misc]
    from federity.repo.branches import branch, checkout, tag  # type: ignore[misc]
    from federity.repo.clone import clone  # type: ignore[misc]
    from federity.repo.commit import commit  # type: ignore[misc]
    from federity.repo.diff import diff  # type: ignore[misc]
    from federity.repo.export import export  # type: ignore[misc]
    from federity.repo.init import init  # type: ignore[misc]
    from federity.repo.log import graph, log, show  # type: ignore[misc]
    from federity.repo.members import add_member, list_members, remove_member  # type: ignore[misc]
    from federity.repo.merge import merge  # type: ignore[misc]
    from federity.repo.nft import show as nft_show  # type: ignore[misc]
    from federity.repo.nft import sync as nft_sync  # type: ignore[misc]
    from federity.repo.nft import transfer as nft_transfer  # type: ignore[misc]
    from federity.repo.revert import revert  # type: ignore[misc]
    from federity.repo.sync import pull, push  # type: ignore[misc]
    from federity.repo.track import track  # type: ignore[misc]
    from federity.repo.train import train  # type: ignore[misc]
    from federity.repo.updates import check_updates, review  # type: ignore[misc]
    from federity.repo.updates import list_updates as updates  # type: ignore[misc]
    from federity.repo.verify import verify  # type: ignore[misc]

    clone = staticmethod(clone)
    init = staticmethod(init)

    def __init__(self, root: Path, wallet_path: Path | None = None) -> None:
        self.root = Path(root)
        self.git = Git(self.root)
        self.store = WeightsStore(self.root, self.git)
        self.keys = KeyChain(self, wallet_path)
        """Who reads a private repository's weights: the wallet an operation was given, else the one at
        ``wallet_path`` (default: ``$FEDERITY_WALLET`` or the Solana CLI's), loaded when first needed."""
        self.store.keys = self.keys.opener

    @classmethod
    def open(cls, path: Path | str = ".", wallet_path: Path | None = None) -> Repository:
        """The repository whose working tree contains ``path``; ``wallet_path``: the wallet that reads its weights
        if they are private (see :attr:`keys`)."""
        path = Path(path).resolve()
        not_repo = NotARepositoryError(
            f"{path} is not a Federity repository (no {CONFIG_FILE} in a git working tree)",
            "run the command inside a repository, pass --repo DIR, or create one with `federity init`",
        )
        if not path.is_dir():
            raise not_repo
        try:
            top = Git(path).run("rev-parse", "--show-toplevel")
        except GitError:
            raise not_repo from None
        repo = cls(Path(top), wallet_path)
        if not (repo.root / CONFIG_FILE).is_file() or repo.git.try_resolve("HEAD") is None:
            raise not_repo
        return repo

    @property
    def weights_path(self) -> Path:
        """The working tree's weights file."""
        return self.root / MODEL_DIR / WEIGHTS_FILE

    def config(self, commit: str | None = None) -> RepoConfig:
        """``federity.yaml`` at ``commit``, or in the working tree when ``commit`` is ``None``."""
        if commit is None:
            return RepoConfig.from_yaml((self.root / CONFIG_FILE).read_bytes())
        raw = self.git.show_file(commit, CONFIG_FILE)
        if raw is None:
            raise NotARepositoryError(
                f"commit {commit[:12]} has no {CONFIG_FILE}", "this commit is not part of a Federity history"
            )
        return RepoConfig.from_yaml(raw, f"{CONFIG_FILE} at {commit[:12]}")

    def head(self) -> str:
        """The checked-out commit id."""
        return self.git.resolve("HEAD")

    def require_branch(self) -> str:
        """The checked-out branch; a detached HEAD cannot take new commits."""
        branch = self.git.current_branch()
        if branch is None:
            raise WorkingTreeError(
                "HEAD is detached, so a new commit would belong to no branch",
                "create a branch here with `federity branch NAME` and `federity checkout NAME`",
            )
        return branch

    def require_clean(self) -> None:
        """Raise unless tracked files have no uncommitted changes (a change must not mix with the user's)."""
        if not self.git.is_clean():
            raise WorkingTreeError(
                f"{self.root} has uncommitted changes to tracked files",
                "commit them with git, or discard them with `git checkout -- .`, then retry",
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Run a change so that, if it fails, everything local is as before: the checked-out branch (or detached
        HEAD) at its commit, the index, the working tree and ``model/``; branches the change created are deleted
        and an ``update.json`` it left untracked is removed. The one rollback every operation uses."""
        self.require_clean()
        branch, head, branches = self.git.current_branch(), self.head(), self._local_branches()
        try:
            yield
        except BaseException:
            self.git.run("checkout", "--quiet", "--force", *([branch] if branch else ["--detach", head]))
            self.git.run("reset", "--quiet", "--hard", head)
            for created in sorted(self._local_branches() - branches):
                self.git.run("branch", "--quiet", "-D", created)
            self.git.run("clean", "--quiet", "--force", "--", UPDATE_FILE)
            self.store.checkout()
            raise

    def _local_branches(self) -> set[str]:
        return set(self.git.run("for-each-ref", "--format=%(refname:short)", "refs/heads").split())
