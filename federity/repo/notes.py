"""Git notes: facts about a commit known only after it was made (reviews, MLflow run ids), so commit ids stay
stable. Each kind of fact has its own notes ref; a note is one JSON document."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from federity.repo.git import GitError

if TYPE_CHECKING:
    from federity.repo import Repository

REVIEWS = "refs/notes/federity-reviews"
MLFLOW = "refs/notes/federity-mlflow"
NFT = "refs/notes/federity-nft"
ALL_NOTES = "refs/notes/federity-*"
_FETCHED = "refs/federity-fetched-notes/"
_IDENTITY = {"GIT_AUTHOR_NAME": "federity", "GIT_AUTHOR_EMAIL": "notes@federity",
             "GIT_COMMITTER_NAME": "federity", "GIT_COMMITTER_EMAIL": "notes@federity"}


def read_note(repo: Repository, ref: str, commit: str) -> dict[str, Any] | None:
    """The note on ``commit`` in ``ref``, or ``None``; a note that is not a JSON object reads as ``None``."""
    try:
        raw = repo.git.run("notes", "--ref", ref, "show", commit)
    except GitError:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def write_note(repo: Repository, ref: str, commit: str, data: dict[str, Any]) -> None:
    """Set (replace) the note on ``commit`` in ``ref``."""
    repo.git.run("notes", "--ref", ref, "add", "--force", "--file", "-", commit, env=_IDENTITY,
                 input=json.dumps(data, sort_keys=True).encode())


def read_notes(repo: Repository, ref: str) -> dict[str, dict[str, Any]]:
    """Every note in ``ref``, by commit id (one git call for the listing, one for the contents)."""
    try:
        listing = repo.git.run("notes", "--ref", ref, "list")
    except GitError:
        return {}
    pairs = [line.split() for line in listing.splitlines() if line.strip()]
    if not pairs:
        return {}
    out = repo.git.run_bytes("cat-file", "--batch", input="\n".join(blob for blob, _ in pairs).encode())
    notes: dict[str, dict[str, Any]] = {}
    position = 0
    for _, commit in pairs:  # each entry: "<sha> blob <size>\n<content>\n"
        header_end = out.index(b"\n", position)
        size = int(out[position:header_end].split()[2])
        body = out[header_end + 1:header_end + 1 + size]
        position = header_end + 1 + size + 1
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            notes[commit] = data
    return notes


def fetch_notes(repo: Repository) -> None:
    """Bring origin's notes in: fast-forward local notes refs, and merge diverged ones keeping local notes on
    the same commit (a reviewer's unpublished review wins over an older published one)."""
    repo.git.remote_run("fetch", "--quiet", "origin", f"+{ALL_NOTES}:{_FETCHED}*")
    fetched = repo.git.run("for-each-ref", "--format=%(refname) %(objectname)", _FETCHED)
    for line in fetched.splitlines():
        name, theirs = line.split()
        local = "refs/notes/federity-" + name.removeprefix(_FETCHED)
        ours = repo.git.try_resolve(local)
        if ours is None or repo.git.is_ancestor(ours, theirs):
            repo.git.run("update-ref", local, theirs)
        elif not repo.git.is_ancestor(theirs, ours):
            repo.git.run("notes", "--ref", local, "merge", "--quiet", "--strategy", "ours", theirs, env=_IDENTITY)
