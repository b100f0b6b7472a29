"""The round flow an owner runs (or schedules in the Prefect UI): N federated rounds.

First, finish what an interrupted run left (an aggregate committed but not pushed or not tracked). Then each
round, each step a task run the Prefect UI times: pin (branch, base commit, round, nonce) → dispatch to the
sites (``run_deployment`` of the ``local-train/<pool>`` deployment each agent serves) → wait for the sites →
collect the updates → check them → review gate (``auto`` approves every verified update; ``manual`` pauses the
run with a form in the Prefect UI, which ``federity review`` can also answer) → aggregate → push → track in
MLflow → mint the NFTs.

Only URIs, ids, hashes and metrics pass through Prefect. A round below quorum fails and leaves main unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger

from tasks.review_gate import review_form
from tasks.rounds import (
    aggregate_round,
    check_updates,
    collect_updates,
    finish_interrupted_round,
    mint,
    pin_round,
    push_round,
    record_decisions,
    track_round,
)
from tasks.sites import dispatch, wait_for_sites


@flow(name="federated-round", persist_result=False)
def federated_round(repo: str, pools: list[str], rounds: int = 1, review: Literal["auto", "manual"] = "auto",
                    quorum: int = 1, strategy: str | None = None, strategy_params: dict[str, Any] | None = None,
                    train_timeout: float = 600, review_timeout: int = 3600, validation: str | None = None,
                    branch: str = "main") -> list[dict[str, Any]]:
    """Run ``rounds`` federated rounds of the repository checked out at ``repo`` with the sites in ``pools``, on
    ``branch`` (main, or a variant the sites fine-tune: they train from its head and it takes the aggregates)."""
    logger = get_run_logger()
    summary = []
    finished = finish_interrupted_round(repo, branch, validation)
    if finished:
        logger.warning("finished the interrupted round of %s: pushed and tracked its aggregate", finished[:12])
    for _ in range(rounds):
        pin = pin_round(repo, branch)
        logger.info("round %s of %s: base %s, sites %s", pin["round"], branch, pin["base"][:12], ", ".join(pools))
        states = wait_for_sites(dispatch(pools, pin), train_timeout)
        logger.info("round %s: site runs %s", pin["round"], states)
        updates = check_updates(repo, pin, collect_updates(repo, pin))
        verified = [u for u in updates if u["status"] == "verified"]
        for u in updates:
            if u["status"] == "rejected":
                logger.warning("update %s rejected: %s", u["id"][:12], u["reason"])
        decisions, reason = None, None
        if review == "manual" and verified:
            decisions, reason = review_form(verified, pin["round"], review_timeout)
        approved = record_decisions(repo, pin, decisions, reason or None)
        result = aggregate_round(repo, pin, approved, strategy, strategy_params, quorum)
        push_round(repo, pin)
        run_id = track_round(repo, result["commit"], validation)
        nft = mint(repo, result["commit"])
        logger.info("round %s: commit %s from %s update(s), MLflow run %s, NFT %s", pin["round"],
                    result["commit"][:12], len(result["updates"]), run_id, nft or "queued")
        summary.append({**result, "mlflow_run": run_id, "sites": states, "nft": nft})
    return summary
