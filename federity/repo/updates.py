"""Updates as pull requests: listing them with their status, checking them, and recording signed reviews.

An update is a commit of kind ``update`` at the tip of a branch ``updates/…`` (local or ``origin``'s), trained
for one *target* branch (``update.json``'s ``branch``: main when absent, or a variant a group of sites fine-tunes,
see docs/merging.md). Everything below is judged on the target's head. Its status is, in order of precedence:

- ``aggregated``: it is a parent of an aggregate commit on its target's first-parent line;
- ``approved`` / ``rejected`` / ``verified``: the review that stands says so (a check that fails records
  ``rejected`` with the reason; checks that pass record ``verified``; a reviewer records ``approved`` or
  ``rejected``);
- ``pending``: submitted, not yet checked.

Reviews live in the git notes ref ``refs/notes/federity-reviews``: the note on an update is a list of signed
reviews, each signed by its reviewer over a canonical payload that carries a sequence number ``seq``. Every
review ever published counts (a note written over an older one erases nothing, see
:func:`federity.repo.notes.read_note_history`); the one that stands is the valid review with the highest ``seq``
(:func:`federity.repo.checks.latest_review`), where valid means signed by an owner or maintainer at the target's
head.

Checks an update must pass before it can be approved (:func:`federity.repo.checks.update_problems`): the
commit checks of ``federity verify`` (signature, role, weights object); its author still a contributor at the
target's head; a well-formed ``update.json`` naming its only parent as base; aggregated only on its target; the
base on the target's first-parent line; within the staleness policy; trained for the round's nonce when one is
pinned; not already aggregated and not a copy of weights in the target's history or in an earlier valid update
(replays); the base's tensor names, shapes and dtypes; every value finite; within the size limit.

Staleness policy: an update trained for round ``k`` while its target is about to make round ``r`` is ``r - k`` rounds
stale. ``aggregation.max_staleness`` in federity.yaml (default 0: synchronous FedAvg) bounds it; an accepted stale
update's change (from its own base) is applied to the current model with its weight discounted by
``1 / (1 + staleness)`` (FedAsync, Xie et al. 2019).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from federity.config import RepoConfig, Role
from federity.errors import PermissionDeniedError, UpdateError
from federity.identity import Wallet
from federity.records import (
    MAIN_BRANCH,
    UPDATE_FILE,
    UPDATE_SCHEMA,
    Review,
    parse_update_record,
    review_note,
    signed_review_payload,
)
from federity.repo.checks import latest_review, next_review_seq, target_problems
from federity.repo.commits import CommitRecord
from federity.repo.history import History, UpdateInfo
from federity.repo.notes import REVIEWS, write_note

if TYPE_CHECKING:
    from federity.repo import Repository

__all__ = ["STATUSES", "UPDATE_FILE", "UPDATE_SCHEMA", "UpdateInfo", "check_updates", "list_updates",
           "read_update_record", "record_review", "review"]

STATUSES = ("pending", "verified", "approved", "rejected", "aggregated")


def read_update_record(repo: Repository, commit: str) -> dict[str, Any] | None:
    """``update.json`` of an update commit, validated, or ``None`` when it is absent or malformed."""
    try:
        return parse_update_record(repo.git.show_file(commit, UPDATE_FILE), f"{UPDATE_FILE} of {commit[:12]}").to_json()
    except UpdateError:
        return None


def _main_config(history: History) -> tuple[str, RepoConfig]:
    main = history.main_tip()
    config = history.config(main) if main else "there is no main branch"
    if main is None or isinstance(config, str):
        raise UpdateError(f"main cannot be read: {config}", "run `federity verify`, then `federity pull`")
    return main, config


def _info(history: History, commit: CommitRecord, branch: str) -> UpdateInfo:
    record = history.update_record(commit.commit)
    meta = commit.meta
    assert meta is not None
    parsed = not isinstance(record, str)
    info = UpdateInfo(
        id=commit.commit, branch=branch, author=meta.author,
        base=commit.parents[0] if commit.parents else None, round=meta.round,
        nonce=record.nonce if parsed else None, n_samples=record.n_samples if parsed else 0,
        metrics=dict(record.metrics) if parsed else {}, target=record.target if parsed else MAIN_BRANCH,
        record=record.to_json() if parsed else {},
    )
    # judged on the branch it was trained for (main's head when that branch is not here)
    tip = history.branch_tip(info.target) or history.main_tip()
    assert tip is not None
    if commit.commit in history.aggregated(tip):
        info.status = "aggregated"
        return info
    config = history.config(tip)
    review = latest_review(history, commit.commit, config) if not isinstance(config, str) else None
    if review is not None:
        info.status, info.reason, info.reviewer = review.status, review.reason, review.reviewer
    return info


def list_updates(repo: Repository, status: str | None = None, history: History | None = None) -> list[UpdateInfo]:
    """Every update on a local or ``origin`` ``updates/…`` branch, oldest round first; its status is judged on
    the branch it was trained for."""
    if status is not None and status not in STATUSES:
        raise UpdateError(f"unknown status {status!r}", f"use one of: {', '.join(STATUSES)}")
    history = history or History.load(repo)
    _main_config(history)
    infos = []
    for commit, branch in history.update_tips().items():
        record = history.commit(commit)
        if record.meta is None or record.meta.kind != "update":
            continue
        info = _info(history, record, branch)
        if status is None or info.status == status:
            infos.append(info)
    return sorted(infos, key=lambda i: (i.round, i.branch))


def find_update(repo: Repository, ref: str, history: History | None = None) -> UpdateInfo:
    """The update ``ref`` names: a commit id (or prefix) or an ``updates/…`` branch."""
    updates = list_updates(repo, history=history)
    matches = [u for u in updates if u.id.startswith(ref) or u.branch == ref] if ref else []
    if len(matches) != 1:
        what = "no update" if not matches else f"{len(matches)} updates"
        raise UpdateError(f"{what} matches {ref!r}",
                          "list them with `federity updates` (after `federity pull`), and name one by id or branch")
    return matches[0]


def require_reviewer(history: History, wallet: Wallet) -> None:
    """Raise unless ``wallet`` is an owner or maintainer at main's head."""
    role = _main_config(history)[1].role_of(wallet.pubkey)
    if role is None or role < Role.MAINTAINER:
        held = f"holds the role {role.label}" if role is not None else "is not a member"
        raise PermissionDeniedError(f"wallet {wallet.pubkey} {held}; reviewing updates needs maintainer or owner",
                                    "review with an owner's or maintainer's wallet (--wallet)")


def record_review(repo: Repository, wallet: Wallet, update: UpdateInfo, status: str, reason: str | None,
                  history: History | None = None) -> None:
    """Add a signed review to ``update``'s note, ordered after every review published so far."""
    history = history or History.load(repo)
    _, config = _main_config(history)
    seq = next_review_seq(history, update.id)
    signature = wallet.sign(signed_review_payload(config.id, update.id, status, reason, wallet.pubkey, seq))
    review = Review(update=update.id, status=status, reason=reason, reviewer=wallet.pubkey, seq=seq,
                    signature=signature)
    write_note(repo, REVIEWS, update.id, review_note([*history.reviews(update.id), review]))
    history.add_review(review)
    update.status, update.reason, update.reviewer = status, reason, wallet.pubkey


def check_updates(repo: Repository, wallet: Wallet, updates: list[UpdateInfo] | None = None, *,
                  nonce: str | None = None) -> list[UpdateInfo]:
    """Check ``updates`` (default: every pending one) and record ``verified`` or ``rejected`` with the reason."""
    repo.keys.use(wallet)
    history = History.load(repo)
    require_reviewer(history, wallet)
    targets = list_updates(repo, "pending", history) if updates is None else updates
    for update in targets:
        if update.status == "aggregated":
            continue
        problems = target_problems(history, update, nonce=nonce)
        if problems:
            record_review(repo, wallet, update, "rejected", "; ".join(problems), history)
        elif update.status == "pending":
            record_review(repo, wallet, update, "verified", None, history)
    return targets


def review(repo: Repository, wallet: Wallet, ref: str, approve: bool, reason: str | None = None) -> UpdateInfo:
    """Approve or reject one update with a signed review. Approval runs the checks first: an update that
    fails them is recorded as rejected with the reason, and the approval is refused."""
    repo.keys.use(wallet)
    history = History.load(repo)
    require_reviewer(history, wallet)
    update = find_update(repo, ref, history)
    if update.status == "aggregated":
        raise UpdateError(f"update {update.id[:12]} has already been aggregated", "nothing to review")
    if not approve:
        if not reason or not reason.strip():
            raise UpdateError("a rejection needs a reason", "pass --reason 'why'")
        record_review(repo, wallet, update, "rejected", reason.strip(), history)
        return update
    problems = target_problems(history, update)
    if problems:
        record_review(repo, wallet, update, "rejected", "; ".join(problems), history)
        raise UpdateError(f"update {update.id[:12]} fails its checks and was recorded as rejected: "
                          f"{'; '.join(problems)}", "the contributor must pull, train and push a new update")
    record_review(repo, wallet, update, "approved", reason.strip() if reason else None, history)
    return update
