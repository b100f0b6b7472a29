"""The ServerApp: FedAvg over every site, weighted by sample counts, ``num-server-rounds`` rounds, each round timed.

A round's time runs from the start of its fit (``configure_train``: sampling the connected nodes, building the
messages that carry the global model) to the end of its aggregation (``aggregate_train`` returned the new global
model); Flower's ``Strategy.start`` sends the messages and waits for every reply in between. Federated evaluation
is off; after each round the new global model is scored on the owner's held-out set (``heldout-path``), outside the
timed span. Every timestamp is wall clock (``time.time()``), written to ``timings-path`` as JSON after each round and
at the end (``"status": "finished"``), for bench/bench_flower_rounds.py to read.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, UserConfig
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from flower_rounds.task import evaluate, initial_weights, load_csv

app = ServerApp()


class Timings:
    """What the benchmark reads: when the ServerApp started, when every site was connected, each round's span and
    replies, the held-out accuracy after each round. Written whole (atomically) on every :meth:`write`."""

    def __init__(self, path: str) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {"status": "running", "serverapp_started": time.time(), "rounds": [],
                                     "accuracy": {}}

    def write(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)


class TimedFedAvg(FedAvg):
    """Flower's FedAvg, with the start of each round's fit and the end of its aggregation recorded."""

    def __init__(self, timings: Timings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timings = timings

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                        ) -> Iterable[Message]:
        self.timings.data["rounds"].append({"round": server_round, "fit_started": time.time()})
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        result = super().aggregate_train(server_round, replies)
        aggregated = time.time()
        entry = self.timings.data["rounds"][-1]
        entry["aggregated"] = aggregated
        entry["seconds"] = aggregated - entry["fit_started"]
        entry["replies"] = sum(not m.has_error() for m in replies)
        entry["errors"] = [f"node {m.metadata.src_node_id}: {m.error.reason}" for m in replies if m.has_error()]
        entry["sites"] = [{"node": m.metadata.src_node_id, **m.content["timing"], **m.content["metrics"]}
                          for m in replies if not m.has_error()]
        return result


def _wait_for_nodes(grid: Grid, sites: int, seconds: float) -> list[int]:
    deadline = time.time() + seconds
    while len(nodes := list(grid.get_node_ids())) < sites:
        if time.time() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {sites} SuperNodes connected within {seconds:.0f} s")
        time.sleep(0.1)
    return nodes


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Wait for every site, then run FedAvg for the configured rounds, timing each; a failure is recorded in the
    timings file before Flower reports the run as failed."""
    timings = Timings(str(context.run_config["timings-path"]))
    timings.write()
    try:
        _run(grid, context.run_config, timings)
    except BaseException as exc:
        timings.data.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        timings.write()
        raise
    timings.data.update(status="finished", finished=time.time())
    timings.write()


def _run(grid: Grid, config: UserConfig, timings: Timings) -> None:
    sites, rounds = int(config["num-sites"]), int(config["num-server-rounds"])
    timings.data["nodes_connected"] = len(_wait_for_nodes(grid, sites, float(config["node-wait"])))
    timings.data["nodes_ready"] = time.time()

    init_path = str(config["init-path"])
    if init_path:
        with np.load(init_path) as genesis:
            initial = [genesis["weight"].astype(np.float32), genesis["bias"].astype(np.float32)]
    else:
        initial = initial_weights(30, int(config["seed"]))
    heldout = load_csv(str(config["heldout-path"])) if config["heldout-path"] else None

    def evaluate_global(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if heldout is None:
            return None
        weight, bias = arrays.to_numpy_ndarrays()
        metrics = evaluate(weight, bias, *heldout)
        timings.data["accuracy"][str(server_round)] = metrics["accuracy"]
        timings.write()
        return MetricRecord(metrics)

    strategy = TimedFedAvg(timings, fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=sites,
                           min_available_nodes=sites)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(initial), num_rounds=rounds,
                   timeout=float(config["round-timeout"]), evaluate_fn=evaluate_global)
