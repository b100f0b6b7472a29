"""Benchmark: local training through Federity against a plain loop in the same framework, and what an 11M-parameter
update costs beyond training.

1. Throughput. For each zoo family in PyTorch and TensorFlow (Keras 3), on the same generated data and with the same
   batch size and epochs, in the same process: the training steps of Federity's trainer (``fit``; the one pass
   that scores the trained model for the update's metrics is timed apart, as ``scoring_seconds``) against a plain
   loop written directly in that framework (PyTorch: the textbook loop; Keras: ``model.compile`` and
   ``model.fit``). Samples per second, median of ``repeats`` runs of each, the two alternating, after one warm-up
   run each.
2. Update overhead. ``federity train`` and ``push`` of a ResNet-18 (11.2M float32 parameters) on a site's NPZ file
   of images, profiled: the time beyond the training itself, split into its parts.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from federity.data import Dataset
from federity.identity import Wallet
from federity.models import build_model
from federity.repo import Repository
from federity.training import TrainingParams, get_trainer
from federity.weights import get_framework, read_tensors

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "training.json"
PARAMS = TrainingParams(lr=0.05, epochs=3, batch_size=64, seed=0)


@dataclass(frozen=True)
class Case:
    """One family in the benchmark: its zoo id and arguments (per framework where they differ), one example's
    shape, how many samples (so a run takes about half a second or more), and what the data is: ``classes``
    (labelled), ``rows`` (unlabeled, for reconstruction and GANs), ``tokens`` (ids, 0 padding) or ``graph`` (one
    graph whose nodes are the samples, trained whole)."""

    model: str
    args: dict[str, dict[str, int]]
    shape: tuple[int, ...]
    samples: int
    data: str = "classes"

    def args_for(self, framework: str) -> dict[str, int] | None:
        """The arguments in ``framework``; ``None`` when the family has no model there."""
        return self.args[framework] if framework in self.args else self.args.get("*")


CASES = [
    Case("logistic-regression", {"*": {"in_features": 32, "num_classes": 4}}, (32,), 32768),
    Case("mlp", {"*": {"in_features": 32, "hidden": 256, "num_classes": 4}}, (32,), 32768),
    Case("cnn", {"*": {"in_channels": 1, "num_classes": 4}}, (1, 28, 28), 4096),
    Case("resnet", {"torch": {"in_channels": 1, "num_classes": 4, "depth": 18, "width": 16},
                    "tensorflow": {"in_channels": 1, "num_classes": 4, "depth": 50}}, (1, 32, 32), 128),
    Case("mobilenet", {"*": {"in_channels": 1, "num_classes": 4, "width_percent": 35}}, (1, 32, 32), 512),
    Case("efficientnet", {"torch": {"in_channels": 1, "num_classes": 4, "width_percent": 25, "depth_percent": 25},
                          "tensorflow": {"in_channels": 1, "num_classes": 4, "variant": 0}}, (1, 32, 32), 256),
    Case("lstm", {"*": {"input_size": 8, "hidden": 32, "num_classes": 4}}, (20, 8), 4096),
    Case("gru", {"*": {"input_size": 8, "hidden": 32, "num_classes": 4}}, (20, 8), 4096),
    Case("transformer-encoder", {"*": {"vocab_size": 64, "max_length": 32, "dim": 32, "layers": 2, "heads": 4,
                                       "num_classes": 4}}, (32,), 2048, "tokens"),
    Case("transformer-decoder", {"*": {"vocab_size": 64, "max_length": 32, "dim": 32, "layers": 2, "heads": 4}},
         (32,), 2048, "tokens"),
    Case("autoencoder", {"*": {"in_features": 32, "hidden": 64, "code": 8}}, (32,), 32768, "rows"),
    Case("gan", {"*": {"in_features": 32, "noise": 8, "hidden": 64}}, (32,), 16384, "rows"),
    Case("gcn", {"torch": {"in_features": 32, "hidden": 64, "num_classes": 4}}, (32,), 100000, "graph"),
]
OBJECTIVE = {"transformer-decoder": "next_token", "autoencoder": "reconstruction", "gan": "adversarial"}


def _data(case: Case) -> Dataset:
    rng = np.random.default_rng(0)
    if case.data == "tokens":
        features = rng.integers(1, 64, (case.samples, *case.shape)).astype(np.float32)
        features[:, case.shape[0] // 2 + rng.integers(0, case.shape[0] // 2):] = 0  # padded tails
    else:
        features = rng.normal(size=(case.samples, *case.shape)).astype(np.float32)
    labels = (features.reshape(case.samples, -1)[:, :4].argmax(axis=1)).astype(np.int64)
    edges = rng.integers(0, case.samples, (2, 10 * case.samples)) if case.data == "graph" else None
    return Dataset(features, labels, pd.DataFrame({"label": labels}), "generated", edges=edges)


def _plain_torch(model: Any, data: Dataset, params: TrainingParams, objective: str) -> None:
    """The textbook PyTorch loop for ``objective``."""
    import torch

    functional = torch.nn.functional
    x, y = torch.from_numpy(data.features), torch.from_numpy(data.labels)
    if data.edges is not None:  # a graph: one full-graph step an epoch
        edges, optimizer = torch.from_numpy(data.edges), torch.optim.SGD(model.parameters(), lr=params.lr)
        model.train()
        for _ in range(params.epochs):
            optimizer.zero_grad()
            functional.cross_entropy(model(x, edges), y).backward()
            optimizer.step()
        return
    generator = torch.Generator().manual_seed(params.seed)
    gan = objective == "adversarial"
    optimizers = ([torch.optim.SGD(model.discriminator.parameters(), lr=params.lr),
                   torch.optim.SGD(model.generator.parameters(), lr=params.lr)] if gan
                  else [torch.optim.SGD(model.parameters(), lr=params.lr)])
    model.train()
    for _ in range(params.epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), params.batch_size):
            batch = order[start:start + params.batch_size]
            if gan:
                noise = torch.randn(len(batch), model.noise, generator=generator)
                optimizers[0].zero_grad()
                real, fake = model.discriminator(x[batch]), model.discriminator(model.generator(noise).detach())
                (functional.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                 + functional.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))).backward()
                optimizers[0].step()
                optimizers[1].zero_grad()
                fooled = model.discriminator(model.generator(noise))
                functional.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled)).backward()
                optimizers[1].step()
                continue
            optimizers[0].zero_grad()
            out = model(x[batch])
            if objective == "reconstruction":
                loss = functional.mse_loss(out, x[batch])
            elif objective == "next_token":
                loss = functional.cross_entropy(out[:, :-1].reshape(-1, out.shape[-1]),
                                                x[batch][:, 1:].long().reshape(-1), ignore_index=0)
            else:
                loss = functional.cross_entropy(out, y[batch])
            loss.backward()
            optimizers[0].step()


def _plain_keras(model: Any, data: Dataset, params: TrainingParams, objective: str) -> None:
    """Keras' own way for ``objective``: ``compile`` and ``fit``; for a GAN, which ``fit`` does not train, the
    custom loop of Keras' GAN example."""
    import keras
    import tensorflow as tf

    x = data.features.transpose(0, 2, 3, 1) if data.features.ndim == 4 else data.features
    if objective == "adversarial":
        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        d_opt, g_opt = keras.optimizers.SGD(params.lr), keras.optimizers.SGD(params.lr)

        @tf.function
        def step(real: Any, noise: Any) -> None:
            with tf.GradientTape() as tape:
                fake = model.generator(noise)
                d_loss = bce(tf.ones((tf.shape(real)[0], 1)), model.discriminator(real)) + bce(
                    tf.zeros((tf.shape(real)[0], 1)), model.discriminator(fake))
            d_opt.apply_gradients(zip(tape.gradient(d_loss, model.discriminator.trainable_variables),
                                      model.discriminator.trainable_variables, strict=True))
            with tf.GradientTape() as tape:
                g_loss = bce(tf.ones((tf.shape(real)[0], 1)), model.discriminator(model.generator(noise)))
            g_opt.apply_gradients(zip(tape.gradient(g_loss, model.generator.trainable_variables),
                                      model.generator.trainable_variables, strict=True))

        dataset = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=params.seed).batch(params.batch_size)
        for _ in range(params.epochs):
            for real in dataset:
                step(real, tf.random.normal((tf.shape(real)[0], model.noise)))
        return
    if objective == "reconstruction":
        targets, loss = x, keras.losses.MeanSquaredError()
    elif objective == "next_token":  # the next id at each position; the last position's target is padding
        targets = np.pad(x[:, 1:], ((0, 0), (0, 1)))
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    else:
        targets, loss = data.labels, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=params.lr), loss=loss)
    model.fit(x, targets, batch_size=params.batch_size, epochs=params.epochs, shuffle=True, verbose=0)


PLAIN: dict[str, Callable[[Any, Dataset, TrainingParams, str], None]] = {"torch": _plain_torch,
                                                                         "tensorflow": _plain_keras}


def _rates(runs: tuple[Callable[[Any], float], Callable[[Any], float]], framework: str, case: Case,
           repeats: int) -> tuple[float, float]:
    """Training samples per second of each of ``runs`` (Federity's, the plain loop's): ``run(model)`` returns the
    seconds of its run not spent training (excluded). After one warm-up run each (tracing, allocator), the two
    alternate, ``repeats`` times, on fresh models, so that a change in the machine's speed meets both; the median
    of each."""
    seconds: tuple[list[float], list[float]] = ([], [])
    for attempt in range(repeats + 1):
        for run, taken in zip(runs, seconds, strict=True):
            get_framework(framework).seed(attempt)
            model = build_model(case.model, framework, case.args_for(framework))
            start = time.perf_counter()
            excluded = run(model)
            if attempt:
                taken.append(time.perf_counter() - start - excluded)
    return tuple(case.samples * PARAMS.epochs / statistics.median(taken) for taken in seconds)  # type: ignore


def _scoring_timed(trainer: Any) -> tuple[Any, list[float]]:
    """``trainer`` whose ``evaluate`` (the metrics ``fit`` reports after training) is timed into the list it
    returns with it: the steps' throughput is compared with the plain loop, which scores nothing."""
    scoring: list[float] = []

    class Timed(type(trainer)):  # type: ignore[misc]
        def evaluate(self, model: Any, data: Dataset, objective: str = "cross_entropy") -> dict[str, float]:
            start = time.perf_counter()
            metrics = super().evaluate(model, data, objective)
            scoring.append(time.perf_counter() - start)
            return metrics

    return Timed(), scoring


def throughput(repeats: int = 5) -> list[dict[str, Any]]:
    """Federity's trainer against the plain loop, per framework and zoo family."""
    rows = []
    for framework in ("torch", "tensorflow"):
        trainer, scoring = _scoring_timed(get_trainer(framework))
        for case in (case for case in CASES if case.args_for(framework) is not None):
            data, objective = _data(case), OBJECTIVE.get(case.model, "cross_entropy")

            def steps(model: Any, d: Dataset = data, goal: str = objective, timed: list[float] = scoring,
                      fit: Any = trainer.fit) -> float:
                timed.clear()
                fit(model, d, PARAMS, goal)
                return sum(timed)

            def plain(model: Any, d: Dataset = data, goal: str = objective, loop: Any = PLAIN[framework]) -> float:
                loop(model, d, PARAMS, goal)
                return 0.0

            federity_rate, plain_rate = _rates((steps, plain), framework, case, repeats)
            rows.append({"framework": framework, "model": case.model, "objective": objective,
                         "samples": case.samples, "federity_samples_per_s": round(federity_rate, 1),
                         "plain_samples_per_s": round(plain_rate, 1), "ratio": round(federity_rate / plain_rate, 3),
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
    """Two ResNet-18 updates (11.2M float32 parameters; 1-channel 32x32 images) trained and pushed by one
    process, as an agent does: the first pays for the imports (great-expectations above all), the second is the
    steady state."""
    owner = Wallet.create(work / "owner.json")
    repo, _ = Repository.init(work / "repo", owner, name="big", framework="torch", model="resnet",
                              model_args=["in_channels=1", "num_classes=10", "depth=18", "width=64"],
                              remote=str(work / "remote.git"), params={"lr": 0.01, "epochs": 1, "batch_size": 32})
    rng = np.random.default_rng(0)
    np.savez(work / "site.npz", features=rng.random((64, 1, 32, 32)).astype(np.float32),
             labels=rng.integers(0, 10, 64))
    first = _profiled_update(repo, owner, work / "site.npz", "first")
    repo.checkout("main")
    second = _profiled_update(repo, owner, work / "site.npz", "second")
    tensors = read_tensors(repo.store.read(repo.head()), "weights")
    return {"model": "resnet depth 18 width 64 (PyTorch)", "parameters": int(sum(t.size for t in tensors.values())),
            "weights_bytes": len(repo.store.read(repo.head())), "first_update": first, "second_update": second,
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
