"""``federity push`` and ``federity pull``: weights through DVC storage, history and notes through git.

Push uploads weights before history, so the remote never names weights its storage lacks. Pull fetches origin's
branches and tags into a quarantine namespace and checks them (:func:`federity.repo.checks.incoming_problems`:
one root, the main-line rule, every new commit's signature, role and config) before any local ref moves; a
remote that presents a history ``verify`` would reject is refused, and nothing local changes. The branch moves
only after its weights have arrived.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from federity.errors import RemoteError, WorkingTreeError, listed
from federity.git import GitError
from federity.repo.checks import incoming_problems
from federity.repo.history import LOADED_REFS, History, list_refs
from federity.repo.notes import (
    ALL_NOTES,
    REVIEWS,
    drop_fetched_notes,
    fetch_notes,
    fetch_notes_quarantined,
    fetched,
    merge_fetched_notes,
)

if TYPE_CHECKING:
    from federity.repo import Repository

_NO_REMOTE_HINT = "add one with `git remote add origin URL`, or create the repository with `federity init --remote`"
INCOMING = "refs/federity-incoming/"
_NOTES_PUSH_ATTEMPTS = 3


def _require_origin(repo: Repository) -> None:
    try:
        repo.git.run("remote", "get-url", "origin")
    except GitError:
        raise RemoteError("this repository has no remote named origin", _NO_REMOTE_HINT) from None


def push_notes(repo: Repository) -> None:
    """Publish the notes (reviews, MLflow runs, NFT mints) to origin. When origin's notes moved meanwhile (another
    reviewer published), they are fetched and merged, keeping both sides' notes, and the push is retried."""
    if not repo.git.run("for-each-ref", "--count=1", ALL_NOTES):
        return
    for attempt in range(1, _NOTES_PUSH_ATTEMPTS + 1):
        try:
            repo.git.remote_run("push", "--quiet", "origin", f"{ALL_NOTES}:{ALL_NOTES}")
            return
        except RemoteError:
            if attempt == _NOTES_PUSH_ATTEMPTS:
                raise
            fetch_notes(repo)


def push(repo: Repository) -> str:
    """Publish the current branch (and tags): its weights to DVC storage, then its commits to origin."""
    branch = repo.require_branch()
    _require_origin(repo)
    unpublished = repo.git.run("rev-list", "HEAD", "--not", "--remotes=origin").split()
    repo.store.push(unpublished)
    repo.git.remote_run("push", "--quiet", "--follow-tags", "origin", f"refs/heads/{branch}:refs/heads/{branch}")
    repo.git.run("branch", "--quiet", "--set-upstream-to", f"origin/{branch}")
    push_notes(repo)
    return repo.head()


def fetch_checked(repo: Repository) -> None:
    """Fetch origin's branches, tags and notes, check them, and only then move the remote-tracking branches, add
    the new tags and merge the notes. Raises :class:`RemoteError` (nothing local moved) when origin presents a
    history the checks reject."""
    repo.git.remote_run("fetch", "--quiet", "--no-tags", "--refmap=", "origin", f"+refs/heads/*:{INCOMING}heads/*",
                        f"+refs/tags/*:{INCOMING}tags/*")
    try:
        fetch_notes_quarantined(repo)  # the reviews that approved origin's aggregates
        incoming, not_commits = list_refs(repo, INCOMING)
        history = History.load(repo, *LOADED_REFS, INCOMING)
        history.review_refs = (REVIEWS, fetched(REVIEWS))
        local = {ref: tip for ref, tip in history.refs.items() if not ref.startswith(INCOMING)}
        problems = [f"{name}: it names no commit" for name in _as_origin(dict.fromkeys(not_commits, ""))]
        problems += incoming_problems(history, _as_origin(incoming), local)
        if problems:
            raise RemoteError(
                f"origin presents a history this repository does not accept, so nothing was pulled: {listed(problems)}",
                "nothing local changed; tell the repository's maintainers (their remote may have been tampered "
                "with), and inspect it in a fresh clone with `federity verify`")
        commands = [f"update {ref} {tip}\n" for ref, tip in _as_origin(incoming).items()
                    if local.get(ref) != tip]
        if commands:
            repo.git.run("update-ref", "--stdin", input=("start\n" + "".join(commands) + "commit\n").encode())
        merge_fetched_notes(repo)
    finally:
        repo.git.delete_refs(INCOMING)
        drop_fetched_notes(repo)


def _as_origin(incoming: dict[str, str]) -> dict[str, str]:
    """Quarantined refs under the names they take once accepted."""
    renamed = {}
    for ref, tip in incoming.items():
        name = ref.removeprefix(INCOMING)
        kind, _, rest = name.partition("/")
        renamed[f"refs/remotes/origin/{rest}" if kind == "heads" else f"refs/tags/{rest}"] = tip
    return renamed


def pull(repo: Repository, *, fetch: bool = True) -> str:
    """Fetch and check origin, then fast-forward the current branch, weights included (``fetch=False``: to what
    the last :func:`fetch_checked` brought)."""
    branch = repo.require_branch()
    _require_origin(repo)
    if fetch:
        fetch_checked(repo)
    upstream = repo.git.try_resolve(f"refs/remotes/origin/{branch}")
    if upstream is None:
        raise RemoteError(f"origin has no branch {branch!r}", "push it first with `federity push`")
    if repo.git.run("merge-base", "HEAD", upstream) != upstream:
        repo.store.require_safe(upstream)  # its tree and manifest, before git or DVC writes the working tree
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
