"""Updates as pull requests: listing them with their status, checking them, and recording signed reviews.

An update is a commit of kind ``update`` at the tip of a branch ``updates/…`` (local or ``origin``'s). Its
status is, in order of precedence:

- ``aggregated``: it is a parent of an aggregate commit on main;
- ``approved`` / ``rejected`` / ``verified``: the latest signed review note says so (a check that fails records
  ``rejected`` with the reason; checks that pass record ``verified``; a reviewer records ``approved`` or
  ``rejected``);
- ``pending``: submitted, not yet checked.

Review notes live in the git notes ref ``refs/notes/federity-reviews``. Each is signed by its reviewer (an owner
or maintainer at main's head) over a canonical payload; a note that does not verify is ignored.

Checks an update must pass before it can be approved (:func:`update_problems`): the commit checks of
``federity verify`` (signature, role, weights object); a well-formed ``update.json`` naming its only parent as
base; the base on main; within the staleness policy; trained for the round's nonce when one is pinned; not
already aggregated and not a copy of weights seen before (replays); the base's tensor names, shapes and dtypes;
every value finite; within the size limit.

Staleness policy: an update trained for round ``k`` while main is about to make round ``r`` is ``r - k`` rounds
stale. ``aggregation.max_staleness`` in federity.yaml (default 0: synchronous FedAvg) bounds it; an accepted stale
update's change (from its own base) is applied to the current model with its weight discounted by
``1 / (1 + staleness)`` (FedAsync, Xie et al. 2019).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from federity.config import Role
from federity.errors import PermissionDeniedError, UpdateError
from federity.identity import Wallet, verify_signature
from federity.repo.commits import CommitRecord, read_commit, read_commits
from federity.repo.notes import REVIEWS, read_note, write_note
from federity.repo.proof_inputs import check_update_proof
from federity.weights import read_tensors
from federity.weights.files import describe_mismatch, tensor_layout

if TYPE_CHECKING:
    from federity.repo import Repository

UPDATE_FILE = "update.json"
UPDATE_SCHEMA = "federity/update/v1"
REVIEW_SCHEMA = "federity/review/v1"
STATUSES = ("pending", "verified", "approved", "rejected", "aggregated")
UPDATE_REFS = ("refs/heads/updates", "refs/remotes/origin/updates")


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
    status: str = "pending"
    reason: str | None = None
    reviewer: str | None = None
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The update as ``federity updates --json`` lists it."""
        return {"id": self.id, "author": self.author, "base": self.base, "status": self.status,
                "reason": self.reason, "branch": self.branch, "round": self.round, "n_samples": self.n_samples,
                "metrics": self.metrics, "reviewer": self.reviewer}


def _main(repo: Repository) -> str:
    from federity.repo import MAIN_BRANCH

    return repo.git.resolve(MAIN_BRANCH)


def read_update_record(repo: Repository, commit: str) -> dict[str, Any] | None:
    """``update.json`` of an update commit, or ``None`` when it is absent or not a JSON object."""
    raw = repo.git.show_file(commit, UPDATE_FILE)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def review_payload(repository_id: str, update: str, status: str, reason: str | None, reviewer: str) -> bytes:
    """The canonical bytes a reviewer signs."""
    document = {"schema": REVIEW_SCHEMA, "repository": repository_id, "update": update, "status": status,
                "reason": reason, "reviewer": reviewer}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _verified_review(repo: Repository, update: str, main: str) -> dict[str, Any] | None:
    note = read_note(repo, REVIEWS, update)
    if note is None:
        return None
    config = repo.config(main)
    try:
        payload = review_payload(config.id, update, note["status"], note.get("reason"), note["reviewer"])
        valid = verify_signature(note["reviewer"], payload, note["signature"])
    except (KeyError, TypeError):
        return None
    role = config.role_of(note["reviewer"])
    if not valid or role is None or role < Role.MAINTAINER or note["status"] not in STATUSES:
        return None
    return note


def _info(repo: Repository, commit: CommitRecord, branch: str, main: str) -> UpdateInfo:
    record = read_update_record(repo, commit.commit) or {}
    meta = commit.meta
    info = UpdateInfo(
        id=commit.commit, branch=branch, author=meta.author if meta else "?",
        base=commit.parents[0] if commit.parents else None, round=meta.round if meta else 0,
        nonce=record.get("nonce"), n_samples=int(record.get("n_samples") or 0),
        metrics=dict(record.get("metrics") or {}), record=record,
    )
    if repo.git.is_ancestor(commit.commit, main):
        info.status = "aggregated"
        return info
    note = _verified_review(repo, commit.commit, main)
    if note is not None:
        info.status, info.reason, info.reviewer = note["status"], note.get("reason"), note["reviewer"]
    return info


def list_updates(repo: Repository, status: str | None = None) -> list[UpdateInfo]:
    """Every update on a local or ``origin`` ``updates/…`` branch, oldest round first."""
    if status is not None and status not in STATUSES:
        raise UpdateError(f"unknown status {status!r}", f"use one of: {', '.join(STATUSES)}")
    main = _main(repo)
    tips: dict[str, str] = {}
    listing = repo.git.run("for-each-ref", "--format=%(objectname) %(refname:short)", *UPDATE_REFS)
    for line in listing.splitlines():
        commit, _, branch = line.partition(" ")
        tips.setdefault(commit, branch.removeprefix("origin/"))
    infos = []
    for commit, branch in tips.items():
        record = read_commit(repo, commit)
        if record.meta is None or record.meta.kind != "update":
            continue
        info = _info(repo, record, branch, main)
        if status is None or info.status == status:
            infos.append(info)
    return sorted(infos, key=lambda i: (i.round, i.branch))


def find_update(repo: Repository, ref: str) -> UpdateInfo:
    """The update ``ref`` names: a commit id (or prefix) or an ``updates/…`` branch."""
    updates = list_updates(repo)
    matches = [u for u in updates if u.id.startswith(ref) or u.branch == ref] if ref else []
    if len(matches) != 1:
        what = "no update" if not matches else f"{len(matches)} updates"
        raise UpdateError(f"{what} matches {ref!r}",
                          "list them with `federity updates` (after `federity pull`), and name one by id or branch")
    return matches[0]


def require_reviewer(repo: Repository, wallet: Wallet) -> None:
    """Raise unless ``wallet`` is an owner or maintainer at main's head."""
    role = repo.config(_main(repo)).role_of(wallet.pubkey)
    if role is None or role < Role.MAINTAINER:
        held = f"holds the role {role.label}" if role is not None else "is not a member"
        raise PermissionDeniedError(f"wallet {wallet.pubkey} {held}; reviewing updates needs maintainer or owner",
                                    "review with an owner's or maintainer's wallet (--wallet)")


def record_review(repo: Repository, wallet: Wallet, update: UpdateInfo, status: str, reason: str | None) -> None:
    """Write a signed review note on ``update``."""
    config = repo.config(_main(repo))
    signature = wallet.sign(review_payload(config.id, update.id, status, reason, wallet.pubkey))
    write_note(repo, REVIEWS, update.id, {"schema": REVIEW_SCHEMA, "update": update.id, "status": status,
                                          "reason": reason, "reviewer": wallet.pubkey, "signature": signature})
    update.status, update.reason, update.reviewer = status, reason, wallet.pubkey


def _weights_seen_before(repo: Repository, update: UpdateInfo, main: str) -> dict[str, str]:
    """sha256 of weights already in main's history or in other updates → the commit that holds them."""
    seen: dict[str, str] = {}
    for record in read_commits(repo, main):
        if record.meta:
            seen.setdefault(record.meta.weights_sha256, record.commit)
    for other in list_updates(repo):
        meta = read_commit(repo, other.id).meta
        if other.id != update.id and meta and (other.round, other.id) < (update.round, update.id):
            seen.setdefault(meta.weights_sha256, other.id)
    return seen


def update_problems(repo: Repository, update: UpdateInfo, *, nonce: str | None = None) -> list[str]:
    """Why ``update`` may not be approved (empty when it may). ``nonce``: the round's pinned nonce, if any."""
    from federity.repo.verify import commit_problems

    main = _main(repo)
    commit = read_commit(repo, update.id)
    problems = [f"{check}: {reason}" for check, reason in commit_problems(repo, commit)]
    if problems:
        return problems
    record = update.record
    if record.get("schema") != UPDATE_SCHEMA or not isinstance(record.get("n_samples"), int):
        return [f"{UPDATE_FILE} is missing or malformed"]
    if len(commit.parents) != 1 or record.get("base") != commit.parents[0]:
        return [f"{UPDATE_FILE} names base {str(record.get('base'))[:12]}, but the commit's parent is "
                f"{','.join(p[:12] for p in commit.parents)}"]
    if record["n_samples"] <= 0:
        return ["the update claims no training samples"]
    base = commit.parents[0]
    base_meta = read_commit(repo, base).meta
    if not repo.git.is_ancestor(base, main) or base_meta is None:
        return [f"its base {base[:12]} is not a commit on main"]
    if update.round != base_meta.round + 1 or record.get("round") != update.round:
        return [f"it claims round {update.round}, but its base is round {base_meta.round}"]
    if repo.git.is_ancestor(update.id, main):
        return ["replay: it has already been aggregated into main"]
    main_round = read_commit(repo, main).meta.round  # type: ignore[union-attr]
    staleness = main_round + 1 - update.round
    max_staleness = int(repo.config(main).aggregation.get("max_staleness", 0))
    if staleness > max_staleness:
        return [f"stale: trained for round {update.round} but main is preparing round {main_round + 1} "
                f"(the policy allows {max_staleness} round(s) of staleness); pull and train again"]
    if nonce is not None and update.nonce != nonce:
        return ["replay: it was not trained for this round (its nonce is not the round's)"]
    weights_sha = commit.meta.weights_sha256  # type: ignore[union-attr]
    seen = _weights_seen_before(repo, update, main)
    if weights_sha in seen:
        return [f"replay: its weights are identical to those of {seen[weights_sha][:12]}"]

    data = repo.store.read(update.id)
    base_data = repo.store.read(base)
    limit = int(repo.config(main).review.get("max_update_bytes", 2 * len(base_data)))
    if len(data) > limit:
        return [f"its weights file is {len(data)} bytes, above the limit of {limit}"]
    tensors = read_tensors(data, f"the weights of update {update.id[:12]}")
    mismatch = describe_mismatch(tensor_layout(read_tensors(base_data, "the base weights")), tensor_layout(tensors))
    if mismatch:
        return [f"its tensors do not fit the model: {'; '.join(mismatch)}"]
    non_finite = sorted(name for name, t in tensors.items() if not np.isfinite(t).all())
    if non_finite:
        return [f"non-finite values (NaN or infinity) in {', '.join(non_finite)}"]
    return check_update_proof(repo, commit, record).problems


def check_updates(repo: Repository, wallet: Wallet, updates: list[UpdateInfo] | None = None, *,
                  nonce: str | None = None) -> list[UpdateInfo]:
    """Check ``updates`` (default: every pending one) and record ``verified`` or ``rejected`` with the reason."""
    require_reviewer(repo, wallet)
    targets = list_updates(repo, "pending") if updates is None else updates
    for update in targets:
        if update.status == "aggregated":
            continue
        problems = update_problems(repo, update, nonce=nonce)
        if problems:
            record_review(repo, wallet, update, "rejected", "; ".join(problems))
        elif update.status == "pending":
            record_review(repo, wallet, update, "verified", None)
    return targets


def review(repo: Repository, wallet: Wallet, ref: str, approve: bool, reason: str | None = None) -> UpdateInfo:
    """Approve or reject one update with a signed review. Approval runs the checks first: an update that
    fails them is recorded as rejected with the reason, and the approval is refused."""
    require_reviewer(repo, wallet)
    update = find_update(repo, ref)
    if update.status == "aggregated":
        raise UpdateError(f"update {update.id[:12]} has already been aggregated", "nothing to review")
    if not approve:
        if not reason or not reason.strip():
            raise UpdateError("a rejection needs a reason", "pass --reason 'why'")
        record_review(repo, wallet, update, "rejected", reason.strip())
        return update
    problems = update_problems(repo, update)
    if problems:
        record_review(repo, wallet, update, "rejected", "; ".join(problems))
        raise UpdateError(f"update {update.id[:12]} fails its checks and was recorded as rejected: "
                          f"{'; '.join(problems)}", "the contributor must pull, train and push a new update")
    record_review(repo, wallet, update, "approved", reason.strip() if reason else None)
    return update
