"""Benchmark: the federated demo's wall time and accuracy against the targets of the rounds issue
(wall time after installation <= 180 s on 2 cores; final federated accuracy within 1.5 points of centralized).

Run with `make bench` (or `dvc repro`); parameters come from the root params.yaml (``demo`` section). Writes
bench/results/demo.json (metrics) and bench/results/demo_accuracy.csv (accuracy per round, for `dvc plots show`).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import tempfile
from pathlib import Path

import yaml

from flows.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 180
TARGET_GAP_POINTS = 1.5


def main() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["demo"]
    with tempfile.TemporaryDirectory() as work:
        summary = run_demo(Path(work) / "demo", params["hospitals"], params["rounds"])
    final = summary.rounds[-1]["accuracy"]
    gap = 100 * (summary.centralized_accuracy - final)
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "hospitals": params["hospitals"], "rounds": params["rounds"],
        "seconds": summary.seconds, "final_accuracy": final, "centralized_accuracy": summary.centralized_accuracy,
        "gap_points": round(gap, 3),
        "meets_time_target": summary.seconds <= TARGET_SECONDS, "meets_accuracy_target": gap <= TARGET_GAP_POINTS,
    }
    out = ROOT / "bench" / "results"
    (out / "demo.json").write_text(json.dumps(results, indent=2) + "\n")
    with (out / "demo_accuracy.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["round", "federated", "centralized"])
        for r in summary.rounds:
            writer.writerow([r["round"], round(r["accuracy"], 4), round(summary.centralized_accuracy, 4)])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
