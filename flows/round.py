"""The round flow an owner runs (or schedules in the Prefect UI): N federated rounds.

Each round: pin (branch, base commit, round, nonce) → local training at every site (``run_deployment`` of the
``local-train/<pool>`` deployment each agent serves) → collect and check updates → review gate (``auto``
approves every verified update; ``manual`` pauses the run with a form in the Prefect UI, which
``federity review`` can also answer) → aggregate, commit and push → track in MLflow → mint the NFTs.

Only URIs, ids, hashes and metrics pass through Prefect. A round below quorum fails and leaves main unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger

from tasks.review_gate import review_form
from tasks.rounds import collect_updates, finalise_round, mint, pin_round, record_decisions, track_round
from tasks.sites import train_at_sites


@flow(name="federated-round", persist_result=False)
def federated_round(repo: str, pools: list[str], rounds: int = 1, review: Literal["auto", "manual"] = "auto",
                    quorum: int = 1, strategy: str | None = None, strategy_params: dict[str, Any] | None = None,
                    train_timeout: float = 600, review_timeout: int = 3600, validation: str | None = None,
                    branch: str = "main") -> list[dict[str, Any]]:
    """Run ``rounds`` federated rounds of the repository checked out at ``repo`` with the sites in ``pools``, on
    ``branch`` (main, or a variant the sites fine-tune: they train from its head and it takes the aggregates)."""
    logger = get_run_logger()
    summary = []
    for _ in range(rounds):
        pin = pin_round(repo, branch)
        logger.info("round %s of %s: base %s, sites %s", pin["round"], branch, pin["base"][:12], ", ".join(pools))
        states = train_at_sites(pools, pin, train_timeout)
        logger.info("round %s: site runs %s", pin["round"], states)
        updates = collect_updates(repo, pin)
        verified = [u for u in updates if u["status"] == "verified"]
        for u in updates:
            if u["status"] == "rejected":
                logger.warning("update %s rejected: %s", u["id"][:12], u["reason"])
        decisions, reason = None, None
        if review == "manual" and verified:
            decisions, reason = review_form(verified, pin["round"], review_timeout)
        approved = record_decisions(repo, pin, decisions, reason or None)
        result = finalise_round(repo, pin, approved, strategy, strategy_params, quorum)
        run_id = track_round(repo, result["commit"], validation)
        nft = mint(repo, result["commit"])
        logger.info("round %s: commit %s from %s update(s), MLflow run %s, NFT %s", pin["round"],
                    result["commit"][:12], len(result["updates"]), run_id, nft or "queued")
        summary.append({**result, "mlflow_run": run_id, "sites": states, "nft": nft})
    return summary
