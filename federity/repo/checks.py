"""The checks: pure functions over a :class:`~federity.repo.history.History` snapshot that say what fails,
and never raise on input another party wrote. Operations refuse on what they return; ``federity verify``
reports it. The weights checks read objects through the store, which verifies their DVC hashes.

The rules, each in one place:

- **commit** (:func:`commit_problems`): well-formed metadata of a known kind; only tracked files a Federity
  repository holds (no symlinks or gitlinks, :func:`federity.repo.storage.tree_problems`), and an update
  changes only its weights and ``update.json`` (:data:`UPDATE_PATHS`); the author's
  signature; the role the kind needs, read in the first parent's ``federity.yaml``; ``federity.yaml`` unchanged
  except by a valid ``members`` commit; the weights object intact, finite and the one signed.
- **one root** (:func:`root_problems`): every commit descends from the repository's genesis and no other root.
- **main line** (:func:`mainline_problems`): on main's first-parent line stand only genesis (its root),
  ``weights``, ``aggregate``, ``merge``, ``revert`` and ``members`` commits, each with the parents its kind
  needs; an aggregate's other parents are update commits trained for main from an earlier main commit, whose
  authors are contributors when the aggregate is made and whose latest valid review is an approval
  (:func:`aggregate_parent_problems`, which also judges aggregates on other branches).
- **reviews** (:func:`latest_review`): a review counts when it is signed by a wallet that is an owner or
  maintainer in the ``federity.yaml`` that judges it; among those, the highest ``seq`` wins (at equal ``seq``,
  a rejection wins), so replaying an earlier signed review changes nothing.
- **updates** (:func:`update_problems`): what an update must pass before it is approved or aggregated on the
  branch it was trained for (``update.json``'s ``branch``; main when absent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from federity.config import CONFIG_FILE, RepoConfig, Role
from federity.errors import FederityError, PrivateWeightsError
from federity.identity import verify_signature
from federity.records import UPDATE_FILE, Review
from federity.repo.commits import REQUIRED_ROLE, CommitRecord
from federity.repo.history import MAIN_BRANCH, ORIGIN_MAIN_REF, UPDATE_REF_PREFIXES, History, UpdateInfo
from federity.repo.members import permission_problem, validity_problem
from federity.repo.metadata import signing_payload
from federity.repo.privacy import keyring_problems, note_sealed, sealing_problems
from federity.repo.proof_inputs import check_update_proof
from federity.repo.storage import MODEL_DVC_FILE, tree_problems
from federity.weights.files import describe_mismatch

MAINLINE_KINDS = frozenset({"genesis", "weights", "aggregate", "merge", "revert", "members"})
"""The commit kinds that may stand on main's first-parent line (updates reach main only as aggregate parents)."""
PLAIN_MERGE_HINT = (": it merges branches unsigned, as a plain `git merge` does; undo it (`git reset --hard "
                    "HEAD~1`) and merge with `federity merge BRANCH`, which signs the merge and its method")
REVIEW_STATUSES = frozenset({"verified", "approved", "rejected"})


@dataclass(frozen=True)
class Problem:
    """One failed check of one commit."""

    commit: str
    check: str
    reason: str

    def to_json(self) -> dict[str, str]:
        """As ``federity verify --json`` lists it."""
        return {"commit": self.commit, "check": self.check, "reason": self.reason}


# -- one commit ---------------------------------------------------------------------------------------------

def commit_problems(history: History, record: CommitRecord, *, weights: bool = True) -> list[tuple[str, str]]:
    """Every failed check of one commit, as (check, reason) pairs. ``weights=False`` leaves out the checks that
    read the weights object (for a pull, before the weights have arrived). The other checks run once per commit
    and snapshot, however many callers (verify, the replay checks) ask."""
    structural = history.memo.setdefault("commit_problems", {})
    if record.commit not in structural:
        structural[record.commit] = _structural_problems(history, record)
    problems, complete = structural[record.commit]
    return [*problems, *weights_problems(history, record)] if weights and complete else list(problems)


def _structural_problems(history: History, record: CommitRecord) -> tuple[list[tuple[str, str]], bool]:
    """The checks that read no weights, and whether the weights are worth checking after them."""
    meta = record.meta
    if meta is None:
        return [("metadata", "; ".join(record.problems) + (PLAIN_MERGE_HINT if len(record.parents) > 1 else ""))], \
            False
    if meta.kind not in REQUIRED_ROLE:
        return [("metadata", f"unknown commit kind {meta.kind!r}")], False
    if (meta.kind == "genesis") != (not record.parents):
        return [("metadata", "a genesis commit must have no parents, and only a genesis commit may have none")], False
    config = history.config(record.commit)
    if isinstance(config, str):
        return [("config", config)], False
    problems = [("tree", reason) for reason in tree_problems(history.repo.git, record.commit,
                                                             history.tree(record.commit))]
    payload = signing_payload(config.id, meta, record.message, record.tree, history.parent_refs(record.parents))
    if not meta.signature:
        problems.append(("signature", "the commit is not signed"))
    elif not verify_signature(meta.author, payload, meta.signature):
        problems.append(("signature", f"the signature does not verify for author {meta.author}: the commit "
                                      "was altered after signing, or signed by another key"))
    before = config if meta.kind == "genesis" else history.config(record.parents[0])
    if isinstance(before, str):
        return [*problems, ("config", before)], False
    if before.id != config.id:
        problems.append(("config", f"the repository id changed from {before.id} to {config.id}"))
    role = before.role_of(meta.author)
    if (role_problem := _role_problem(role, meta.kind, meta.author, "at this point")) is not None:
        problems.append(("role", role_problem))
    if meta.kind == "members":
        problem = permission_problem(role, before.members, config.members) or validity_problem(
            before.members, config.members)
        unchanged = RepoConfig(**{**vars(config), "members": before.members}).to_yaml() == before.to_yaml()
        if problem or not unchanged:
            problems.append(("config", problem or "a members commit changed more than the members"))
    elif meta.kind != "genesis" and history.file(record.commit, CONFIG_FILE) != history.file(
            record.parents[0], CONFIG_FILE):
        problems.append(("config", f"a {meta.kind} commit changed {CONFIG_FILE}; only members commits may"))
    problems += [("keyring", reason) for reason in keyring_problems(
        history, record.commit, record.parents[0] if record.parents else None, meta.kind, config)]
    if meta.kind == "members" and history.parent_refs(record.parents[:1])[0].weights_sha256 != meta.weights_sha256:
        problems.append(("weights", "a members commit changed the weights"))
    if meta.kind == "update" and record.parents:
        problems += [("tree", reason) for reason in _update_file_problems(history, record)]
    return problems, True


UPDATE_PATHS = frozenset({MODEL_DVC_FILE, UPDATE_FILE})
"""What an update commit may change: its weights (through ``model.dvc``) and its ``update.json``. Anything else it
changed (the model builder, a dataset loader, ``params.yaml``, the data contract, the tokenizer) would be code or
configuration its author wrote, run by whoever checks the update out."""


def _update_file_problems(history: History, record: CommitRecord) -> list[str]:
    changed = history.tree(record.parents[0]).changed_files(history.tree(record.commit))
    others = sorted(changed - UPDATE_PATHS)
    if not others:
        return []
    named = ", ".join(repr(path[:80]) for path in others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5
                                                                   else "")
    return [f"an update may change only {MODEL_DVC_FILE} and {UPDATE_FILE}, but it changes {named}"]


def _role_problem(role: Role | None, kind: str, author: str, when: str) -> str | None:
    needed = REQUIRED_ROLE[kind]
    if role is not None and role >= needed:
        return None
    held = f"held the role {role.label}" if role is not None else "was not a member"
    return f"author {author} {held} {when}; a {kind} commit needs {needed.label} or above"


def weights_problems(history: History, record: CommitRecord) -> list[tuple[str, str]]:
    """The weights object exists, matches its DVC hash and the signed sha256, and holds only finite values
    (read streaming, :meth:`~federity.repo.storage.WeightsStore.facts`); in a private repository, every object
    the commit adds is sealed to whom its kind requires (:func:`~federity.repo.privacy.sealing_problems`). Weights
    sealed to others than the reading wallet are checked as far as their ciphertext goes, and the commit is
    listed in ``history.memo["sealed"]``."""
    assert record.meta is not None
    meta = record.meta
    parent = record.parents[0] if record.parents else None
    config = history.config(parent if parent and meta.kind == "update" else record.commit)
    try:
        sealing = [] if isinstance(config, str) else sealing_problems(history.repo, record.commit, parent,
                                                                       meta.kind, meta.author, config)
        facts = history.repo.store.facts(record.commit)
    except PrivateWeightsError:
        note_sealed(history, record.commit)
        return [("sealing", reason) for reason in sealing]
    except FederityError as exc:
        return [("weights", exc.message)]
    if sealing:
        return [("sealing", reason) for reason in sealing]
    if facts.sha256 != record.meta.weights_sha256:
        return [("weights", f"the weights object's sha256 is {facts.sha256}, but the commit signed "
                            f"{record.meta.weights_sha256}")]
    if facts.non_finite:
        return [("weights", f"non-finite values (NaN or infinity) in {', '.join(facts.non_finite)}")]
    return []


def non_finite_tensors(tensors: Iterable[tuple[str, np.ndarray]]) -> list[str]:
    """The names of the floating-point tensors that hold a NaN or an infinity, sorted."""
    return sorted(name for name, t in tensors if np.issubdtype(t.dtype, np.floating) and not np.isfinite(t).all())


# -- one root -----------------------------------------------------------------------------------------------

def root_problems(history: History, refs: dict[str, str] | None = None) -> list[Problem]:
    """One problem per root other than the genesis that ``refs`` (default: every loaded ref) reach, naming the
    refs that reach it: a foreign history presented as part of this repository."""
    refs = history.refs if refs is None else refs
    if history.genesis is None:
        return [Problem("", "root", "the repository's genesis is not recorded and there is no main branch to "
                                    "take it from")] if refs else []
    foreign: dict[str, list[str]] = {}
    for ref, tip in sorted(refs.items()):
        if history.rooted(tip):
            continue
        for commit in history.ancestors(tip):
            record = history.commits.get(commit)
            if record is not None and not record.parents and commit != history.genesis:
                foreign.setdefault(commit, []).append(ref)
    return [Problem(root, "root", f"a second root: {', '.join(names)} reach(es) {root[:12]}, which is not this "
                                  f"repository's genesis {history.genesis[:12]} (a foreign history)")
            for root, names in foreign.items()]


# -- the main line ------------------------------------------------------------------------------------------

def mainline_problems(history: History, tip: str) -> list[Problem]:
    """Everything on ``tip``'s first-parent line (main) that breaks the main-line rule, oldest first."""
    problems: list[Problem] = []
    line = history.first_parent_line(tip)
    for commit in reversed(line):
        record = history.commits.get(commit)
        if record is None or record.meta is None:
            problems.append(Problem(commit, "main-line", "a commit without Federity metadata stands on main"
                                    + (PLAIN_MERGE_HINT if record is not None and len(record.parents) > 1 else "")))
            continue
        kind = record.meta.kind
        if not record.parents:
            if commit != history.genesis:
                problems.append(Problem(commit, "main-line", "main does not start at the repository's genesis"))
            continue
        if kind not in MAINLINE_KINDS:
            problems.append(Problem(commit, "main-line", f"a commit of kind {kind} stands on main: updates reach "
                                                         "main only as parents of an aggregate commit, after review"))
        elif kind == "aggregate":
            problems += [Problem(commit, "main-line", reason)
                         for reason in aggregate_parent_problems(history, record, MAIN_BRANCH)]
        elif kind == "merge" and len(record.parents) != 2:
            problems.append(Problem(commit, "main-line", "a merge commit must have exactly two parents"))
        elif kind not in ("merge", "aggregate") and len(record.parents) != 1:
            problems.append(Problem(commit, "main-line", f"a {kind} commit must have exactly one parent"))
    return problems


def aggregate_parent_problems(history: History, record: CommitRecord, branch: str | None = None) -> list[str]:
    """Why an aggregate commit's updates may not have been aggregated (empty when every one may): each must be an
    update trained from an earlier commit of the aggregate's line, authored by a contributor and approved, and
    all must have been trained for one branch: ``branch`` when the line's name is known (main's first-parent
    line), else any one."""
    base = record.parents[0]
    config = history.config(base)
    if isinstance(config, str):
        return [config]
    if len(record.parents) < 2:
        return ["the aggregate commit has no update among its parents"]
    problems, targets = [], set()
    for update in record.parents[1:]:
        reason = _aggregated_update_problem(history, update, base, config)
        if reason:
            problems.append(f"update {update[:12]}: {reason}")
            continue
        trained = history.update_record(update)
        assert not isinstance(trained, str)  # a malformed update.json is a problem above
        targets.add(trained.target)
    if branch is not None and targets - {branch}:
        problems.append(f"it aggregates updates trained for {', '.join(sorted(targets - {branch}))} on {branch}")
    elif len(targets) > 1:
        problems.append(f"it aggregates updates trained for different branches ({', '.join(sorted(targets))})")
    return problems


def _aggregated_update_problem(history: History, update: str, base: str, config: RepoConfig) -> str | None:
    record = history.commits.get(update)
    if record is None or record.meta is None or record.meta.kind != "update":
        return "it is not an update commit"
    if len(record.parents) != 1 or not history.is_ancestor(record.parents[0], base):
        return "it was not trained from an earlier commit of the line it was aggregated on"
    if isinstance(update_record := history.update_record(update), str):
        return update_record
    role_problem = _role_problem(config.role_of(record.meta.author), "update", record.meta.author,
                                 "when it was aggregated")
    if role_problem:
        return role_problem
    review = latest_review(history, update, config)
    if review is None or review.status != "approved":
        state = "no valid review" if review is None else f"its latest valid review is {review.status!r}"
        return f"it was aggregated without approval ({state})"
    return None


# -- what a remote presents ---------------------------------------------------------------------------------

def incoming_problems(history: History, incoming: dict[str, str], local: dict[str, str]) -> list[str]:
    """Why refs fetched from a remote (keyed by the names they would take: ``refs/remotes/origin/…``,
    ``refs/tags/…``) may not be accepted beside the ``local`` refs: a foreign root anywhere; a moved tag; origin's
    main rewritten or breaking the main-line rule; a new commit, outside ``updates/…`` branches, failing its
    signature, role or config check. (New commits only ``updates/…`` branches hold are let in: a failing update
    is evidence for its review, not corruption.) Weights are checked when they are checked out and by ``verify``.
    """
    problems = [problem.reason for problem in root_problems(history, incoming)]
    for ref, tip in sorted(incoming.items()):
        if ref.startswith("refs/tags/") and local.get(ref, tip) != tip:
            problems.append(f"{ref}: origin moved the tag from {local[ref][:12]} to {tip[:12]}")
    origin_main = incoming.get(ORIGIN_MAIN_REF)
    if origin_main is not None:
        before = local.get(ORIGIN_MAIN_REF)
        if before is not None and not history.is_ancestor(before, origin_main):
            problems.append(f"origin's main was rewritten: it no longer contains {before[:12]}")
        problems += [f"main at {p.commit[:12]}: {p.reason}" for p in mainline_problems(history, origin_main)]
    known: set[str] = set()
    for tip in local.values():
        known |= history.ancestors(tip)
    new: set[str] = set()
    for ref, tip in incoming.items():
        if not ref.startswith(UPDATE_REF_PREFIXES):
            new |= history.ancestors(tip) - known
    for commit in reversed(list(history.commits)):  # oldest first
        if commit in new and history.rooted(commit):
            problems += [f"{commit[:12]} {check}: {reason}"
                         for check, reason in commit_problems(history, history.commits[commit], weights=False)]
    return problems


# -- reviews ------------------------------------------------------------------------------------------------

def valid_reviews(history: History, update: str, config: RepoConfig) -> list[Review]:
    """The reviews of ``update`` signed by an owner or maintainer of ``config``; any other note is ignored."""
    valid = []
    for review in history.reviews(update):
        role = config.role_of(review.reviewer)
        if review.status not in REVIEW_STATUSES or role is None or role < Role.MAINTAINER:
            continue
        if verify_signature(review.reviewer, review.payload(config.id), review.signature):
            valid.append(review)
    return valid


def latest_review(history: History, update: str, config: RepoConfig) -> Review | None:
    """The review of ``update`` that stands: the valid one with the highest ``seq`` (a rejection wins a tie)."""
    reviews = valid_reviews(history, update, config)
    return max(reviews, key=lambda r: (r.seq, r.status == "rejected", r.signature)) if reviews else None


def next_review_seq(history: History, update: str) -> int:
    """The ``seq`` of the next review of ``update``: above every review published so far."""
    return 1 + max((r.seq for r in history.reviews(update)), default=-1)


# -- updates ------------------------------------------------------------------------------------------------

def update_problems(history: History, update: UpdateInfo, tip: str, *, branch: str = MAIN_BRANCH,
                    nonce: str | None = None) -> list[str]:
    """Why ``update`` may not be approved or aggregated onto ``tip``, the head of ``branch`` (empty when it
    may). ``nonce``: the round's pinned nonce, if any."""
    commit = history.commit(update.id)
    problems = [f"{check}: {reason}" for check, reason in commit_problems(history, commit, weights=False)]
    if problems:
        return problems
    if not history.rooted(update.id):
        return ["root: it descends from a root other than the repository's genesis"]
    config = history.config(tip)
    if isinstance(config, str):
        return [config]
    role_problem = _role_problem(config.role_of(update.author), "update", update.author, f"at {branch}'s head")
    if role_problem:
        return [f"role: {role_problem}"]
    record = history.update_record(update.id)
    if isinstance(record, str):
        return [record]
    if record.target != branch:
        return [f"target: it was trained for branch {record.target}, so it may only be aggregated there, not on "
                f"{branch}"]
    if len(commit.parents) != 1 or record.base != commit.parents[0]:
        return [f"update.json names base {record.base[:12]}, but the commit's parent is "
                f"{','.join(p[:12] for p in commit.parents)}"]
    base = commit.parents[0]
    base_meta = history.commit(base).meta
    if base_meta is None or base not in history.first_parent_line(tip):
        return [f"its base {base[:12]} is not a commit on {branch}"]
    if update.round != base_meta.round + 1 or record.round != update.round:
        return [f"it claims round {update.round}, but its base is round {base_meta.round}"]
    if update.id in history.aggregated(tip):
        return [f"replay: it has already been aggregated into {branch}"]
    tip_meta = history.commit(tip).meta
    assert tip_meta is not None
    staleness = tip_meta.round + 1 - update.round
    max_staleness = config.aggregation.get("max_staleness", 0)
    if not isinstance(max_staleness, int) or staleness > max_staleness:
        return [f"stale: trained for round {update.round} but {branch} is preparing round {tip_meta.round + 1} "
                f"(the policy allows {max_staleness} round(s) of staleness); pull and train again"]
    if nonce is not None and update.nonce != nonce:
        return ["replay: it was not trained for this round (its nonce is not the round's)"]
    assert commit.meta is not None
    seen = weights_seen_before(history, update, tip)
    if commit.meta.weights_sha256 in seen:
        return [f"replay: its weights are identical to those of {seen[commit.meta.weights_sha256][:12]}"]
    base_config = history.config(base)
    sealing = [] if isinstance(base_config, str) else sealing_problems(history.repo, update.id, base, "update",
                                                                       update.author, base_config)
    if sealing:
        return [f"sealing: {reason}" for reason in sealing]
    return _weights_fit(history, update, base, config) or proof_problems(history, commit)


def proof_problems(history: History, commit: CommitRecord) -> list[str]:
    """Why update ``commit``'s proof of training fails (``proof: …``), when its base's repository requires
    proofs; empty otherwise, and when it verifies."""
    base_config = history.config(commit.parents[0]) if commit.parents else None
    record = history.update_record(commit.commit)
    if not isinstance(base_config, RepoConfig) or base_config.proofs is None or isinstance(record, str):
        return []
    try:
        return check_update_proof(history.repo, commit, record.to_json(), valid_updates(history)).problems
    except PrivateWeightsError:
        note_sealed(history, commit.commit)
        return []


def target_problems(history: History, update: UpdateInfo, *, nonce: str | None = None) -> list[str]:
    """Why ``update`` may not be approved (empty when it may): :func:`update_problems` against the head of the
    branch it was trained for, which must be here."""
    tip = history.branch_tip(update.target)
    if tip is None:
        return [f"target: it was trained for branch {update.target}, which is neither a local branch nor origin's"]
    return update_problems(history, update, tip, branch=update.target, nonce=nonce)


def valid_updates(history: History) -> list[str]:
    """The update commits at ``updates/…`` branch tips that descend from the genesis and pass their commit checks
    (signed by a member who may author them): the only ones replay and reused-batch checks compare against."""
    if "valid_updates" not in history.memo:
        history.memo["valid_updates"] = [
            commit for commit in history.update_tips()
            if history.kind(commit) == "update" and history.rooted(commit)
            and not commit_problems(history, history.commits[commit], weights=False)]
    return history.memo["valid_updates"]


def weights_seen_before(history: History, update: UpdateInfo, tip: str) -> dict[str, str]:
    """sha256 of weights already in ``tip``'s history or in an earlier *valid* update (signed by a member who may
    author it) → the commit that holds them. An unsigned or foreign branch claiming a hash cannot make a genuine
    update a replay."""
    seen: dict[str, str] = {}
    for commit in history.ancestors(tip):
        meta = history.commits[commit].meta if commit in history.commits else None
        if meta:
            seen.setdefault(meta.weights_sha256, commit)
    for other in valid_updates(history):
        meta = history.commits[other].meta
        assert meta is not None
        if other != update.id and (meta.round, other) < (update.round, update.id):
            seen.setdefault(meta.weights_sha256, other)
    return seen


def _weights_fit(history: History, update: UpdateInfo, base: str, config: RepoConfig) -> list[str]:
    store = history.repo.store
    try:
        facts, base_facts = store.facts(update.id), store.facts(base)
        limit = int(config.review.get("max_update_bytes", 2 * base_facts.size))
    except FederityError as exc:
        return [f"weights: {exc.message}"]
    except (TypeError, ValueError):
        return ["review.max_update_bytes in federity.yaml is not a number"]
    if facts.size > limit:
        return [f"its weights file is {facts.size} bytes, above the limit of {limit}"]
    signed = history.commit(update.id).meta
    if signed is None or facts.sha256 != signed.weights_sha256:
        return ["weights: the weights object is not the one the update signed"]
    mismatch = describe_mismatch(base_facts.layout, facts.layout)
    if mismatch:
        return [f"its tensors do not fit the model: {'; '.join(mismatch)}"]
    if facts.non_finite:
        return [f"non-finite values (NaN or infinity) in {', '.join(facts.non_finite)}"]
    return []
