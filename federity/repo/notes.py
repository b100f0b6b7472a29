"""Git notes: facts about a commit known only after it was made (reviews, MLflow run ids), so commit ids stay
stable. Each kind of fact has its own notes ref; a note is one JSON document."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from federity.git import GitError

if TYPE_CHECKING:
    from federity.repo import Repository

REVIEWS = "refs/notes/federity-reviews"
MLFLOW = "refs/notes/federity-mlflow"
NFT = "refs/notes/federity-nft"
ALL_NOTES = "refs/notes/federity-*"
_FETCHED = "refs/federity-fetched-notes/"
T = TypeVar("T")
_IDENTITY = {"GIT_AUTHOR_NAME": "federity", "GIT_AUTHOR_EMAIL": "notes@federity",
             "GIT_COMMITTER_NAME": "federity", "GIT_COMMITTER_EMAIL": "notes@federity"}


def read_note(repo: Repository, ref: str, commit: str, parse: Callable[[dict[str, Any]], T | None]) -> T | None:
    """The note on ``commit`` in ``ref`` as ``parse`` reads it (e.g. :func:`federity.records.parse_nft_note`), or
    ``None`` when it is absent, not a JSON object, or malformed (notes are written by whoever can push)."""
    try:
        raw = repo.git.run_bytes("notes", "--ref", ref, "show", commit)
    except GitError:
        return None
    data = _json_object(raw)
    return None if data is None else parse(data)


def write_note(repo: Repository, ref: str, commit: str, data: dict[str, Any]) -> None:
    """Set (replace) the note on ``commit`` in ``ref``."""
    repo.git.run("notes", "--ref", ref, "add", "--force", "--file", "-", commit, env=_IDENTITY,
                 input=json.dumps(data, sort_keys=True).encode())


def _json_object(raw: bytes | None) -> dict[str, Any] | None:
    try:
        data = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        return None
    return data if isinstance(data, dict) else None


def read_notes(repo: Repository, ref: str, parse: Callable[[dict[str, Any]], T | None]) -> dict[str, T]:
    """Every note in ``ref`` as ``parse`` reads it, by commit id (one git call for the listing, one for the
    contents); a note that is not a JSON object, or that ``parse`` refuses (``None``), is left out."""
    try:
        listing = repo.git.run("notes", "--ref", ref, "list")
    except GitError:
        return {}
    pairs = [line.split() for line in listing.splitlines() if line.strip()]
    contents = repo.git.read_objects([blob for blob, _ in pairs])
    notes = {commit: _json_object(contents[blob]) for blob, commit in pairs}
    parsed = {commit: parse(data) for commit, data in notes.items() if data is not None}
    return {commit: note for commit, note in parsed.items() if note is not None}


def read_note_history(repo: Repository, ref: str) -> dict[str, list[dict[str, Any]]]:
    """Every version of every note ever written in ``ref``'s history, by commit id, oldest first.

    A note that was replaced or removed later is still read, so what a signed note once said cannot be erased
    by writing over it (one ``git log`` and one ``git cat-file`` call)."""
    if repo.git.try_resolve(ref) is None:
        return {}
    raw = repo.git.run("log", "--reverse", "--format=", "--raw", "--no-abbrev", "--no-renames", ref)
    versions: list[tuple[str, str]] = []
    for line in raw.splitlines():  # ":100644 100644 <old> <new> M\t<fanned-out commit path>"
        fields, _, path = line.partition("\t")
        parts = fields.split()
        if len(parts) == 5 and parts[4] in ("A", "M"):
            versions.append((path.replace("/", ""), parts[3]))
    contents = repo.git.read_objects(sorted({blob for _, blob in versions}))
    history: dict[str, list[dict[str, Any]]] = {}
    for commit, blob in versions:
        data = _json_object(contents[blob])
        if data is not None:
            history.setdefault(commit, []).append(data)
    return history


def fetched(ref: str) -> str:
    """Where :func:`fetch_notes_quarantined` puts origin's version of notes ref ``ref``."""
    return _FETCHED + ref.removeprefix("refs/notes/federity-")


def fetch_notes_quarantined(repo: Repository) -> None:
    """Fetch origin's notes beside the local ones (:func:`fetched`), without changing the local notes refs."""
    repo.git.remote_run("fetch", "--quiet", "--no-tags", "--refmap=", "origin", f"+{ALL_NOTES}:{_FETCHED}*")


def merge_fetched_notes(repo: Repository) -> None:
    """Bring the fetched notes in: fast-forward local notes refs, and merge diverged ones keeping local notes on
    the same commit (a reviewer's unpublished review wins over an older published one). Both sides' histories
    are kept, so every note either side ever published stays readable (:func:`read_note_history`)."""
    fetched_refs = repo.git.run("for-each-ref", "--format=%(refname) %(objectname)", _FETCHED)
    for line in fetched_refs.splitlines():
        name, theirs = line.split()
        local = "refs/notes/federity-" + name.removeprefix(_FETCHED)
        ours = repo.git.try_resolve(local)
        if ours is None or repo.git.is_ancestor(ours, theirs):
            repo.git.run("update-ref", local, theirs)
        elif not repo.git.is_ancestor(theirs, ours):
            repo.git.run("notes", "--ref", local, "merge", "--quiet", "--strategy", "ours", theirs, env=_IDENTITY)


def drop_fetched_notes(repo: Repository) -> None:
    """Forget the fetched copies of origin's notes (merged, or refused with what came with them)."""
    repo.git.delete_refs(_FETCHED)


def fetch_notes(repo: Repository) -> None:
    """Fetch origin's notes and merge them into the local ones."""
    try:
        fetch_notes_quarantined(repo)
        merge_fetched_notes(repo)
    finally:
        drop_fetched_notes(repo)
