"""``federity verify``: check the whole history, offline, and report every failure.

Every commit on every branch, tag and remote-tracking branch is checked (:mod:`federity.repo.checks` holds each
rule once; operations that accept changes call the same functions):

- ``root``: every ref descends from the repository's genesis (recorded at ``init`` and ``clone``) and from no
  other root: a foreign history pushed as a tag or a branch is named;
- ``main-line``: main's first-parent line holds only the kinds that may stand there, each with the parents its
  kind needs, and every update an aggregate merged was trained from main, authored by a contributor at the
  time of aggregation and approved by the review that stands;
- ``metadata``: the commit carries well-formed Federity metadata of a known kind, with the parents its kind
  needs (a genesis commit has none, every other commit has at least one);
- ``signature``: the author's ed25519 signature over the canonical payload verifies;
- ``role``: the author held the role the kind needs in the first parent's federity.yaml (its own, for genesis);
- ``config``: federity.yaml is unchanged from the first parent, except the members of a ``members`` commit,
  whose change the author was allowed to make;
- ``weights``: the DVC object exists (local cache or storage), matches its DVC hash, its sha256 is the signed
  one, and every value is finite; a ``members`` commit keeps its parent's weights;
- ``keyring`` (a private repository): only genesis and ``members`` commits change ``keyring/``, a members commit
  only adds files, the current versions key is sealed to exactly the members and every new batch to members
  only (:func:`federity.repo.privacy.keyring_problems`);
- ``sealing`` (a private repository): every object a commit adds is sealed, an update's to exactly its author
  and reviewers, any other kind's under the current versions key (read from the objects' headers, so anyone can
  check it). Weights this wallet cannot open are listed under ``unchecked``: their values, sha256 and
  recomputations are not checked;
- ``aggregate``: an aggregate commit's weights are exactly what its strategy makes of its parents, recomputed
  (:func:`federity.repo.aggregate.aggregate_problems`); off main's first-parent line (an aggregate on a variant
  branch), its updates were trained for one branch from an earlier commit of the aggregate's line, by
  contributors, and approved, as the main-line rule checks on main;
- ``merge``: a merge commit has two parents and its weights are exactly what its merge method makes of them
  relative to their merge base, recomputed (:func:`federity.repo.merge.merge_problems`); a merge made by hand
  with ``git merge`` carries no metadata and fails ``metadata``, with a hint to use ``federity merge``;
- ``update``: an update commit's ``update.json`` is well formed (:func:`federity.records.parse_update_record`);
- ``proof``: an update commit in a repository that requires proofs carries a proof of training that verifies
  (:mod:`federity.proofs.verify`, through :mod:`federity.repo.proof_inputs`: re-verified offline, from the
  repository alone);
- ``ownership``: the genesis NFT's holder (on the ledger, at the address derived from the signed genesis) is
  where the history's chain of hand-overs ends, and an owner at main's head; when the ledger cannot be read this
  is listed under ``unchecked`` instead (:func:`federity.repo.nft.ownership_problems`);
- ``nft``: every commit whose NFT is recorded has, on the repository's ledger, a finished NFT (Token-2022,
  supply 1, no mint authority, immutable metadata) whose metadata records exactly that commit. This check reads
  the ledger: the embedded one is local, a cluster needs the network; a ledger that cannot be read lists the
  check under ``unchecked``.

What the repository vouches for is main, the tags, every other branch, and every commit they contain: a failure
there makes ``ok`` false. An update that only an ``updates/…`` branch holds and that fails its checks, or that a
valid review rejected, is evidence, not corruption: it is listed under ``rejected`` with its reasons and leaves
``ok`` alone (a foreign root is a failure wherever it is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from federity.repo.aggregate import aggregate_problems
from federity.repo.checks import (
    Problem,
    aggregate_parent_problems,
    commit_problems,
    latest_review,
    mainline_problems,
    proof_problems,
    root_problems,
)
from federity.repo.history import MAIN_REF, ORIGIN_MAIN_REF, UPDATE_REF_PREFIXES, History
from federity.repo.merge import merge_problems
from federity.repo.nft import ownership_problems, verify_nfts

if TYPE_CHECKING:
    from federity.repo import Repository


@dataclass
class VerifyReport:
    """The outcome of :func:`verify`."""

    commits_checked: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """Updates held only by ``updates/…`` branches that fail their checks or that a review rejected."""
    unchecked: list[dict[str, str]] = field(default_factory=list)
    """Checks that could not be made, with why (e.g. ``ownership`` when the ledger cannot be read); not failures."""

    @property
    def ok(self) -> bool:
        """Whether every check of everything the repository vouches for passed."""
        return not self.failures

    def fail(self, commit: str, check: str, reason: str) -> None:
        """Record one failed check."""
        self.failures.append({"commit": commit, "check": check, "reason": reason})

    def to_json(self) -> dict[str, Any]:
        """The report as `federity verify --json` prints it."""
        return {"ok": self.ok, "commits_checked": self.commits_checked, "failures": self.failures,
                "rejected": self.rejected, "unchecked": self.unchecked}


def verify(repo: Repository) -> VerifyReport:
    """Check every commit reachable from any branch or tag; never stops at the first failure."""
    history = History.load(repo)
    report = VerifyReport()
    for problem in root_problems(history):
        report.fail(problem.commit, problem.check, problem.reason)
    for ref in history.not_commit_refs:
        report.fail("", "root", f"{ref} names no commit (a tag of a tree or a blob): not a Federity ref")
    vouched: set[str] = set()
    for ref, tip in history.refs.items():
        if not ref.startswith(UPDATE_REF_PREFIXES):
            vouched |= history.ancestors(tip)
    main_line: set[str] = set()
    for ref in (MAIN_REF, ORIGIN_MAIN_REF):
        if ref in history.refs:
            main_line.update(history.first_parent_line(history.refs[ref]))
            for problem in mainline_problems(history, history.refs[ref]):
                if problem.to_json() not in report.failures:
                    report.fail(problem.commit, problem.check, problem.reason)
    evidence: dict[str, list[str]] = {}
    for commit in _oldest_first(history):
        if not history.rooted(commit):
            continue  # a foreign history: its root is reported, its commits are not this repository's
        report.commits_checked += 1
        problems = [Problem(commit, check, reason)
                    for check, reason in commit_checks(history, commit, reviews=commit not in main_line)]
        if commit in vouched:
            for problem in problems:
                report.fail(problem.commit, problem.check, problem.reason)
        elif problems:
            evidence[commit] = [f"{p.check}: {p.reason}" for p in problems]
    _rejected_updates(history, vouched, evidence, report)
    sealed = history.memo.get("sealed", set())
    if sealed:
        report.unchecked.append({"check": "weights", "reason": (
            f"{len(sealed)} commit(s) hold weights sealed to members this wallet is not among (a private "
            "repository): their signatures, roles, ciphertext (DVC hashes) and sealing were checked; their values, "
            "signed sha256, and the aggregates, merges and proofs that need them were not recomputed")})
    for check, (failures, unchecked) in (("nft", verify_nfts(repo)), ("ownership", ownership_problems(repo))):
        for commit, reason in failures:
            report.fail(commit, check, reason)
        report.unchecked += [{"check": check, "reason": reason} for reason in unchecked]
    return report


def _oldest_first(history: History) -> list[str]:
    return list(reversed(list(history.commits)))


def commit_checks(history: History, commit: str, *, reviews: bool = True) -> list[tuple[str, str]]:
    """Every check of one commit as (check, reason) pairs: its commit checks, then what its kind adds (an
    aggregate's or a merge's weights recomputed, an update's record and proof). ``reviews``: also check that an
    aggregate's updates were approved and trained for one branch (main's first-parent line has the main-line
    rule check that instead, :func:`~federity.repo.checks.mainline_problems`)."""
    record = history.commit(commit)
    problems = commit_problems(history, record)
    if problems or record.meta is None:
        return problems
    if record.meta.kind == "aggregate":
        approvals = aggregate_parent_problems(history, record) if reviews else []
        return [("aggregate", reason) for reason in approvals + aggregate_problems(history, record)]
    if record.meta.kind == "merge":
        return [("merge", reason) for reason in merge_problems(history, record)]
    if record.meta.kind == "update":
        update_record = history.update_record(commit)
        if isinstance(update_record, str):
            return [("update", update_record)]
        return [("proof", reason.removeprefix("proof: ")) for reason in proof_problems(history, record)]
    return []


def _rejected_updates(history: History, vouched: set[str], evidence: dict[str, list[str]],
                      report: VerifyReport) -> None:
    """List the updates only ``updates/…`` branches hold that failed a check or that a valid review rejected."""
    main = history.main_tip()
    config = history.config(main) if main else "there is no main branch"
    for commit, branch in sorted(history.update_tips().items(), key=lambda item: item[1]):
        if commit in vouched or not history.rooted(commit):
            continue
        reasons = list(evidence.get(commit, []))
        review = None if isinstance(config, str) else latest_review(history, commit, config)
        if review is not None and review.status == "rejected":
            reasons.append(f"review: rejected by {review.reviewer}: {review.reason}")
        if reasons:
            report.rejected.append({"update": commit, "branch": branch, "reasons": reasons})
    listed = {entry["update"] for entry in report.rejected}
    for commit, reasons in evidence.items():  # a failing commit below an update branch's tip
        if commit not in listed:
            report.rejected.append({"update": commit, "branch": None, "reasons": reasons})
