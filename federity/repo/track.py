"""``federity track``: record a main commit in MLflow — one run per commit, one nested run per update it
aggregated — and note the run id on the commit (git notes), so ``log --json`` shows it.

The tracking store is ``$MLFLOW_TRACKING_URI`` when set, else SQLite under the repository's ``.federity/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from federity.errors import ConfigError
from federity.records import parse_mlflow_note
from federity.repo.checks import valid_updates
from federity.repo.commits import read_commit
from federity.repo.history import History
from federity.repo.notes import MLFLOW, read_note, write_note
from federity.repo.params import training_params
from federity.repo.proof_inputs import check_update_proof
from federity.repo.updates import read_update_record

if TYPE_CHECKING:
    from federity.repo import Repository


def evaluate_commit(repo: Repository, commit: str, data: Path) -> dict[str, float]:
    """Loss and accuracy of ``commit``'s model on a local dataset (the owner's validation set)."""
    from federity.repo.params import site_dataset
    from federity.training import evaluate
    from federity.weights import read_tensors

    config = repo.config(commit)
    dataset = site_dataset(repo, commit, config, Path(data))
    return evaluate(config, repo.root, read_tensors(repo.store.read(commit), commit[:12]), dataset)


def _proof_metrics(repo: Repository, update: str, record: dict[str, Any]) -> dict[str, float]:
    """An update's proving cost as its author reported it, and the verify time measured here by re-verifying."""
    proof = record.get("proof")
    if not proof:
        return {}
    check = check_update_proof(repo, read_commit(repo, update), record, valid_updates(History.load(repo)))
    return {"proof.prove_seconds_per_step": proof.get("prove_seconds_per_step"),
            "proof.proof_bytes": proof.get("proof_bytes"), "proof.peak_memory_mb": proof.get("peak_memory_mb"),
            "proof.audited_steps": len(proof.get("audited") or []), "proof.verified": float(check.ok),
            "proof.verify_seconds": round(check.verify_seconds, 4)}


def track(repo: Repository, rev: str = "HEAD", *, validation: Path | None = None,
          tracking_uri: str | None = None) -> str:
    """Log ``rev`` to MLflow (idempotent per commit) and return the run id."""
    from federity.tracking import Tracker, UpdateMetrics

    record = read_commit(repo, rev)
    if record.meta is None:
        raise ConfigError(f"commit {record.commit[:12]} carries no Federity metadata", "track a Federity commit")
    config = repo.config(record.commit)
    updates = []
    for parent in record.parents[1:]:
        update = read_update_record(repo, parent)
        parent_meta = read_commit(repo, parent).meta
        if update is not None and parent_meta is not None:
            metrics = {**(update.get("metrics") or {}), **_proof_metrics(repo, parent, update)}
            updates.append(UpdateMetrics(parent, parent_meta.author, int(update.get("n_samples", 0)), metrics))
    tracker = Tracker(repo.root, tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
    run_id = tracker.log_commit(
        repository=config.name, repository_id=config.id, commit=record.commit, round=record.meta.round,
        kind=record.meta.kind, params=training_params(repo, record.commit).to_json(),
        strategy=record.meta.strategy or str(config.aggregation.get("strategy", "fedavg")),
        global_metrics=evaluate_commit(repo, record.commit, validation) if validation else {},
        updates=updates,
    )
    recorded = read_note(repo, MLFLOW, record.commit, parse_mlflow_note)
    if recorded is None or recorded.run_id != run_id:
        # the note is pushed: a server's URI without its password, never a local path
        note = {"run_id": run_id, "tracking_uri": tracker.display_uri if tracker.is_server else None}
        write_note(repo, MLFLOW, record.commit, note)
    return run_id
