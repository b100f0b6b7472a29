"""A thin wrapper over the ``git`` command line: the one place Federity runs git."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from federity.errors import FederityError, RemoteError, RevisionNotFoundError

_NEUTRAL_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
}


_COMMIT_ID = re.compile(r"[0-9a-f]{40}")


def is_commit_id(rev: str) -> bool:
    """Whether ``rev`` is a full commit id (which names one commit, and one tree, for ever)."""
    return _COMMIT_ID.fullmatch(rev) is not None


class GitError(FederityError):
    """A git command failed for a reason Federity did not anticipate."""


class Git:
    """Runs git in one working tree."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def run(self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None) -> str:
        """Run ``git ARGS`` and return stdout (stripped of the final newline); raise :class:`GitError`."""
        return self.run_bytes(*args, env=env, input=input).decode().rstrip("\n")

    def run_bytes(self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None) -> bytes:
        """Run ``git ARGS`` and return raw stdout."""
        proc = subprocess.run(
            ["git", *args],
            cwd=self.root,
            input=input,
            capture_output=True,
            env={**os.environ, **_NEUTRAL_ENV, **(env or {})},
            check=False,
        )
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace").strip()
            raise GitError(f"git {args[0]} failed: {stderr}", "see git's message above")
        return proc.stdout

    def remote_run(self, *args: str) -> str:
        """Run a git command that talks to a remote; a failure becomes a :class:`RemoteError`."""
        try:
            return self.run(*args)
        except GitError as exc:
            raise RemoteError(
                f"the git remote could not be reached or refused: {exc.message}",
                "check the remote URL (`git remote -v`) and your access to it, then retry",
            ) from None

    def resolve(self, rev: str) -> str:
        """The full commit id ``rev`` names; an unknown revision raises :class:`RevisionNotFoundError`."""
        try:
            return self.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
        except GitError:
            raise RevisionNotFoundError(
                f"unknown revision {rev!r}",
                "use a commit id, branch or tag from `federity log --all` (or `federity pull` first)",
            ) from None

    def try_resolve(self, rev: str) -> str | None:
        """Like :meth:`resolve`, but ``None`` for an unknown revision (e.g. an unborn branch)."""
        try:
            return self.resolve(rev)
        except RevisionNotFoundError:
            return None

    def object_id(self, name: str) -> str | None:
        """The id of the object ``name`` names (e.g. ``<rev>:<path>``), or ``None`` when it names none."""
        try:
            return self.run("rev-parse", "--verify", "--quiet", "--end-of-options", name)
        except GitError:
            return None

    def show_file(self, commit: str, path: str) -> bytes | None:
        """The content of ``path`` at ``commit``, or ``None`` if it is absent there."""
        try:
            return self.run_bytes("show", f"{commit}:{path}")
        except GitError:
            return None

    def read_objects(self, names: list[str]) -> dict[str, bytes | None]:
        """The content of each object ``names`` lists (``<commit>:<path>`` or an object id), in one
        ``git cat-file --batch`` call; ``None`` for a name that names no object."""
        if not names:
            return {}
        out = self.run_bytes("cat-file", "--batch", input="".join(f"{name}\n" for name in names).encode())
        contents: dict[str, bytes | None] = {}
        position = 0
        for name in names:  # each answer: "<sha> <type> <size>\n<content>\n", or "<name> missing\n"
            header_end = out.index(b"\n", position)
            header = out[position:header_end].split()
            if header[-1] in (b"missing", b"ambiguous"):
                contents[name] = None
                position = header_end + 1
                continue
            size = int(header[2])
            contents[name] = out[header_end + 1:header_end + 1 + size]
            position = header_end + 1 + size + 1
        return contents

    def delete_refs(self, prefix: str) -> None:
        """Delete every ref under ``prefix`` (e.g. ``refs/federity-incoming/``), in one transaction."""
        names = self.run("for-each-ref", "--format=%(refname)", prefix).split()
        if names:
            self.run("update-ref", "--stdin", input="".join(f"delete {name}\n" for name in names).encode())

    def current_branch(self) -> str | None:
        """The checked-out branch, or ``None`` on a detached HEAD."""
        try:
            return self.run("symbolic-ref", "--quiet", "--short", "HEAD")
        except GitError:
            return None

    def is_ancestor(self, commit: str, of: str) -> bool:
        """Whether ``commit`` is ``of`` or one of its ancestors."""
        try:
            self.run("merge-base", "--is-ancestor", commit, of)
        except GitError:
            return False
        return True

    def is_clean(self) -> bool:
        """Whether tracked files have no uncommitted changes."""
        return self.run("status", "--porcelain", "--untracked-files=no") == ""
