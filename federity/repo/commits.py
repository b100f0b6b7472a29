"""Reading and writing Federity commits: git commits whose messages carry signed metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from federity.config import RepoConfig, Role
from federity.errors import PermissionDeniedError
from federity.git import is_commit_id
from federity.identity import Wallet
from federity.repo.metadata import CommitMeta, ParentRef, format_message, parse_message, signing_payload

if TYPE_CHECKING:
    from federity.repo import Repository

REQUIRED_ROLE: dict[str, Role] = {
    "genesis": Role.OWNER,
    "weights": Role.MAINTAINER,
    "update": Role.CONTRIBUTOR,
    "aggregate": Role.MAINTAINER,
    "merge": Role.MAINTAINER,
    "revert": Role.MAINTAINER,
    "members": Role.MAINTAINER,
}
"""The commit kinds, and the least role the author of each must hold in the first parent's federity.yaml.
``weights`` is a maintainer's direct commit of new weights (``federity commit``, on any branch); ``update`` a
contributor's, on a branch other than main (``federity train``, or ``federity commit``)."""

_FIELD_SEP, _RECORD_SEP = "\x00", "\x1e"
_LOG_FORMAT = "%H%x00%P%x00%T%x00%B%x1e"  # git writes the separators above


@dataclass
class CommitRecord:
    """One commit as Federity reads it."""

    commit: str
    parents: list[str]
    tree: str
    message: str
    meta: CommitMeta | None
    problems: list[str] = field(default_factory=list)
    nft: str | None = None
    mlflow_run: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The commit as `federity log --json` lists it."""
        meta = self.meta
        return {
            "commit": self.commit,
            "parents": self.parents,
            "kind": meta.kind if meta else None,
            "author": meta.author if meta else None,
            "round": meta.round if meta else None,
            "weights_sha256": meta.weights_sha256 if meta else None,
            "message": self.message,
            "nft": self.nft,
            "mlflow_run": self.mlflow_run,
        }


def read_commits(repo: Repository, *rev_args: str) -> list[CommitRecord]:
    """The commits ``git log REV_ARGS`` lists, newest first, parsed."""
    out = repo.git.run("log", f"--format={_LOG_FORMAT}", *rev_args, "--")
    records = []
    for chunk in out.split(_RECORD_SEP):
        chunk = chunk.lstrip("\n")
        if not chunk:
            continue
        commit, parents, tree, raw = chunk.split(_FIELD_SEP, 3)
        parsed = parse_message(raw)
        records.append(CommitRecord(commit, parents.split(), tree, parsed.message, parsed.meta, parsed.problems))
    return records


def read_commit(repo: Repository, rev: str) -> CommitRecord:
    """The one commit ``rev`` names."""
    return read_commits(repo, "-1", repo.git.resolve(rev))[0]


def parent_refs(repo: Repository, parents: list[str]) -> list[ParentRef]:
    """Parents as the signed payload names them: commit id and recorded weights sha256 (read in one git call)."""
    if not parents:
        return []
    ids = [parent if is_commit_id(parent) else repo.git.resolve(parent) for parent in parents]
    metas = {record.commit: record.meta for record in read_commits(repo, "--no-walk=unsorted", *ids)}
    return [ParentRef(commit, metas[commit].weights_sha256 if metas.get(commit) else None) for commit in ids]


def create_commit(
    repo: Repository,
    wallet: Wallet,
    kind: str,
    message: str,
    parents: list[str],
    *,
    round: int | None = None,
    reverts: str | None = None,
    proof_sha256: str | None = None,
    strategy: str | None = None,
    strategy_params: str | None = None,
    paths: tuple[str, ...] = (),
    weights_sha256: str | None = None,
    config: RepoConfig | None = None,
) -> CommitRecord:
    """Stage ``paths``, sign and write a commit of ``kind`` on the current branch, and move the branch to it.
    ``weights_sha256``: the sha256 of the (plaintext) weights file the commit tracks, when the caller computed
    it as it wrote the file (otherwise it is read from ``model/``, and opened first if it is sealed);
    ``config``: the first parent's ``federity.yaml``, when the caller has read it.

    The author must hold :data:`REQUIRED_ROLE` for ``kind`` in the first parent's federity.yaml (the
    commit's own, for a genesis commit).
    """
    config = config or repo.config(parents[0] if parents else None)
    require_role(config.role_of(wallet.pubkey), kind, wallet.pubkey)
    if paths:
        repo.git.run("add", "--all", "--", *paths)
    tree = repo.git.run("write-tree")
    weights_sha256 = weights_sha256 or repo.store.worktree_weights_sha256()
    if round is None:
        first_parent_meta = read_commit(repo, parents[0]).meta if parents else None
        round = first_parent_meta.round if first_parent_meta else 0
    meta = CommitMeta(kind=kind, author=wallet.pubkey, weights_sha256=weights_sha256, round=round,
                      reverts=reverts, proof_sha256=proof_sha256, strategy=strategy,
                      strategy_params=strategy_params)
    meta.signature = wallet.sign(signing_payload(config.id, meta, message, tree, parent_refs(repo, parents)))
    identity = {
        "GIT_AUTHOR_NAME": wallet.pubkey, "GIT_AUTHOR_EMAIL": f"{wallet.pubkey}@wallet.federity",
        "GIT_COMMITTER_NAME": wallet.pubkey, "GIT_COMMITTER_EMAIL": f"{wallet.pubkey}@wallet.federity",
    }
    parent_args = [arg for parent in parents for arg in ("-p", parent)]
    commit = repo.git.run("commit-tree", tree, *parent_args, "-F", "-", env=identity,
                          input=format_message(message, meta).encode())
    repo.git.run("update-ref", "-m", f"federity: {kind}", "HEAD", commit, *(parents[:1] or [""]))
    repo.git.run("reset", "--quiet")  # the index now equals the new commit's tree
    return read_commit(repo, commit)


def require_role(role: Role | None, kind: str, pubkey: str) -> None:
    """Raise unless a wallet with ``role`` may author a ``kind`` commit."""
    needed = REQUIRED_ROLE[kind]
    if role is None or role < needed:
        held = f"holds the role {role.label}" if role is not None else "is not a member"
        raise PermissionDeniedError(
            f"wallet {pubkey} {held}; a {kind} commit needs {needed.label} or above",
            "sign with a wallet that holds that role (--wallet), or ask an owner to "
            f"`federity members add {pubkey} --role {needed.label}`",
        )
