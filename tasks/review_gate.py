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


def review_form(updates: list[dict[str, Any]], round: int, timeout: int) -> tuple[dict[str, bool], str]:
    """Pause the running flow until a reviewer answers; returns (update id → approved, the reviewer's reason)."""
    answer = pause_flow_run(wait_for_input=build_review_form(updates), timeout=timeout, key=f"review-round-{round}")
    return {u["id"]: bool(getattr(answer, _field(u["id"]))) for u in updates}, str(answer.reason)


def resume_waiting_round(repo_root: Path, statuses: dict[str, str]) -> str | None:
    """Answer a paused round flow of the repository at ``repo_root`` from the review notes: when every update in
    its form has a decision in ``statuses`` (update id → ``approved``/``rejected``), resume it with those
    decisions. Returns the flow run id resumed, or ``None`` (no paused round, or decisions still missing)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )
    from prefect.input.actions import read_flow_run_input

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[ROUND_FLOW])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"]))),
        )
    for run in runs:
        if Path(str(run.parameters.get("repo", ""))).resolve() != Path(repo_root).resolve():
            continue
        keyset = run.state.state_details.run_input_keyset if run.state else None
        if not keyset:
            continue
        schema = read_flow_run_input(keyset["schema"], flow_run_id=run.id) or {}
        fields = [name for name in schema.get("properties", {}) if name.startswith("approve_")]
        answer: dict[str, Any] = {}
        for name in fields:
            matches = [s for update, s in statuses.items() if _field(update) == name]
            if not matches or matches[0] not in ("approved", "rejected"):
                break
            answer[name] = matches[0] == "approved"
        else:
            resume_flow_run(run.id, run_input={**answer, "reason": "decided with `federity review`"})
            return str(run.id)
    return None
