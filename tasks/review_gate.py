"""The manual review gate: the round flow pauses with a form in the Prefect UI — one checkbox per verified
update, unchecked by default (an unanswered form approves nothing) — and ``federity review`` can answer it from
the command line by resuming the paused run with the decisions recorded in the repository's review notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput
from pydantic import Field, create_model

ROUND_FLOW = "federated-round"


def _field(update_id: str) -> str:
    return f"approve_{update_id[:12]}"


def build_review_form(updates: list[dict[str, Any]]) -> type[RunInput]:
    """A RunInput model with one ``approve_<id>`` checkbox per update, described by author, samples and metrics."""
    fields: dict[str, Any] = {
        _field(u["id"]): (bool, Field(False, description=(
            f"update {u['id'][:12]} by {u['author']}: {u['n_samples']} samples, local metrics "
            + ", ".join(f"{k} {v:.4f}" for k, v in sorted(u["metrics"].items())))))
        for u in updates
    }
    fields["reason"] = (str, Field("", description="Why the unchecked updates are rejected (optional)."))
    return create_model("ReviewUpdates", __base__=RunInput, **fields)


def review_form(updates: list[dict[str, Any]], round: int, timeout: int) -> dict[str, bool]:
    """Pause the running flow until a reviewer answers; returns update id → approved."""
    answer = pause_flow_run(wait_for_input=build_review_form(updates), timeout=timeout, key=f"review-round-{round}")
    return {u["id"]: bool(getattr(answer, _field(u["id"]))) for u in updates}


def resume_waiting_round(repo_root: Path, decisions: dict[str, str]) -> str | None:
    """Resume a paused round flow of the repository at ``repo_root`` whose form covers only updates that all
    have a decision (``approved`` or ``rejected``); returns the flow run id resumed, or ``None``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[ROUND_FLOW])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"]))),
        )
    for run in runs:
        if Path(str(run.parameters.get("repo", ""))).resolve() != repo_root.resolve():
            continue
        schema = (run.state.state_details.run_input_keyset or {}) if run.state and run.state.state_details else {}
        if not schema:
            continue
        return _resume(run.id, decisions)
    return None


def _resume(flow_run_id: Any, decisions: dict[str, str]) -> str | None:
    from prefect.input.run_input import load_flow_run_input  # noqa: F401  (documents where the schema lives)

    run_input = {_field(update): status == "approved" for update, status in decisions.items()}
    resume_flow_run(flow_run_id, run_input=run_input)
    return str(flow_run_id)
