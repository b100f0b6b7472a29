"""``federity aggregate``: combine approved updates into the next commit of the current branch (main, or a variant
that a group of sites fine-tunes; each update names the branch it was trained for and is aggregated only there).

The aggregate commit's parents are the branch's previous head and every update it aggregated (an octopus merge, so
``git log --graph`` shows who contributed to which version). Its weights are the current model plus the
strategy's combination of each update's change from its own base (see :mod:`federity.aggregation`), computed
by the streaming engine straight from the DVC objects, read in pieces.

Finalising a round is idempotent: when the branch already holds an aggregate commit for the round, that commit is
returned and nothing new is made.

The aggregate commit names its strategy, the strategy's version and its parameters (the signed
``Federity-Strategy`` and ``Federity-Strategy-Params`` trailers, e.g. ``trimmed-mean@1`` and
``{"fraction":0.2}``, so a later version's maths never changes what ``verify`` recomputes), and everything else
the combination uses is in the history: each update's weights, base, round and ``n_samples``, and, for a strategy
with server state (FedAdam's moments, say), the state its first parent left in ``model/strategy-state.safetensors``. So
``federity verify`` recomputes every aggregate's weights and state from its parents (:func:`aggregate_problems`)
and reports one that differs.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from federity.aggregation import Contribution, Strategy, get_strategy
from federity.aggregation.engine import DEFAULT_MEMORY_LIMIT, Output, TensorSource, aggregate_into
from federity.errors import FederityError, PrivateWeightsError, UpdateError, WorkingTreeError
from federity.identity import Wallet
from federity.records import MAIN_BRANCH, is_model_branch
from federity.repo.checks import update_problems
from federity.repo.commits import CommitRecord, create_commit
from federity.repo.history import History
from federity.repo.layout import STATE_FILE
from federity.repo.metadata import CommitMeta, canonical_params, signed_params
from federity.repo.privacy import note_sealed, sealing_for
from federity.repo.storage import MODEL_DVC_FILE
from federity.repo.updates import UpdateInfo, list_updates, record_review
from federity.sealing.objects import Sealing
from federity.weights import WEIGHTS_FILE

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


def existing_aggregate(history: History, tip: str, round: int) -> AggregateResult | None:
    """The aggregate commit for ``round`` on ``tip``'s first-parent line, if there is one."""
    for commit in history.first_parent_line(tip):
        record = history.commits.get(commit)
        if record and record.meta and record.meta.kind == "aggregate" and record.meta.round == round:
            return AggregateResult(record.commit, record.parents, record.parents[1:], round, created=False)
    return None


def chosen_strategy(config_aggregation: dict[str, Any], strategy: str | None,
                    parameters: dict[str, Any] | None) -> Strategy:
    """The strategy an aggregation uses: ``strategy`` and ``parameters`` when given, else ``federity.yaml``'s
    ``aggregation.strategy`` and ``aggregation.params`` (the parameters apply only to the strategy they were
    written for)."""
    configured = str(config_aggregation.get("strategy", "fedavg"))
    if strategy is None:
        return get_strategy(configured, parameters if parameters is not None else config_aggregation.get("params"))
    same = strategy.partition("@")[0] == configured.partition("@")[0]
    return get_strategy(strategy, parameters if parameters is not None or not same
                        else config_aggregation.get("params"))


def aggregate(repo: Repository, wallet: Wallet, *, strategy: str | None = None,
              parameters: dict[str, Any] | None = None, round: int | None = None,
              updates: list[str] | None = None, min_updates: int = 1) -> AggregateResult:
    """Aggregate the approved updates trained for the current branch (or the given ones, which must be approved)
    into a commit on it.

    ``strategy`` and its ``parameters`` default to ``federity.yaml``'s; ``round`` to the round after the branch
    head's. Approved updates that no longer pass their checks (e.g. they became too stale) are recorded as
    rejected and left out. Fewer than ``min_updates`` usable updates is an error, and the branch is left
    unchanged.
    """
    repo.keys.use(wallet)
    branch = repo.require_branch()
    if not is_model_branch(branch):
        raise WorkingTreeError(f"{branch} is an update's branch, not one a model lives on",
                               "check out the branch to aggregate on (`federity checkout main`)")
    head = repo.head()
    history = History.load(repo)
    head_meta = history.commit(head).meta
    if head_meta is None:
        raise UpdateError(f"{branch}'s head {head[:12]} carries no Federity metadata", "run `federity verify`")
    round = head_meta.round + 1 if round is None else round
    done = existing_aggregate(history, head, round)
    if done is not None:
        return done
    if round != head_meta.round + 1:
        raise UpdateError(f"{branch} is at round {head_meta.round}, so it cannot aggregate round {round}",
                          "aggregate the next round, or pull first")
    config = repo.config(head)
    # an unknown strategy or bad parameters fail here, before any review is recorded
    combiner = chosen_strategy(config.aggregation, strategy, parameters)
    chosen, dropped = _approved(repo, history, wallet, updates, branch, head)
    if len(chosen) < max(min_updates, 1):
        now_rejected = "".join(f"; {update[:12]} was rejected now: {reason}" for update, reason in dropped.items())
        raise UpdateError(f"{len(chosen)} approved update(s) can be aggregated, {max(min_updates, 1)} needed"
                          f"{now_rejected}",
                          "review pending updates with `federity updates` and `federity review approve`")

    chosen.sort(key=lambda u: u.id)  # the parents' order, in which verify recomputes the weights
    samples = sum(u.n_samples for u in chosen)
    strategy_id = f"{combiner.name}@{combiner.version}"
    signed_params = canonical_params(combiner.parameters()) if combiner.parameters() else None
    where = "" if branch == MAIN_BRANCH else f" on {branch}"
    message = (f"Round {round}{where}: {strategy_id} of {len(chosen)} update(s), {samples} samples\n\n"
               + "\n".join(f"- {u.id[:12]} by {u.author} ({u.n_samples} samples)" for u in chosen))
    sealing = sealing_for(repo, wallet, "aggregate", config)
    with repo.transaction():
        with repo.store.scratch() as scratch:
            with repo.store.freeing_checkout(scratch):
                written = aggregate_weights(history, head, [u.id for u in chosen], combiner, round,
                                            scratch / "weights", scratch / "state", sealing)
            os.replace(scratch / "weights", repo.weights_path)
            if written.state_sha256 is not None:
                os.replace(scratch / "state", repo.weights_path.parent / STATE_FILE)
        known = {WEIGHTS_FILE: written.weights_md5, STATE_FILE: written.state_md5}
        repo.store.track(strategy_state=written.state_sha256 is not None,
                         md5s={relpath: md5 for relpath, md5 in known.items() if md5 is not None},
                         sealing=sealing)
        record = create_commit(repo, wallet, "aggregate", message, [head, *(u.id for u in chosen)],
                               round=round, strategy=strategy_id,
                               strategy_params=signed_params, paths=(MODEL_DVC_FILE,),
                               weights_sha256=written.weights_sha256, config=config)
    return AggregateResult(record.commit, record.parents, [u.id for u in chosen], round, created=True)


def _approved(repo: Repository, history: History, wallet: Wallet, refs: list[str] | None, branch: str,
              tip: str) -> tuple[list[UpdateInfo], dict[str, str]]:
    """The approved updates for ``branch`` (those ``refs`` names, when given) that still pass their checks onto
    its head ``tip``, and those that no longer do (id → why), which are recorded as rejected."""
    approved = [u for u in list_updates(repo, "approved", history) if u.target == branch]
    if refs is not None:
        by_ref = {u.id: u for u in approved}
        missing = [r for r in refs if not any(uid.startswith(r) for uid in by_ref)]
        if missing:
            raise UpdateError(f"not approved for {branch} (or unknown): {', '.join(missing)}",
                              "approve them with `federity review approve UPDATE` first; an update is aggregated "
                              "only on the branch it was trained for (the target `federity updates` lists)")
        approved = [u for u in approved if any(u.id.startswith(r) for r in refs)]
    usable, dropped = [], {}
    for update in approved:
        problems = update_problems(history, update, tip, branch=branch)
        if problems:
            dropped[update.id] = "; ".join(problems)
            record_review(repo, wallet, update, "rejected", dropped[update.id], history)
        else:
            usable.append(update)
    return usable, dropped


def previous_state(history: History, main: str, strategy: Strategy) -> bool:
    """Whether ``main`` left server state for ``strategy``: it is an aggregate made by exactly this strategy
    (name, version, parameters) that tracks a state file. Otherwise the strategy starts from zero state."""
    meta = history.commit(main).meta
    if not strategy.state or meta is None or meta.kind != "aggregate":
        return False
    return (meta.strategy == f"{strategy.name}@{strategy.version}"
            and (meta.strategy_params or "{}") == (canonical_params(strategy.parameters()) or "{}")
            and STATE_FILE in history.repo.store.files(main))


def aggregate_weights(history: History, main: str, updates: list[str], strategy: Strategy, round: int,
                      out: Path, state_out: Path, sealing: Sealing | None = None) -> Output:
    """Write round ``round``'s aggregate of ``updates`` (commit ids, combined in this order) onto ``main`` to
    ``out`` (and the strategy's new state to ``state_out``, if it keeps any), sealed with ``sealing`` if given.

    Each update contributes its change from its own base (its first parent), its ``n_samples`` from update.json
    and its staleness, ``round`` minus the update's round. Every input is read in pieces from the DVC cache.
    """
    store = history.repo.store
    with contextlib.ExitStack() as opened:
        model = opened.enter_context(store.open(main))
        bases: dict[str, TensorSource] = {main: model}
        base_of, sources, contributions = [], [], []
        for update in updates:
            record = history.commit(update)
            update_record = history.update_record(update)
            if isinstance(update_record, str):
                raise UpdateError(update_record, "reject the update")
            base = record.parents[0]
            if base not in bases:
                bases[base] = opened.enter_context(store.open(base))
            base_of.append(list(bases).index(base))
            sources.append(opened.enter_context(store.open(update)))
            contributions.append(Contribution(update_record.n_samples,
                                              round - (record.meta.round if record.meta else 0)))
        state = opened.enter_context(store.open(main, STATE_FILE)) \
            if previous_state(history, main, strategy) else None
        config = history.config(main)
        memory_limit = config.aggregation.get("max_memory_bytes") if not isinstance(config, str) else None
        return aggregate_into(strategy, model, sources, list(bases.values()), base_of, contributions, out,
                              state=state, state_out=state_out, memory_limit=memory_limit or DEFAULT_MEMORY_LIMIT,
                              sealing=sealing)


def _strategy_of(meta: CommitMeta) -> Strategy:
    """The strategy an aggregate commit names, with the parameters it signed (hostile text: validated)."""
    assert meta.strategy is not None
    try:
        parameters = signed_params(meta)
    except ValueError as exc:
        raise UpdateError(str(exc), "do not use this commit") from None
    return get_strategy(meta.strategy, parameters)


def aggregate_problems(history: History, record: CommitRecord) -> list[str]:
    """Why an aggregate commit's weights (and server state) are not its strategy's combination of its parents
    (empty when they are).

    The weights are recomputed, streaming, from the first parent and the aggregated updates with the strategy,
    version and parameters the commit signed, and serialised canonically, as :func:`aggregate` wrote them, so
    equal tensors hash to the sha256 the commit signed (which ``verify``'s ``weights`` check has already matched
    against the stored object). A strategy's state file must equal its recomputation too.
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
        strategy = _strategy_of(meta)
        with history.repo.store.scratch() as scratch:
            written = aggregate_weights(history, record.parents[0], updates, strategy, meta.round,
                                        scratch / "weights", scratch / "state")
            stored_state = _stored_state_sha256(history, record) if written.state_sha256 is not None else None
    except PrivateWeightsError:
        note_sealed(history, record.commit)
        return []
    except FederityError as exc:
        return [f"its weights cannot be recomputed: {exc.message}"]
    except (ValueError, ArithmeticError) as exc:  # e.g. sample counts summing to zero, an update from a later round
        return [f"its weights cannot be recomputed: {exc}"]
    label = meta.strategy + (f" {meta.strategy_params}" if meta.strategy_params else "")
    if written.weights_sha256 != meta.weights_sha256:
        return [f"its weights are not the {label} of its {len(updates)} update(s) applied to its first parent "
                f"{record.parents[0][:12]}: recomputed, they hash to {written.weights_sha256[:16]}…, but the commit "
                f"signed {meta.weights_sha256[:16]}…"]
    if written.state_sha256 is not None and stored_state != written.state_sha256:
        return [f"its strategy state (model/{STATE_FILE}) is not what {label} computes from its parents"]
    return []


def _stored_state_sha256(history: History, record: CommitRecord) -> str | None:
    if STATE_FILE not in history.repo.store.files(record.commit):
        return None
    return history.repo.store.facts(record.commit, STATE_FILE).sha256
