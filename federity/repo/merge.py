"""``federity merge BRANCH``: combine another branch's model with the current branch's, as a signed commit.

The merge commit has two parents, the current branch's head ("ours", first) and BRANCH's ("theirs"), and
weights that a merge method (:mod:`federity.merging`) computes tensor by tensor from the two models and their
merge base (the one best common ancestor, as ``git merge-base`` finds it). It signs the method as
``name@version`` and its parameters as canonical JSON (the ``Federity-Strategy`` and
``Federity-Strategy-Params`` trailers; a weighted merge signs the weights it used, a DARE merge its seed), so
``federity verify`` recomputes every merge bit for bit from its parents (:func:`merge_problems`).

Everything else in the merge commit's tree is ours: ``federity.yaml`` (the membership) stays the first parent's,
as for every commit but a ``members`` one. A merge never fast-forwards: the branch's own commits (updates a
contributor committed there, say) reach the current branch only as the second parent of a maintainer's merge.

A merge that cannot be made is refused before anything is written: a detached HEAD or uncommitted changes, an
author below maintainer, a branch already merged, no single merge base, different frameworks or model
configurations, tensors that differ (each named), a branch holding commits that ``verify`` rejects, a result
that is not finite. A failure while committing rolls the repository back (:meth:`Repository.transaction`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from federity.errors import FederityError, MergeError, PrivateWeightsError
from federity.git import GitError
from federity.identity import Wallet
from federity.merging import DEFAULT_MERGE_METHOD, MergeMethod, get_merge_method
from federity.repo.branches import branch_tip, require_model_branch
from federity.repo.commits import CommitRecord, create_commit, require_role
from federity.repo.history import History
from federity.repo.metadata import canonical_params, signed_params
from federity.repo.privacy import note_sealed, sealing_for
from federity.repo.storage import MODEL_DVC_FILE, WeightsStore
from federity.weights.files import canonical_order, describe_mismatch, stored_values
from federity.weights.tensor_file import CanonicalWriter

if TYPE_CHECKING:
    from federity.repo import Repository


@dataclass
class MergeResult:
    """A merge commit as ``federity merge --json`` prints it."""

    commit: str
    parents: list[str]
    strategy: str
    strategy_params: dict[str, Any]
    merge_base: str
    weights_sha256: str

    def to_json(self) -> dict[str, Any]:
        """As ``federity merge --json`` prints it."""
        return {"commit": self.commit, "parents": self.parents, "strategy": self.strategy,
                "strategy_params": self.strategy_params, "merge_base": self.merge_base,
                "weights_sha256": self.weights_sha256}


def merge(repo: Repository, wallet: Wallet, branch: str, *, strategy: str | None = None,
          parameters: dict[str, Any] | None = None, message: str | None = None) -> MergeResult:
    """Merge ``branch`` (a local branch, else ``origin``'s) into the current branch with merge method
    ``strategy`` (default ``average``) and its ``parameters``; return the new merge commit."""
    repo.keys.use(wallet)
    current = repo.require_branch()
    repo.require_clean()
    ours, theirs = repo.head(), branch_tip(repo, require_model_branch(branch))
    history = History.load(repo)
    require_role(repo.config(ours).role_of(wallet.pubkey), "merge", wallet.pubkey)
    method = get_merge_method(strategy or DEFAULT_MERGE_METHOD, parameters)
    if history.is_ancestor(theirs, ours):
        raise MergeError(f"{branch} ({theirs[:12]}) is already part of {current}: there is nothing to merge",
                         "train or commit on the branch first, or merge another branch")
    base = merge_base(repo, ours, theirs)
    _require_same_model(history, current, ours, branch, theirs)
    _require_valid_branch(history, branch, ours, theirs)
    method = method.with_sample_counts(samples_since(history, ours, base), samples_since(history, theirs, base))
    method_id = f"{method.name}@{method.version}"
    text = message or f"Merge {branch} into {current} ({method_id})"
    with repo.transaction():
        with repo.store.scratch() as scratch:
            weights_sha256 = merge_weights(repo.store, method, ours, theirs, base, scratch / "weights")
            os.replace(scratch / "weights", repo.weights_path)
        repo.store.track(sealing=sealing_for(repo, wallet, "merge", repo.config(ours)))
        record = create_commit(repo, wallet, "merge", text, [ours, theirs], strategy=method_id,
                               strategy_params=canonical_params(method.parameters()) if method.parameters() else None,
                               paths=(MODEL_DVC_FILE,), weights_sha256=weights_sha256)
    return MergeResult(record.commit, record.parents, method_id, method.parameters(), base, weights_sha256)


def merge_base(repo: Repository, ours: str, theirs: str) -> str:
    """The one best common ancestor of ``ours`` and ``theirs``; none, or more than one (a criss-cross history),
    is a :class:`MergeError`."""
    try:
        bases = repo.git.run("merge-base", "--all", ours, theirs).split()
    except GitError:
        bases = []
    if not bases:
        raise MergeError(f"{ours[:12]} and {theirs[:12]} share no history, so there is no merge base to merge "
                         "relative to", "merge branches of one repository")
    if len(bases) > 1:
        raise MergeError(f"{ours[:12]} and {theirs[:12]} have {len(bases)} best common ancestors "
                         f"({', '.join(b[:12] for b in bases)}), so a task vector has no single base",
                         "merge one branch's base into the other first, so that one merge base remains")
    return bases[0]


def samples_since(history: History, tip: str, base: str) -> int:
    """The samples the updates in ``tip``'s history since ``base`` trained on (their ``n_samples``, each counted
    once, whether it stands on the branch or was aggregated there)."""
    total = 0
    for commit in history.ancestors(tip) - history.ancestors(base):
        if history.kind(commit) == "update":
            record = history.update_record(commit)
            total += 0 if isinstance(record, str) else record.n_samples
    return total


def _require_same_model(history: History, current: str, ours: str, branch: str, theirs: str) -> None:
    configs = {name: history.config(commit) for name, commit in ((current, ours), (branch, theirs))}
    for name, config in configs.items():
        if isinstance(config, str):
            raise MergeError(f"{name}'s federity.yaml cannot be read: {config}", "run `federity verify`")
    mine, other = configs[current], configs[branch]
    assert not isinstance(mine, str) and not isinstance(other, str)
    if mine.framework != other.framework:
        raise MergeError(f"{current} holds a {mine.framework} model and {branch} a {other.framework} one: models "
                         "of different frameworks cannot be merged", "merge branches of the same model")
    if mine.model != other.model:
        raise MergeError(f"{current} and {branch} configure different models (the model section of "
                         "federity.yaml differs)", "merge branches of the same model")


def _require_valid_branch(history: History, branch: str, ours: str, theirs: str) -> None:
    """Refuse ``branch`` when a commit it would bring in fails what ``verify`` checks of it."""
    from federity.repo.verify import commit_checks  # verify recomputes merges with this module in turn

    problems = []
    for commit in sorted(history.ancestors(theirs) - history.ancestors(ours)):
        if not history.rooted(commit):
            problems.append(f"{commit[:12]} root: it descends from a root other than the repository's genesis")
            continue
        problems += [f"{commit[:12]} {check}: {reason}" for check, reason in commit_checks(history, commit)]
    if problems:
        raise MergeError(f"{branch} holds commits that `federity verify` rejects: {'; '.join(problems[:5])}"
                         + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
                         "nothing was merged; fix or drop those commits on the branch (`federity verify` lists "
                         "them all), then merge again")


def merge_weights(store: WeightsStore, method: MergeMethod, ours: str, theirs: str, base: str, out: Path) -> str:
    """Write ``method``'s merge of the weights of ``ours`` and ``theirs`` relative to ``base`` to ``out`` as the
    canonical safetensors file and return its sha256.

    Each tensor is read whole from the three DVC objects, merged in float64 and stored in its own dtype (an
    integer tensor rounded to the nearest), so memory is a few times the largest tensor, not the model. Tensors
    that differ between the three (names, shapes, dtypes, each named) or a result that is not finite are a
    :class:`MergeError`, and nothing is left at ``out``.
    """
    with store.open(ours) as mine, store.open(theirs) as other, store.open(base) as common:
        layout = mine.layout
        for what, source in (("the branch being merged", other), ("the merge base", common)):
            mismatch = describe_mismatch(layout, source.layout)
            if mismatch:
                raise MergeError(f"the models have different architectures: against the current branch, {what} "
                                 f"has {'; '.join(mismatch)}", "merge branches of the same model")
        writer = CanonicalWriter(out, layout)
        try:
            for name, (shape, dtype) in canonical_order(layout):
                merged = np.asarray(method.merge(name, *(source.tensor(name).astype(np.float64)
                                                         for source in (mine, other, common))))
                if merged.shape != tuple(shape):
                    raise MergeError(f"merge method {method.name} returned shape {merged.shape} for tensor {name!r} "
                                     f"of shape {tuple(shape)}", "this is a bug in the merge method plugin: report "
                                                                 "it to its authors")
                stored = stored_values(merged, np.dtype(dtype))
                if stored is None:
                    raise MergeError(f"the {method.name} merge of tensor {name!r} has values that are not finite "
                                     f"{dtype} numbers (NaN, infinity or overflow)",
                                     "nothing was merged; try a smaller scale or another merge method")
                writer.write(name, 0, stored.reshape(-1))
        except BaseException:
            writer.abort()
            raise
        return writer.finish()


def merge_problems(history: History, record: CommitRecord) -> list[str]:
    """Why a merge commit's weights are not its merge method's merge of its two parents relative to their merge
    base (empty when they are), recomputed with the method, version and parameters the commit signed."""
    meta = record.meta
    assert meta is not None
    if len(record.parents) != 2:
        return [f"a merge commit must have exactly two parents, and this one has {len(record.parents)}"]
    if meta.strategy is None:
        return ["the commit does not name its merge method (no Federity-Strategy trailer), so its weights cannot "
                "be recomputed from its parents"]
    ours, theirs = record.parents
    try:
        method = get_merge_method(meta.strategy, signed_params(meta))
        base = merge_base(history.repo, ours, theirs)
        with history.repo.store.scratch() as scratch:
            recomputed = merge_weights(history.repo.store, method, ours, theirs, base, scratch / "weights")
    except PrivateWeightsError:
        note_sealed(history, record.commit)
        return []
    except FederityError as exc:
        return [f"its weights cannot be recomputed: {exc.message}"]
    except ValueError as exc:  # the trailer is not a JSON object
        return [f"its weights cannot be recomputed: {exc}"]
    if recomputed != meta.weights_sha256:
        label = meta.strategy + (f" {meta.strategy_params}" if meta.strategy_params else "")
        return [f"its weights are not the {label} merge of {ours[:12]} and {theirs[:12]} relative to their merge "
                f"base {base[:12]}: recomputed, they hash to {recomputed[:16]}…, but the commit signed "
                f"{meta.weights_sha256[:16]}…"]
    return []
