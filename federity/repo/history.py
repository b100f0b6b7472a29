"""The history layer: a read-only snapshot of a repository's refs, commits, ``federity.yaml`` files, update
records and reviews, read once per operation and shared by the checks (:mod:`federity.repo.checks`).

Loading costs a fixed handful of git processes whatever the size of the history: one ``for-each-ref``, one
``git log`` for every commit the refs reach, one ``cat-file --batch`` for all ``federity.yaml`` files, one for
all ``update.json`` files, and two for every review ever published. Nothing here writes.

**One root.** A repository *is* its genesis commit: ``init`` and ``clone`` record it in the local git config
(``federity.genesis``), and every commit the checks accept descends from it and from no other root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from federity.config import CONFIG_FILE, RepoConfig
from federity.errors import FederityError
from federity.git import GitError
from federity.records import MAIN_BRANCH, UPDATE_FILE, Review, UpdateRecord, parse_review_note, parse_update_record
from federity.repo.commits import CommitRecord, read_commits
from federity.repo.metadata import ParentRef
from federity.repo.notes import REVIEWS, read_note_history
from federity.repo.storage import Tree

if TYPE_CHECKING:
    from federity.repo import Repository

GENESIS_KEY = "federity.genesis"
"""The local git config key that records the repository's genesis commit (written by ``init`` and ``clone``)."""
MAIN_REF = f"refs/heads/{MAIN_BRANCH}"
ORIGIN_MAIN_REF = f"refs/remotes/origin/{MAIN_BRANCH}"
UPDATE_REF_PREFIXES = ("refs/heads/updates/", "refs/remotes/origin/updates/")
LOADED_REFS = ("refs/heads", "refs/tags", "refs/remotes")


def recorded_genesis(repo: Repository) -> str | None:
    """The genesis commit recorded in the local git config, or ``None`` (a repository made before it was)."""
    try:
        return repo.git.run("config", "--get", GENESIS_KEY) or None
    except GitError:
        return None


def record_genesis(repo: Repository, commit: str) -> None:
    """Record ``commit`` as the repository's genesis in the local git config."""
    repo.git.run("config", GENESIS_KEY, commit)


def list_refs(repo: Repository, *namespaces: str) -> tuple[dict[str, str], list[str]]:
    """Refs under ``namespaces`` → the commit each names (annotated tags peeled), and the names of refs that name
    no commit (a tag of a tree or blob)."""
    listing = repo.git.run("for-each-ref", "--format=%(refname) %(objecttype) %(objectname) %(*objecttype) "
                           "%(*objectname)", *namespaces)
    refs: dict[str, str] = {}
    not_commits: list[str] = []
    for line in listing.splitlines():
        name, kind, target, peeled_kind, peeled = [*line.split(" "), "", ""][:5]
        if kind == "commit":
            refs[name] = target
        elif kind == "tag" and peeled_kind == "commit":
            refs[name] = peeled
        else:
            not_commits.append(name)
    return refs, not_commits


@dataclass
class UpdateInfo:
    """One update and where it stands."""

    id: str
    branch: str
    author: str
    base: str | None
    round: int
    nonce: str | None
    n_samples: int
    metrics: dict[str, float]
    target: str = MAIN_BRANCH
    """The branch the update was trained for (``update.json``'s ``branch``), the only one it may be aggregated on."""
    status: str = "pending"
    reason: str | None = None
    reviewer: str | None = None
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The update as ``federity updates --json`` lists it."""
        return {"id": self.id, "author": self.author, "base": self.base, "status": self.status,
                "reason": self.reason, "branch": self.branch, "target": self.target, "round": self.round,
                "n_samples": self.n_samples, "metrics": self.metrics, "reviewer": self.reviewer}


@dataclass
class History:
    """Every commit the loaded refs reach, with lazily read configs, update records and reviews."""

    repo: Repository
    refs: dict[str, str]
    commits: dict[str, CommitRecord]
    genesis: str | None
    not_commit_refs: list[str] = field(default_factory=list)
    _configs: dict[str, RepoConfig | str] = field(default_factory=dict, repr=False)
    _records: dict[str, UpdateRecord | str] = field(default_factory=dict, repr=False)
    _files: dict[str, dict[str, bytes | None]] = field(default_factory=dict, repr=False)
    _ancestors: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    _rooted: dict[str, bool] = field(default_factory=dict, repr=False)
    _reviews: dict[str, list[Review]] | None = field(default=None, repr=False)
    review_refs: tuple[str, ...] = (REVIEWS,)
    memo: dict[str, Any] = field(default_factory=dict, repr=False)
    """What the checks derive once per snapshot (e.g. the valid updates)."""

    @classmethod
    def load(cls, repo: Repository, *namespaces: str, genesis: str | None = None) -> History:
        """The history of every branch, tag and remote-tracking branch (or of the refs under ``namespaces``).

        ``genesis`` defaults to the recorded one, else to the root of local main (a repository made before
        roots were recorded)."""
        refs, not_commits = list_refs(repo, *(namespaces or LOADED_REFS))
        commits = {r.commit: r for r in read_commits(repo, *sorted(set(refs.values())))} if refs else {}
        history = cls(repo, refs, commits, genesis or recorded_genesis(repo), not_commits)
        if history.genesis is None and MAIN_REF in refs:
            history.genesis = history.first_parent_line(refs[MAIN_REF])[-1]
        return history

    # -- commits and the graph ------------------------------------------------------------------------------

    def commit(self, commit: str) -> CommitRecord:
        """The record of ``commit`` (which the loaded refs reach)."""
        return self.commits[commit]

    def kind(self, commit: str) -> str | None:
        """The kind ``commit``'s metadata claims, or ``None``."""
        record = self.commits.get(commit)
        return record.meta.kind if record and record.meta else None

    def parent_refs(self, parents: list[str]) -> list[ParentRef]:
        """Parents as a signed payload names them: commit id and recorded weights sha256."""
        refs = []
        for parent in parents:
            meta = self.commits[parent].meta if parent in self.commits else None
            refs.append(ParentRef(parent, meta.weights_sha256 if meta else None))
        return refs

    def ancestors(self, tip: str) -> frozenset[str]:
        """``tip`` and every commit it descends from."""
        if tip not in self._ancestors:
            seen: set[str] = set()
            stack = [tip]
            while stack:
                commit = stack.pop()
                if commit in seen:
                    continue
                seen.add(commit)
                if commit in self._ancestors:
                    seen |= self._ancestors[commit]
                    continue
                stack.extend(self.commits[commit].parents if commit in self.commits else [])
            self._ancestors[tip] = frozenset(seen)
        return self._ancestors[tip]

    def is_ancestor(self, commit: str, of: str) -> bool:
        """Whether ``commit`` is ``of`` or one of its ancestors."""
        return commit in self.ancestors(of)

    def first_parent_line(self, tip: str) -> list[str]:
        """``tip``, its first parent, that one's first parent… down to a root."""
        line = [tip]
        while line[-1] in self.commits and self.commits[line[-1]].parents:
            line.append(self.commits[line[-1]].parents[0])
        return line

    def rooted(self, commit: str) -> bool:
        """Whether every root ``commit`` descends from is the genesis (and it descends from it)."""
        if commit not in self._rooted:
            stack = [commit]
            while stack:  # iterative, so long histories need no recursion
                current = stack[-1]
                record = self.commits.get(current)
                pending = [p for p in (record.parents if record else []) if p not in self._rooted]
                if pending:
                    stack.extend(pending)
                    continue
                stack.pop()
                if record is None:
                    self._rooted[current] = False
                elif not record.parents:
                    self._rooted[current] = current == self.genesis
                else:
                    self._rooted[current] = all(self._rooted[p] for p in record.parents)
        return self._rooted[commit]

    def main_tip(self) -> str | None:
        """Local main's commit, or ``None``."""
        return self.refs.get(MAIN_REF)

    def branch_tip(self, name: str) -> str | None:
        """The commit of branch ``name``, local or else ``origin``'s, or ``None``."""
        return self.refs.get(f"refs/heads/{name}", self.refs.get(f"refs/remotes/origin/{name}"))

    def aggregated(self, tip: str) -> dict[str, str]:
        """Update commits aggregated on ``tip``'s first-parent line → the aggregate commit that merged each."""
        merged: dict[str, str] = {}
        for commit in self.first_parent_line(tip):
            if self.kind(commit) == "aggregate":
                for update in self.commits[commit].parents[1:]:
                    merged.setdefault(update, commit)
        return merged

    def update_tips(self) -> dict[str, str]:
        """Commits at the tip of a local or ``origin`` ``updates/…`` branch → the branch name (local first)."""
        tips: dict[str, str] = {}
        for prefix in UPDATE_REF_PREFIXES:
            for ref, commit in sorted(self.refs.items()):
                if ref.startswith(prefix):
                    tips.setdefault(commit, "updates/" + ref.removeprefix(prefix))
        return tips

    # -- files at commits -----------------------------------------------------------------------------------

    def file(self, commit: str, path: str) -> bytes | None:
        """The content of ``path`` at ``commit``, or ``None`` when absent; the first call for a path reads it at
        every loaded commit in one git call."""
        if path not in self._files:
            names = [f"{c}:{path}" for c in self.commits]
            contents = self.repo.git.read_objects(names)
            self._files[path] = {name.partition(":")[0]: data for name, data in contents.items()}
        if commit not in self._files[path]:
            self._files[path][commit] = self.repo.git.show_file(commit, path)
        return self._files[path][commit]

    def tree(self, commit: str) -> Tree:
        """``commit``'s tracked tree (:class:`~federity.repo.storage.Tree`), read once per snapshot."""
        trees = self.memo.setdefault("trees", {})
        if commit not in trees:
            trees[commit] = Tree.read(self.repo.git, commit)
        return trees[commit]

    def config(self, commit: str) -> RepoConfig | str:
        """``federity.yaml`` at ``commit``, or the reason it cannot be read."""
        if commit not in self._configs:
            self._configs[commit] = _parse_config(commit, self.file(commit, CONFIG_FILE))
        return self._configs[commit]

    def update_record(self, commit: str) -> UpdateRecord | str:
        """``update.json`` of an update commit, validated, or why it cannot be read."""
        if commit not in self._records:
            try:
                self._records[commit] = parse_update_record(self.file(commit, UPDATE_FILE),
                                                            f"{UPDATE_FILE} of update {commit[:12]}")
            except FederityError as exc:
                self._records[commit] = exc.message
        return self._records[commit]

    # -- reviews --------------------------------------------------------------------------------------------

    def reviews(self, update: str) -> list[Review]:
        """Every well-formed review ever published on ``update`` (a later note never erases an earlier one)."""
        if self._reviews is None:
            found: dict[str, dict[str, Review]] = {}
            for ref in self.review_refs:
                for commit, versions in read_note_history(self.repo, ref).items():
                    for document in versions:
                        for review in parse_review_note(document, commit):
                            found.setdefault(commit, {}).setdefault(review.signature, review)
            self._reviews = {commit: list(reviews.values()) for commit, reviews in found.items()}
        return self._reviews.get(update, [])

    def add_review(self, review: Review) -> None:
        """Take a review just written into account (the snapshot stays current within one operation)."""
        self.reviews(review.update)
        assert self._reviews is not None
        self._reviews.setdefault(review.update, []).append(review)


def _parse_config(commit: str, raw: bytes | None) -> RepoConfig | str:
    if raw is None:
        return f"commit {commit[:12]} has no {CONFIG_FILE}"
    try:
        return RepoConfig.from_yaml(raw.decode(), f"{CONFIG_FILE} at {commit[:12]}")
    except UnicodeDecodeError:
        return f"{CONFIG_FILE} at {commit[:12]} is not UTF-8 text"
    except FederityError as exc:
        return exc.message
