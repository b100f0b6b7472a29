"""Benchmark: how each aggregation strategy holds up when 20% of the contributors attack (issue 14).

The issue's target: the robust strategies (coordinate-wise median, trimmed mean, Krum, Multi-Krum, Bulyan) stay
within 3 points of the clean accuracy while 20% of the contributors attack; the report also shows how far FedAvg
falls. The federation is simulated in one process, for speed: every site's local training is
:class:`~federity.training.torch_trainer.TorchTrainer` (the trainer ``federity train`` runs), every round's
aggregate is :func:`~federity.aggregation.engine.aggregate_tensors` (the streaming engine ``federity aggregate``
and ``verify`` run), the models are the zoo's builders and the weights go through the torch adapter. What the
simulation leaves out is the rest of a round: no git commits, DVC objects, signatures, reviews or Prefect flows
(they do not change the maths of an aggregate).

Setup, the same for every (strategy, attack) cell: 15 sites, 3 of them attackers (20%; 15 sites so that Bulyan's
``K >= 4f + 3`` holds for f = 3); the global model starts from the same seed; every round every site trains from
the global model on its own shard; the attackers' updates are then modified, the strategy aggregates all 15, and
after the last round the global model is scored on a held-out test set. The attacks:

- ``sign-flip``: the attacker trains honestly and sends ``-delta`` (delta = its update minus the global model);
  e.g. Karimireddy, He and Jaggi, "Learning from History for Byzantine Robust Optimization", ICML 2021.
- ``scale-10``: sends ``10 * delta`` (the boosting of Bagdasaryan et al., "How To Backdoor Federated Learning",
  AISTATS 2020).
- ``gaussian-noise``: sends, instead of its delta, Gaussian noise ``N(0, sigma^2)`` with, per tensor, sigma = 3
  times the standard deviation of the coordinates of its own honestly trained delta of that tensor (the
  Gaussian Byzantine worker of Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant Gradient
  Descent", NeurIPS 2017).
- ``label-flip``: trains on its shard with labels ``y -> C - 1 - y`` and sends that update unchanged (Tolpegin
  et al., "Data Poisoning Attacks Against Federated Learning Systems", ESORICS 2020).

Under every attack the attackers claim the median honest ``n_samples`` (so a sample-weighted strategy gives them
an ordinary weight); honest sites report their true counts. The tasks: (1) the demo's, the bundled breast-cancer
data split non-IID across the sites by :func:`federity.demo_data.split_breast_cancer`, with the zoo's logistic
regression and the demo's training parameters; (2) scikit-learn's bundled ``load_digits`` (8x8 grey images, 10
classes), split IID (a random shuffle cut into 15 equal shards), with the zoo's CNN.

Run: ``python bench/bench_robustness.py`` (the full run writes bench/results/robustness.json and prints a table)
or ``--quick`` (2 rounds per task, for development; writes nothing unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from federity.aggregation import Contribution, get_strategy, installed_strategies
from federity.aggregation.engine import aggregate_tensors
from federity.data import Dataset
from federity.demo import DEMO_PARAMS
from federity.demo_data import LABEL, split_breast_cancer
from federity.errors import FederityError
from federity.models import build_model, parse_model_args
from federity.training import TrainingParams
from federity.training.torch_trainer import TorchTrainer
from federity.weights import get_framework

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "robustness.json"

SITES = 15
ATTACKERS = 3  # 20% of the sites
SEED = 0
NOISE_FACTOR = 3.0
SCALE_FACTOR = 10.0
TARGET_POINTS = 3.0
ATTACKS = ("none", "sign-flip", "scale-10", "gaussian-noise", "label-flip")
ROBUST = ("fedmedian", "trimmed-mean", "krum", "multi-krum", "bulyan")
"""The strategies the issue's target is about (whichever of them are installed)."""
STRATEGY_PARAMS: dict[str, dict[str, Any]] = {
    "trimmed-mean": {"fraction": ATTACKERS / SITES},
    "krum": {"byzantine": ATTACKERS},
    "multi-krum": {"byzantine": ATTACKERS},
    "bulyan": {"byzantine": ATTACKERS},
}
"""Parameters suited to f = 3 attackers of 15 updates; every other strategy runs with its defaults, except where a
task sets its own (:attr:`Task.strategy_params`)."""

SERVER_LR_CNN = {spec: {"eta": 0.1} for spec in ("fedadam", "fedyogi", "fedadagrad")}
"""The server optimisers' step for the CNN: with their default (eta 0.01) FedAdam and FedYogi reach about 50% and
FedAdagrad stays at chance after 15 rounds; ten times that step trains it (results per task record what ran)."""

Tensors = dict[str, np.ndarray]


@dataclass
class Task:
    """One learning task: the zoo model, the sites' training parameters, their shards and the held-out set."""

    name: str
    description: str
    model_id: str
    model_args: dict[str, Any]
    params: TrainingParams
    rounds: int
    num_classes: int
    shards: list[Dataset]
    test: Dataset
    strategy_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Strategy parameters for this task that replace the benchmark's (:data:`STRATEGY_PARAMS`)."""


def _dataset(features: np.ndarray, labels: np.ndarray) -> Dataset:
    """Arrays as the trainer reads them (the contract's table holds only the labels: no contract runs here)."""
    return Dataset(features.astype(np.float32), labels.astype(np.int64), pd.DataFrame({LABEL: labels}), "memory")


def demo_task(rounds: int) -> Task:
    """The demo's task with 15 hospitals: breast-cancer shards with label skew 0.7 and Dirichlet(4) sizes, the
    zoo's logistic regression, the demo's training parameters (SGD, lr 0.05, 2 local epochs, batch 16)."""
    split = split_breast_cancer(SITES, seed=SEED)

    def arrays(frame: pd.DataFrame) -> Dataset:
        return _dataset(frame.drop(columns=[LABEL]).to_numpy(), frame[LABEL].to_numpy())

    return Task("demo", "breast cancer (federity.demo_data), non-IID label skew 0.7, Dirichlet(4) shard sizes",
                "logistic-regression", parse_model_args("logistic-regression", "torch",
                                                        [f"in_features={len(split.columns)}"]),
                TrainingParams(**DEMO_PARAMS), rounds, 2, [arrays(s) for s in split.shards], arrays(split.test))


def digits_task(rounds: int) -> Task:
    """scikit-learn's ``load_digits`` scaled to [0, 1] as (1, 8, 8) images; 20% held out at random, the rest
    shuffled and cut into 15 equal IID shards; the zoo's CNN; SGD lr 0.1, momentum 0.9, 5 local epochs, batch 16;
    the server optimisers at :data:`SERVER_LR_CNN`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0)[:, None]
    y = digits.target
    order = np.random.default_rng(SEED).permutation(len(y))
    held = round(0.2 * len(y))
    test, train = order[:held], order[held:]
    return Task("digits", "scikit-learn load_digits (8x8 grey, 10 classes), IID shards",
                "cnn", parse_model_args("cnn", "torch", ["in_channels=1", "num_classes=10"]),
                TrainingParams(lr=0.1, epochs=5, batch_size=16, seed=SEED, momentum=0.9), rounds, 10,
                [_dataset(x[s], y[s]) for s in np.array_split(train, SITES)], _dataset(x[test], y[test]),
                SERVER_LR_CNN)


class Federation:
    """The in-process federation of one task: the zoo model, the trainer and the torch adapter."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.adapter = get_framework("torch")
        self.trainer = TorchTrainer()
        self.adapter.seed(SEED)  # as `federity init --seed 0` does before building the genesis model
        self.model = build_model(task.model_id, "torch", task.model_args)
        self.genesis = self.adapter.get_tensors(self.model)
        self.flipped = [_dataset(s.features, task.num_classes - 1 - s.labels) for s in task.shards]

    def train(self, start: Tensors, data: Dataset) -> Tensors:
        """A site's local training from ``start`` (what ``federity train`` does, minus the commit)."""
        self.adapter.set_tensors(self.model, start)
        self.trainer.fit(self.model, data, self.task.params)
        return self.adapter.get_tensors(self.model)

    def accuracy(self, tensors: Tensors) -> float:
        """The model's accuracy on the held-out set."""
        self.adapter.set_tensors(self.model, tensors)
        return self.trainer.evaluate(self.model, self.task.test)["accuracy"]


def poisoned(attack: str, start: Tensors, trained: Tensors, rng: np.random.Generator) -> Tensors:
    """What an attacker sends instead of ``trained`` (its honest update from ``start``)."""
    out = {}
    for name, value in trained.items():
        if not np.issubdtype(value.dtype, np.floating):
            out[name] = value
            continue
        delta = value.astype(np.float64) - start[name]
        if attack == "sign-flip":
            delta = -delta
        elif attack == "scale-10":
            delta = SCALE_FACTOR * delta
        elif attack == "gaussian-noise":
            delta = rng.normal(0.0, NOISE_FACTOR * float(delta.std()), delta.shape)
        out[name] = (start[name] + delta).astype(value.dtype)
    return out


def run_cell(federation: Federation, spec: str, params: dict[str, Any], attack: str, attackers: list[int],
             claimed: int, work: Path) -> dict[str, Any]:
    """R rounds of one (strategy, attack) cell from the genesis model; accuracy after each round, or the error
    (a strategy refusing the round, a non-finite aggregate, diverged training) and the round it stopped at."""
    strategy = get_strategy(spec, params)
    task = federation.task
    model = federation.genesis
    state: Tensors = {}
    curve: list[float] = []
    for round_index in range(task.rounds):
        updates, contributions = [], []
        try:
            for site, shard in enumerate(task.shards):
                attacking = attack != "none" and site in attackers
                data = federation.flipped[site] if attacking and attack == "label-flip" else shard
                update = federation.train(model, data)
                if attacking:
                    update = poisoned(attack, model, update, np.random.default_rng([SEED, round_index, site]))
                updates.append(update)
                contributions.append(Contribution(claimed if attacking else shard.n_samples))
            model, state = aggregate_tensors(strategy, model, updates, [model] * len(updates), contributions, work,
                                             state or None)
        except FederityError as exc:
            return {"accuracy": None, "error": exc.message, "stopped_at_round": round_index + 1,
                    "accuracy_per_round": curve}
        curve.append(round(federation.accuracy(model), 4))
    return {"accuracy": curve[-1], "accuracy_per_round": curve}


def run_task(task: Task, strategies: dict[str, dict[str, Any]], attackers: list[int], work: Path,
             progress: Callable[[str], None]) -> dict[str, Any]:
    """Every (strategy, attack) cell of ``task``, with drops in points against clean FedAvg and the target."""
    start = time.perf_counter()
    federation = Federation(task)
    sizes = [s.n_samples for s in task.shards]
    claimed = int(np.median([n for i, n in enumerate(sizes) if i not in attackers]))
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    strategies = {spec: {**params, **task.strategy_params.get(spec, {})} for spec, params in strategies.items()}
    for spec, params in strategies.items():
        cells[spec] = {}
        for attack in ATTACKS:
            cell = run_cell(federation, spec, params, attack, attackers, claimed, work)
            cells[spec][attack] = cell
            progress(f"  {task.name:7} {spec:14} {attack:15} "
                     + (f"{cell['accuracy']:.4f}" if cell["accuracy"] is not None else f"error: {cell['error']}"))
            if attack == "none" and cell["accuracy"] is None and cell["stopped_at_round"] == 1:
                progress(f"  skipping {spec} on {task.name}: it refused the first clean round")
                break
    reference = cells.get("fedavg", {}).get("none", {}).get("accuracy")
    for row in cells.values():
        own = row.get("none", {}).get("accuracy")
        for cell in row.values():
            if cell["accuracy"] is not None:
                cell["drop_points_vs_clean_fedavg"] = _points(reference, cell["accuracy"])
                cell["drop_points_vs_own_clean"] = _points(own, cell["accuracy"])
    return {
        "description": task.description, "model": {"id": task.model_id, "args": task.model_args},
        "training_params": task.params.to_json(), "strategy_params": task.strategy_params, "rounds": task.rounds,
        "shard_sizes": sizes,
        "test_size": task.test.n_samples, "claimed_n_samples": claimed, "clean_fedavg_accuracy": reference,
        "cells": cells, "target": _target(cells, reference), "seconds": round(time.perf_counter() - start, 1),
    }


def _points(reference: float | None, accuracy: float) -> float | None:
    return None if reference is None else round(100 * (reference - accuracy), 2)


def _target(cells: dict[str, dict[str, dict[str, Any]]], reference: float | None) -> dict[str, Any]:
    """Per installed robust strategy: its worst attack, its accuracy there, and whether it stays within
    ``TARGET_POINTS`` of clean FedAvg's accuracy under every attack."""
    out: dict[str, Any] = {}
    for spec in (s for s in ROBUST if s in cells):
        attacked = {a: c for a, c in cells[spec].items() if a != "none"}
        if reference is None or len(attacked) < len(ATTACKS) - 1:
            out[spec] = {"meets_target": None, "reason": "not every attack ran"}
            continue
        worst = min(attacked, key=lambda a: -1.0 if attacked[a]["accuracy"] is None else attacked[a]["accuracy"])
        accuracy = attacked[worst]["accuracy"]
        out[spec] = {"worst_attack": worst, "worst_accuracy": accuracy,
                     "worst_drop_points_vs_clean_fedavg": None if accuracy is None else _points(reference, accuracy),
                     "meets_target": accuracy is not None and 100 * (reference - accuracy) <= TARGET_POINTS}
    return out


def usable_strategies(progress: Callable[[str], None]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Every installed strategy with its parameters from :data:`STRATEGY_PARAMS`; one refusing them is skipped,
    with the reason."""
    usable, skipped = {}, {}
    for spec in installed_strategies():
        params = STRATEGY_PARAMS.get(spec, {})
        try:
            usable[spec] = get_strategy(spec, params).parameters()
        except FederityError as exc:
            skipped[spec] = str(exc)
            progress(f"skipping strategy {spec}: {exc}")
    return usable, skipped


def table(name: str, result: dict[str, Any]) -> str:
    """One task's accuracies as a text table: accuracy in %, in brackets its difference in points from clean
    FedAvg's (negative: below it), and whether a robust strategy meets the target."""
    reference = result["clean_fedavg_accuracy"]
    header = f"{name}: held-out accuracy % after {result['rounds']} rounds"
    if reference is not None:
        header += f" (in brackets: points vs clean FedAvg, {100 * reference:.1f}%)"
    lines = [header, f"{'strategy':14}" + "".join(f"{a:>17}" for a in ATTACKS)]
    for spec, row in result["cells"].items():
        texts = []
        for attack in ATTACKS:
            cell = row.get(attack)
            if cell is None:
                texts.append("skipped")
            elif cell["accuracy"] is None:
                texts.append(f"error r{cell['stopped_at_round']}")
            else:
                drop = cell.get("drop_points_vs_clean_fedavg")
                texts.append(f"{100 * cell['accuracy']:.1f}" + (f" ({0.0 - drop:+.1f})" if drop is not None else ""))
        verdict = result["target"].get(spec, {}).get("meets_target")
        mark = "" if verdict is None else ("  within 3 pts" if verdict else "  misses 3 pts")
        lines.append(f"{spec:14}" + "".join(f"{t:>17}" for t in texts) + mark)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every task (``--quick``: 2 rounds each), write the results and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds per task; writes nothing unless --out")
    parser.add_argument("--out", type=Path, help=f"where to write the results (default {OUT.relative_to(ROOT)}, "
                                                 "not with --quick)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small models: one thread is as fast, and the machine is shared
    started = time.perf_counter()
    strategies, skipped = usable_strategies(print)
    attackers = sorted(int(i) for i in np.random.default_rng(SEED).choice(SITES, ATTACKERS, replace=False))
    tasks = [demo_task(2 if args.quick else 10), digits_task(2 if args.quick else 40)]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            results[task.name] = run_task(task, strategies, attackers, Path(tmp), lambda line: print(line, flush=True))
    report = {
        "experiment": "in-process simulation: the repository's trainer (TorchTrainer), zoo models, torch adapter "
                      "and streaming aggregation engine (aggregate_tensors); no git, DVC, signatures or Prefect",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch_threads": 1},
        "quick": args.quick,
        "sites": SITES, "attackers": attackers, "attacker_share": ATTACKERS / SITES, "seed": SEED,
        "attacks": {
            "none": "every site honest, true n_samples",
            "sign-flip": "attackers send -delta",
            "scale-10": f"attackers send {SCALE_FACTOR:g} * delta",
            "gaussian-noise": f"attackers send N(0, sigma^2), per tensor sigma = {NOISE_FACTOR:g} x std of their own "
                              "honest delta's coordinates",
            "label-flip": "attackers train on labels y -> C - 1 - y and send that update",
            "claimed_n_samples": "under every attack the attackers claim the median honest n_samples",
        },
        "target": f"robust strategies ({', '.join(ROBUST)}) within {TARGET_POINTS:g} points of clean FedAvg's "
                  "accuracy under every attack",
        "strategies": strategies, "skipped_strategies": skipped,
        "tasks": results, "seconds": round(time.perf_counter() - started, 1),
    }
    out = args.out or (None if args.quick else OUT)
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    for name, result in results.items():
        print(table(name, result), end="\n\n")
    print(f"{report['seconds']} s" + (f"; written to {out}" if out is not None else ""))
    return report


if __name__ == "__main__":
    main()
