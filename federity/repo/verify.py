"""``federity verify``: check the whole history, offline, and report every failure.

For each commit on every branch, tag and remote-tracking branch:

- ``metadata``: the commit carries well-formed Federity metadata of a known kind, with the parents its kind
  needs (a genesis commit has none, every other commit has at least one);
- ``signature``: the author's ed25519 signature over the canonical payload verifies;
- ``role``: the author held the role the kind needs in the first parent's federity.yaml (its own, for genesis);
- ``config``: federity.yaml is unchanged from the first parent, except the members of a ``members`` commit,
  whose change the author was allowed to make;
- ``weights``: the DVC object exists (local cache or storage), matches its DVC hash, and its sha256 is the
  signed one; a ``members`` commit keeps its parent's weights;
- ``aggregate``: an aggregate commit's weights are exactly what its strategy makes of its parents: the first
  parent's weights plus the combination of each aggregated update's change from its own base, recomputed
  (:func:`federity.repo.aggregate.aggregate_problems`);
- ``proof``: an update commit in a repository that requires proofs carries a proof of training that verifies
  (:mod:`federity.proofs.verify`, through :mod:`federity.repo.proof_inputs`: re-verified offline, from the
  repository alone);
- ``nft``: every commit whose NFT is recorded has, on the repository's ledger, a finished NFT (Token-2022,
  supply 1, no mint authority, immutable metadata) whose metadata records exactly that commit. This check reads
  the ledger: the embedded one is local, a cluster needs the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from federity.config import CONFIG_FILE, RepoConfig
from federity.errors import FederityError
from federity.identity import verify_signature
from federity.repo.aggregate import aggregate_problems
from federity.repo.commits import REQUIRED_ROLE, CommitRecord, parent_refs, read_commits
from federity.repo.members import permission_problem, validity_problem
from federity.repo.metadata import signing_payload
from federity.repo.nft import verify_nfts
from federity.repo.proof_inputs import check_update_proof
from federity.repo.updates import read_update_record
from federity.weights import sha256_bytes

if TYPE_CHECKING:
    from federity.repo import Repository


@dataclass
class VerifyReport:
    """The outcome of :func:`verify`."""

    commits_checked: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check of every commit passed."""
        return not self.failures

    def fail(self, commit: str, check: str, reason: str) -> None:
        """Record one failed check."""
        self.failures.append({"commit": commit, "check": check, "reason": reason})

    def to_json(self) -> dict[str, Any]:
        """The report as `federity verify --json` prints it."""
        return {"ok": self.ok, "commits_checked": self.commits_checked, "failures": self.failures}


def verify(repo: Repository) -> VerifyReport:
    """Check every commit reachable from any branch or tag; never stops at the first failure."""
    report = VerifyReport()
    for record in reversed(read_commits(repo, "--branches", "--tags", "--remotes")):
        report.commits_checked += 1
        problems = commit_problems(repo, record)
        for check, reason in problems:
            report.fail(record.commit, check, reason)
        if not problems and record.meta and record.meta.kind == "aggregate":
            for reason in aggregate_problems(repo, record):
                report.fail(record.commit, "aggregate", reason)
        if not problems and record.meta and record.meta.kind == "update":
            for reason in check_update_proof(repo, record, read_update_record(repo, record.commit) or {}).problems:
                report.fail(record.commit, "proof", reason.removeprefix("proof: "))
    for commit, reason in verify_nfts(repo):
        report.fail(commit, "nft", reason)
    return report


def _config(repo: Repository, commit: str) -> RepoConfig | str:
    try:
        return repo.config(commit)
    except FederityError as exc:
        return exc.message


def commit_problems(repo: Repository, record: CommitRecord) -> list[tuple[str, str]]:
    """Every failed check of one commit, as (check, reason) pairs."""
    meta = record.meta
    if meta is None:
        return [("metadata", "; ".join(record.problems))]
    if meta.kind not in REQUIRED_ROLE:
        return [("metadata", f"unknown commit kind {meta.kind!r}")]
    if (meta.kind == "genesis") != (not record.parents):
        return [("metadata", "a genesis commit must have no parents, and only a genesis commit may have none")]

    config = _config(repo, record.commit)
    if isinstance(config, str):
        return [("config", config)]
    problems: list[tuple[str, str]] = []
    payload = signing_payload(config.id, meta, record.message, record.tree, parent_refs(repo, record.parents))
    if not meta.signature:
        problems.append(("signature", "the commit is not signed"))
    elif not verify_signature(meta.author, payload, meta.signature):
        problems.append(("signature", f"the signature does not verify for author {meta.author}: the commit "
                                      "was altered after signing, or signed by another key"))

    before = config if meta.kind == "genesis" else _config(repo, record.parents[0])
    if isinstance(before, str):
        return [*problems, ("config", before)]
    role = before.role_of(meta.author)
    needed = REQUIRED_ROLE[meta.kind]
    if role is None or role < needed:
        held = f"held the role {role.label}" if role is not None else "was not a member"
        problems.append(("role", f"author {meta.author} {held} at this point; a {meta.kind} commit needs "
                                 f"{needed.label} or above"))
    if meta.kind == "members":
        problem = permission_problem(role, before.members, config.members) or validity_problem(
            before.members, config.members)
        unchanged = RepoConfig(**{**vars(config), "members": before.members}).to_yaml() == before.to_yaml()
        if problem or not unchanged:
            problems.append(("config", problem or "a members commit changed more than the members"))
    elif meta.kind != "genesis" and repo.git.show_file(record.commit, CONFIG_FILE) != repo.git.show_file(
            record.parents[0], CONFIG_FILE):
        problems.append(("config", f"a {meta.kind} commit changed {CONFIG_FILE}; only members commits may"))

    try:
        actual = sha256_bytes(repo.store.read(record.commit))
    except FederityError as exc:
        return [*problems, ("weights", exc.message)]
    if actual != meta.weights_sha256:
        problems.append(("weights", f"the weights object's sha256 is {actual}, but the commit signed "
                                    f"{meta.weights_sha256}"))
    if meta.kind == "members":
        parent_meta = parent_refs(repo, record.parents[:1])[0]
        if parent_meta.weights_sha256 != meta.weights_sha256:
            problems.append(("weights", "a members commit changed the weights"))
    return problems
