"""Benchmark: local training through Federity against a plain loop in the same framework, and what an 11M-parameter
update costs beyond training.

1. Throughput. For each zoo model in PyTorch and TensorFlow (Keras 3), on the same generated data and with the same
   batch size and epochs, in the same process: the training steps of Federity's trainer (``fit``; the one pass
   that scores the trained model for the update's metrics is timed apart, as ``scoring_seconds``) against a plain
   loop written directly in that framework (PyTorch: the textbook loop; Keras: ``model.compile`` and
   ``model.fit``). Samples per second, median of ``repeats`` runs after one warm-up run each.
2. Update overhead. ``federity train`` and ``push`` of an MLP with about 11M float32 parameters (a ResNet-18's size)
   on a site's NPZ file, profiled: the time beyond the training itself, split into its parts.

Run with `make bench`; results go to bench/results/training.json.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from federity.data import Dataset
from federity.identity import Wallet
from federity.models import build_model
from federity.repo import Repository
from federity.training import TrainingParams, get_trainer
from federity.weights import get_framework

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "training.json"
PARAMS = TrainingParams(lr=0.05, epochs=3, batch_size=64, seed=0)
MODELS = {  # id → arguments, one example's shape, samples (each run takes about half a second or more)
    "logistic-regression": ({"in_features": 32, "num_classes": 4}, (32,), 32768),
    "mlp": ({"in_features": 32, "hidden": 256, "num_classes": 4}, (32,), 32768),
    "cnn": ({"in_channels": 1, "num_classes": 4}, (1, 28, 28), 4096),
}


def _data(shape: tuple[int, ...], samples: int) -> Dataset:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(samples, *shape)).astype(np.float32)
    labels = (features.reshape(samples, -1)[:, :4].argmax(axis=1)).astype(np.int64)
    return Dataset(features, labels, pd.DataFrame({"label": labels}), "generated")


def _plain_torch(model: Any, data: Dataset, params: TrainingParams) -> None:
    import torch

    x, y = torch.from_numpy(data.features), torch.from_numpy(data.labels)
    optimizer = torch.optim.SGD(model.parameters(), lr=params.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(params.seed)
    model.train()
    for _ in range(params.epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), params.batch_size):
            batch = order[start:start + params.batch_size]
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()


def _plain_keras(model: Any, data: Dataset, params: TrainingParams) -> None:
    import keras

    features = data.features.transpose(0, 2, 3, 1) if data.features.ndim == 4 else data.features
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=params.lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(features, data.labels, batch_size=params.batch_size, epochs=params.epochs, shuffle=True, verbose=0)


PLAIN: dict[str, Callable[[Any, Dataset, TrainingParams], None]] = {"torch": _plain_torch,
                                                                    "tensorflow": _plain_keras}


def _samples_per_second(run: Callable[[Any], float], framework: str, model_id: str, repeats: int) -> float:
    """Training samples per second of ``run(model)``, which returns the seconds of its run not spent training
    (excluded); the median of ``repeats`` runs after one warm-up run (tracing, allocator)."""
    args, _, samples = MODELS[model_id]
    seconds = []
    for attempt in range(repeats + 1):
        get_framework(framework).seed(attempt)
        model = build_model(model_id, framework, args)
        start = time.perf_counter()
        excluded = run(model)
        if attempt:
            seconds.append(time.perf_counter() - start - excluded)
    return samples * PARAMS.epochs / statistics.median(seconds)


def _scoring_timed(trainer: Any) -> tuple[Any, list[float]]:
    """``trainer`` whose ``evaluate`` (the metrics ``fit`` reports after training) is timed into the list it
    returns with it: the steps' throughput is compared with the plain loop, which scores nothing."""
    scoring: list[float] = []

    class Timed(type(trainer)):  # type: ignore[misc]
        def evaluate(self, model: Any, data: Dataset) -> dict[str, float]:
            start = time.perf_counter()
            metrics = super().evaluate(model, data)
            scoring.append(time.perf_counter() - start)
            return metrics

    return Timed(), scoring


def throughput(repeats: int = 5) -> list[dict[str, Any]]:
    """Federity's trainer against the plain loop, per framework and zoo model."""
    rows = []
    for framework in ("torch", "tensorflow"):
        trainer, scoring = _scoring_timed(get_trainer(framework))
        for model_id, (_, shape, samples) in MODELS.items():
            data = _data(shape, samples)

            def steps(model: Any, d: Dataset = data, timed: list[float] = scoring, fit: Any = trainer.fit) -> float:
                timed.clear()
                fit(model, d, PARAMS)
                return sum(timed)

            def plain(model: Any, d: Dataset = data, loop: Any = PLAIN[framework]) -> float:
                loop(model, d, PARAMS)
                return 0.0

            federity_rate = _samples_per_second(steps, framework, model_id, repeats)
            plain_rate = _samples_per_second(plain, framework, model_id, repeats)
            rows.append({"framework": framework, "model": model_id, "samples": samples,
                         "federity_samples_per_s": round(federity_rate), "plain_samples_per_s": round(plain_rate),
                         "ratio": round(federity_rate / plain_rate, 3),
                         "scoring_seconds": round(statistics.median(scoring), 3) if scoring else None})
            print(rows[-1], flush=True)
    return rows


PHASES = {  # profiled function (file suffix, name) → the part of the overhead it is
    "load the dataset": ("federity/data.py", "load_dataset"),
    "data contract (great-expectations)": ("federity/contract.py", "require_valid"),
    "read the base weights": ("federity/weights/files.py", "read_tensors"),
    "build the model": ("federity/training/__init__.py", "build_with_tensors"),
    "training (fit)": ("federity/training/torch_trainer.py", "fit"),
    "memory estimate": ("federity/training/torch_trainer.py", "memory"),
    "safetensors serialisation": ("federity/weights/files.py", "tensors_to_bytes"),
    "DVC checkout of the base's model/": ("federity/repo/storage.py", "checkout"),
    "DVC add (md5, cache)": ("federity/repo/storage.py", "track"),
    "signed commit (sha256, ed25519, git)": ("federity/repo/commits.py", "create_commit"),
    "push (git, DVC storage, notes)": ("federity/repo/sync.py", "push"),
}


def _profiled_update(repo: Repository, wallet: Wallet, data: Path, nonce: str) -> dict[str, Any]:
    """``train`` and ``push`` of one update under cProfile: wall time, the time beyond ``fit``, and the parts."""
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    repo.train(wallet, data, nonce=nonce)
    repo.push()
    profile.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    phases = {phase: round(sum(value[3] for (file, _, name), value in stats.items()
                               if file.endswith(suffix) and name == function), 3)
              for phase, (suffix, function) in PHASES.items()}
    return {"wall_seconds": round(total, 3), "overhead_seconds": round(total - phases["training (fit)"], 3),
            "phases_seconds": phases}


def update_overhead(work: Path) -> dict[str, Any]:
    """Two ≈11M-parameter updates trained and pushed by one process, as an agent does: the first pays for the
    imports (great-expectations above all), the second is the steady state."""
    owner = Wallet.create(work / "owner.json")
    repo, _ = Repository.init(work / "repo", owner, name="big", framework="torch", model="mlp",
                              model_args=["in_features=1024", "hidden=10700", "num_classes=10"],
                              remote=str(work / "remote.git"), params={"lr": 0.01, "epochs": 1, "batch_size": 64})
    rng = np.random.default_rng(0)
    np.savez(work / "site.npz", features=rng.normal(size=(256, 1024)).astype(np.float32),
             labels=rng.integers(0, 10, 256))
    first = _profiled_update(repo, owner, work / "site.npz", "first")
    repo.checkout("main")
    second = _profiled_update(repo, owner, work / "site.npz", "second")
    return {"parameters": 1024 * 10700 + 10700 + 10700 * 10 + 10,
            "weights_bytes": repo.weights_path.stat().st_size, "first_update": first, "second_update": second,
            "note": "cumulative times under cProfile (which slows Python code); overhead = wall time of train "
                    "and push minus the time inside fit"}


def main() -> None:
    rows = throughput()
    with tempfile.TemporaryDirectory() as tmp:
        overhead = update_overhead(Path(tmp))
    print(overhead)
    RESULTS.write_text(json.dumps({
        "machine": "2 cores", "params": PARAMS.to_json(), "throughput": rows,
        "target": "Federity's samples/s within 10% of the plain loop's (ratio >= 0.9)",
        "update_overhead": overhead, "overhead_target_seconds": 3.0,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
