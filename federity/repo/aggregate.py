"""``federity aggregate``: combine approved updates into the next main commit.

The aggregate commit's parents are the previous main commit and every update it aggregated (an octopus merge, so
``git log --graph`` shows who contributed to which version). Its weights are the current model plus the
strategy's combination of each update's change from its own base (see :mod:`federity.aggregation`).

Finalising a round is idempotent: when main already holds an aggregate commit for the round, that commit is
returned and nothing new is made.

The aggregate commit names its strategy and the strategy's version (the signed ``Federity-Strategy`` trailer,
e.g. ``fedavg@1``, so a later version's maths never changes what ``verify`` recomputes), and everything else the
combination uses is in the history: each update's weights, base, round and ``n_samples``. So ``federity verify``
recomputes every aggregate's weights from its parents (:func:`aggregate_problems`) and reports one that differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from federity.aggregation import Contribution, Strategy, get_strategy
from federity.aggregation.aggregate import Tensors, apply_delta, deltas
from federity.errors import FederityError, UpdateError, WorkingTreeError
from federity.identity import Wallet
from federity.repo.checks import update_problems
from federity.repo.commits import CommitRecord, create_commit, read_commit, read_commits
from federity.repo.history import History
from federity.repo.storage import MODEL_DVC_FILE
from federity.repo.updates import UpdateInfo, list_updates, record_review
from federity.weights import read_tensors, sha256_bytes, tensors_to_bytes

if TYPE_CHECKING:
    from federity.repo import Repository


@dataclass
class AggregateResult:
    """The aggregate commit of a round; ``created`` is false when it already existed."""

    commit: str
    parents: list[str]
    updates: list[str]
    round: int
    created: bool

    def to_json(self) -> dict[str, Any]:
        """As ``federity aggregate --json`` prints it."""
        return {"commit": self.commit, "parents": self.parents, "updates": self.updates, "round": self.round,
                "created": self.created}


def existing_aggregate(repo: Repository, round: int) -> AggregateResult | None:
    """The aggregate commit for ``round`` on main's first-parent line, if there is one."""
    from federity.repo import MAIN_BRANCH

    for record in read_commits(repo, "--first-parent", MAIN_BRANCH):
        meta = record.meta
        if meta and meta.kind == "aggregate" and meta.round == round:
            return AggregateResult(record.commit, record.parents, record.parents[1:], round, created=False)
    return None


def aggregate(repo: Repository, wallet: Wallet, *, strategy: str | None = None, round: int | None = None,
              updates: list[str] | None = None, min_updates: int = 1) -> AggregateResult:
    """Aggregate the approved updates (or the given ones, which must be approved) into a commit on main.

    ``round`` defaults to the round after main's. Approved updates that no longer pass their checks (e.g.
    they became too stale) are recorded as rejected and left out. Fewer than ``min_updates`` usable updates is
    an error, and main is left unchanged.
    """
    from federity.repo import MAIN_BRANCH

    if repo.git.current_branch() != MAIN_BRANCH:
        raise WorkingTreeError("aggregation commits on main, which is not checked out",
                               "run `federity checkout main` first")
    main = repo.head()
    main_meta = read_commit(repo, main).meta
    if main_meta is None:
        raise UpdateError(f"main's head {main[:12]} carries no Federity metadata", "run `federity verify`")
    round = main_meta.round + 1 if round is None else round
    done = existing_aggregate(repo, round)
    if done is not None:
        return done
    if round != main_meta.round + 1:
        raise UpdateError(f"main is at round {main_meta.round}, so it cannot aggregate round {round}",
                          "aggregate the next round, or pull first")
    config = repo.config(main)
    strategy_name = strategy or str(config.aggregation.get("strategy", "fedavg"))
    combiner = get_strategy(strategy_name)  # an unknown name fails here, before any review is recorded
    history = History.load(repo)
    chosen = _approved(repo, history, wallet, updates)
    if len(chosen) < max(min_updates, 1):
        raise UpdateError(f"{len(chosen)} approved update(s) can be aggregated, {max(min_updates, 1)} needed",
                          "review pending updates with `federity updates` and `federity review approve`")

    chosen.sort(key=lambda u: u.id)  # the parents' order, in which verify recomputes the weights
    new = aggregate_weights(history, main, [u.id for u in chosen], combiner, round)
    if not all(np.isfinite(t).all() for t in new.values()):
        raise UpdateError("the aggregate has non-finite values", "reject the update that causes it, then retry")

    samples = sum(u.n_samples for u in chosen)
    message = (f"Round {round}: {strategy_name} of {len(chosen)} update(s), {samples} samples\n\n"
               + "\n".join(f"- {u.id[:12]} by {u.author} ({u.n_samples} samples)" for u in chosen))
    with repo.transaction():
        repo.weights_path.write_bytes(tensors_to_bytes(new))
        repo.store.track()
        record = create_commit(repo, wallet, "aggregate", message, [main, *(u.id for u in chosen)],
                               round=round, strategy=f"{combiner.name}@{combiner.version}", paths=(MODEL_DVC_FILE,))
    return AggregateResult(record.commit, record.parents, [u.id for u in chosen], round, created=True)


def _approved(repo: Repository, history: History, wallet: Wallet, refs: list[str] | None) -> list[UpdateInfo]:
    approved = list_updates(repo, "approved", history)
    if refs is not None:
        by_ref = {u.id: u for u in approved}
        missing = [r for r in refs if not any(uid.startswith(r) for uid in by_ref)]
        if missing:
            raise UpdateError(f"not approved (or unknown): {', '.join(missing)}",
                              "approve them with `federity review approve UPDATE` first")
        approved = [u for u in approved if any(u.id.startswith(r) for r in refs)]
    usable = []
    main = repo.head()
    for update in approved:
        problems = update_problems(history, update, main)
        if problems:
            record_review(repo, wallet, update, "rejected", "; ".join(problems), history)
        else:
            usable.append(update)
    return usable


def aggregate_weights(history: History, main: str, updates: list[str], strategy: Strategy, round: int) -> Tensors:
    """The weights of round ``round``'s aggregate of ``updates`` (commit ids, combined in this order) onto ``main``.

    Each update contributes its change from its own base (its first parent), its ``n_samples`` from update.json
    and its staleness, ``round`` minus the update's round.
    """
    store = history.repo.store
    contributions = []
    for update in updates:
        record = history.commit(update)
        base = record.parents[0]
        change = deltas([read_tensors(store.read(update), f"update {update[:12]}")],
                        [read_tensors(store.read(base), f"base {base[:12]}")])[0]
        update_record = history.update_record(update)
        if isinstance(update_record, str):
            raise UpdateError(update_record, "reject the update")
        n_samples = update_record.n_samples
        staleness = round - (record.meta.round if record.meta else 0)
        contributions.append(Contribution(change, n_samples, staleness))
    return apply_delta(read_tensors(store.read(main), "the weights of main"), strategy.combine(contributions))


def aggregate_problems(history: History, record: CommitRecord) -> list[str]:
    """Why an aggregate commit's weights are not its strategy's combination of its parents (empty when they are).

    The weights are recomputed from the first parent and the aggregated updates and serialised canonically, as
    :func:`aggregate` wrote them, so equal tensors hash to the sha256 the commit signed (which ``verify``'s
    ``weights`` check has already matched against the stored object).
    """
    meta = record.meta
    if meta is None or meta.strategy is None:
        return ["the commit does not name its aggregation strategy (no Federity-Strategy trailer), so its weights "
                "cannot be recomputed from its parents"]
    updates = record.parents[1:]
    if not updates:
        return ["the aggregate commit has no update among its parents"]
    not_updates = [p[:12] for p in updates if history.kind(p) != "update"]
    if not_updates:
        return [f"its parents after the first must be update commits, and these are not: {', '.join(not_updates)}"]
    try:
        expected = aggregate_weights(history, record.parents[0], updates, get_strategy(meta.strategy), meta.round)
    except FederityError as exc:
        return [f"its weights cannot be recomputed: {exc.message}"]
    except (ValueError, ArithmeticError) as exc:  # e.g. sample counts summing to zero, an update from a later round
        return [f"its weights cannot be recomputed: {exc}"]
    recomputed = sha256_bytes(tensors_to_bytes(expected))
    if recomputed == meta.weights_sha256:
        return []
    return [f"its weights are not the {meta.strategy} of its {len(updates)} update(s) applied to its first parent "
            f"{record.parents[0][:12]}: recomputed, they hash to {recomputed[:16]}…, but the commit signed "
            f"{meta.weights_sha256[:16]}…"]
