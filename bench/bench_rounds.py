"""Benchmark: where a federated round's time goes, and the demo's wall time against an earlier commit's.

    python bench/bench_rounds.py                      # 5 rounds, 3 sites; then the demo here and at the baseline
    python bench/bench_rounds.py --baseline REV       # the commit the demo is compared with
    python bench/bench_rounds.py --no-demo            # the rounds only

Writes ``bench/results/rounds.json``.

**Rounds.** The demo's federation (3 hospitals, breast-cancer, logistic regression, auto review, FedAvg) on a
local Prefect server with one agent process per hospital, run round after round by the round flow in this
process. Every phase is a Prefect task run, and the phases are read back from the Prefect API after each round:
the owner's (pin, dispatch, wait for sites, collect, check, review, aggregate, push, track, mint) and each site's
(``site start``: from the owner's dispatch to the site's flow run starting; sync workspace, check data contract,
train, commit update, push update). ``overhead_seconds`` is the round's wall time minus the slowest site's
``train`` task (training, evaluation and, with proofs, proving: the compute a round exists for). The first round
is reported apart (``first_round``): it pays for what each process loads on first use.

**Demo.** ``federity demo`` (5 rounds, 3 hospitals) in a new process, here and at ``--baseline`` (a git worktree
of that commit, run with this environment), alternated ``--demo-runs`` times; the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "rounds.json"
BASELINE = "45f5695"  # main before the rounds issue: agents served deployments, one process per site run
OVERHEAD_TARGET_SECONDS = 5.0
DEMO_TARGET_RATIO = 0.4


def _task_phases(client: Any, flow_run_id: Any) -> dict[str, float]:
    """Each task run of a flow run: its name (without Prefect's suffix) → seconds it ran."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: round((run.end_time - run.start_time).total_seconds(), 3)
            for run in runs if run.start_time and run.end_time}


def _site_runs(client: Any, round: int) -> list[Any]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["local-train"])))
    return [r for r in runs if r.parameters.get("round") == round]


def round_report(flow_run_id: Any, round: int, wall: float) -> dict[str, Any]:
    """One round's phases from the Prefect API (see the module's docstring)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        sites = {}
        for run in _site_runs(client, round):
            phases = {"site start": round_(run.start_time - run.created), **_task_phases(client, run.id)}
            sites[run.deployment_id and client.read_deployment(run.deployment_id).name] = phases
        owner = _task_phases(client, flow_run_id)
    compute = max(s.get("train", 0.0) for s in sites.values())
    return {"round": round, "wall_seconds": round_(wall), "site_compute_seconds": compute,
            "overhead_seconds": round_(wall - compute), "owner_phases": owner, "site_phases": sites}


def round_(value: Any) -> float:
    seconds = value.total_seconds() if hasattr(value, "total_seconds") else value
    return round(float(seconds), 3)


def run_rounds(rounds: int, hospitals: int) -> list[dict[str, Any]]:
    """The demo's federation, ``rounds`` rounds, each reported by :func:`round_report`."""
    from federity.demo import prepare_federation, start_agent
    from federity.prefect_server import local_prefect
    from flows.demo import wait_for_deployments

    reports = []
    with tempfile.TemporaryDirectory() as work:
        federation = prepare_federation(Path(work) / "demo", hospitals)
        with local_prefect(federation.workdir / "prefect") as server:
            env = {**os.environ, **server.env()}
            os.environ.update(server.env())
            from flows.round import federated_round
            from flows.settings import flow_settings

            agents = [start_agent(p, d, w.path, env)
                      for p, d, w in zip(federation.pools, federation.hospital_dirs, federation.sites, strict=True)]
            try:
                wait_for_deployments(federation.pools, 120, agents)
                for _ in range(rounds):
                    started = time.perf_counter()
                    with flow_settings():
                        state = federated_round(repo=str(federation.repo.root), pools=federation.pools,
                                                review="auto", quorum=hospitals, return_state=True)
                    wall = time.perf_counter() - started
                    [summary] = state.result()
                    reports.append(round_report(state.state_details.flow_run_id, summary["round"], wall))
                    print(json.dumps(reports[-1]), flush=True)
            finally:
                for agent in agents:
                    agent.terminate()
                for agent in agents:
                    agent.wait(timeout=30)
    return reports


def demo_seconds(source: Path, workdir: Path) -> float:
    """``federity demo`` from the sources at ``source``, in a new process; its reported wall time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # not this process's server
    env["PYTHONPATH"] = str(source)
    out = subprocess.run([sys.executable, "-m", "federity", "--json", "demo", "--dir", str(workdir)], cwd=source,
                         env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"the demo at {source} failed:\n{out.stderr[-3000:]}")
    return float(json.loads(out.stdout)["seconds"])


def compare_demo(baseline: str, runs: int) -> dict[str, Any]:
    """The demo here and at ``baseline``, alternated ``runs`` times."""
    here, before = [], []
    with tempfile.TemporaryDirectory() as work:
        tree = Path(work) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), baseline], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for n in range(runs):
                before.append(demo_seconds(tree, Path(work) / f"before-{n}"))
                here.append(demo_seconds(ROOT, Path(work) / f"here-{n}"))
                print(f"demo: baseline {before[-1]} s, here {here[-1]} s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
    ratio = statistics.median(here) / statistics.median(before)
    return {"baseline": subprocess.run(["git", "rev-parse", baseline], cwd=ROOT, capture_output=True, text=True,
                                       check=True).stdout.strip(),
            "baseline_seconds": before, "seconds": here, "ratio": round(ratio, 3),
            "target_ratio": DEMO_TARGET_RATIO, "meets_target": ratio <= DEMO_TARGET_RATIO}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hospitals", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--demo-runs", type=int, default=1)
    parser.add_argument("--no-demo", action="store_true")
    args = parser.parse_args()
    reports = run_rounds(args.rounds, args.hospitals)
    steady = reports[1:] or reports
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count()},
        "hospitals": args.hospitals,
        "overhead_seconds_median": round(statistics.median(r["overhead_seconds"] for r in steady), 3),
        "wall_seconds_median": round(statistics.median(r["wall_seconds"] for r in steady), 3),
        "overhead_target_seconds": OVERHEAD_TARGET_SECONDS,
        "first_round": reports[0], "rounds": steady,
    }
    results["meets_overhead_target"] = results["overhead_seconds_median"] <= OVERHEAD_TARGET_SECONDS
    if not args.no_demo:
        results["demo"] = compare_demo(args.baseline, args.demo_runs)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k not in ("rounds", "first_round")}, indent=2))


if __name__ == "__main__":
    main()
