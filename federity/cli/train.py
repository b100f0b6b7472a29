"""``federity train``: train a branch's model (main's by default) on local data and commit the result as a signed
update for that branch."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from federity.cli import FederityCommand, emit, load_wallet, open_repo, show_repository_code
from federity.repo import MAIN_BRANCH
from federity.repo.branches import branch_tip


@click.command(cls=FederityCommand)
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Local dataset: CSV, Parquet, NPZ, an image folder, or what the repository's loader reads.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override params.yaml's epochs.")
@click.option("--branch", default=MAIN_BRANCH, show_default=True,
              help="The branch the update is for, and the only one it may be aggregated on (a variant, say).")
@click.option("--base", help="Commit of the branch's line to train from (default: the branch's head).")
def train(data: Path, epochs: int | None, branch: str, base: str | None) -> None:
    """Check the data against the contract, train, and commit a signed update on a new branch.

    In a repository that requires proofs of training, the audited steps are proved here; progress goes to stderr,
    as does the notice naming the repository's own modules (model builder, dataset loader) that training runs.
    """
    repo = open_repo()
    show_repository_code(repo, base or branch_tip(repo, branch))
    with Console(stderr=True).status("training") as status:
        result = repo.train(load_wallet(), data, base=base, branch=branch, epochs=epochs, progress=status.update)
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    proof = result.proof
    proof_line = (f"proof: {len(proof['audited'])} of {proof['steps']} steps proved in {proof['prove_seconds']:.1f} s "
                  f"({proof['proof_bytes']} bytes); {proof['srs']}\n") if proof else ""
    emit(result.to_json(),
         f"update {result.update[:12]} for {result.target} on {result.branch} (round {result.round}, base "
         f"{result.base[:12]})\n"
         f"trained on {result.n_samples} samples; local {metrics}\n"
         f"data contract: {result.contract['expectations']} expectations passed\n{proof_line}"
         "publish it with `federity push`")
