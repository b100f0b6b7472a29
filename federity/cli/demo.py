"""``federity demo``: a whole federation on one machine — Prefect server, agents, rounds, MLflow."""

from __future__ import annotations

from pathlib import Path

import click

from federity.cli import FederityCommand, console, emit, state


@click.command(cls=FederityCommand)
@click.option("--hospitals", default=3, show_default=True, type=click.IntRange(min=1, max=8))
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--dir", "workdir", type=click.Path(path_type=Path), default=Path("federity-demo"),
              show_default=True, help="A new or empty directory for the demo's wallets, data and repositories.")
@click.option("--proofs", is_flag=True,
              help="Require a proof of training with every update (about 100 s more per round: three hospitals "
                   "prove at once on 2 cores).")
def demo(hospitals: int, rounds: int, workdir: Path, proofs: bool) -> None:
    """Run federated rounds on the breast-cancer dataset across simulated hospitals, beside a central baseline."""
    from flows.demo import run_demo  # Prefect: outside the library, imported only here

    def progress(text: str) -> None:
        if not state().json:
            console.print(f"[dim]•[/] {text}")

    summary = run_demo(workdir, hospitals, rounds, proofs, progress)

    def human() -> None:
        console.print(f"\n[bold]round  federated accuracy  (centralized: {summary.centralized_accuracy:.4f})[/]")
        for r in summary.rounds:
            console.print(f"{r['round']:>5}  {r['accuracy']:.4f}")
        gap = 100 * (summary.centralized_accuracy - summary.rounds[-1]["accuracy"])
        console.print(f"\nfinal gap to centralized: {gap:+.2f} points; wall time {summary.seconds:.0f} s")
        console.print(f"Prefect UI (while a server runs): {summary.prefect_ui}\nMLflow UI: {summary.mlflow_ui}\n"
                      f"everything is in {summary.workdir}")

    emit(summary.to_json(), human)
