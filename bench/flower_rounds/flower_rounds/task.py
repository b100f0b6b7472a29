"""The demo's model and local training in numpy, as Federity's torch trainer runs them for the demo.

The model is ``torch.nn.Sequential(nn.Linear(30, 2))`` (federity/models/torch_zoo.py, ``logistic-regression``):
class scores ``x @ weight.T + bias``, in float32. Local training (federity/training/torch_trainer.py with the demo's
DEMO_PARAMS) is plain mini-batch SGD (no momentum, no weight decay) on the mean cross-entropy of each batch, the
examples visited in a fresh random order each epoch, the last batch of an epoch possibly smaller. Evaluation is the
mean cross-entropy and the share of examples whose highest score is their label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LABEL = "label"
CLASSES = 2


def load_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A shard as federity/demo_data.py writes it (a header, the feature columns and ``label``): float32 features
    and int64 labels."""
    path = Path(path)
    with path.open() as f:
        header = f.readline().strip().split(",")
    if LABEL not in header:
        raise ValueError(f"{path} has no {LABEL!r} column (columns: {header[:5]}...)")
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    if table.shape[0] == 0:
        raise ValueError(f"{path} has no rows")
    column = header.index(LABEL)
    features = np.delete(table, column, axis=1).astype(np.float32)
    return features, table[:, column].astype(np.int64)


def initial_weights(in_features: int, seed: int) -> list[np.ndarray]:
    """``[weight (2, in_features), bias (2,)]`` drawn as torch initialises an ``nn.Linear`` (uniform on
    ``±1/sqrt(in_features)``), from numpy's generator: only when the driver gives no genesis model."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(in_features)
    return [rng.uniform(-bound, bound, (CLASSES, in_features)).astype(np.float32),
            rng.uniform(-bound, bound, CLASSES).astype(np.float32)]


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def evaluate(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean cross-entropy and accuracy of the model on ``(x, y)``."""
    scores = x @ weight.T + bias
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-log_probs[np.arange(len(y)), y].mean())
    return {"loss": loss, "accuracy": float((scores.argmax(axis=1) == y).mean())}


def train(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray, *, lr: float, epochs: int,
          batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Plain mini-batch SGD on the mean cross-entropy of each batch; new arrays, the inputs untouched."""
    weight, bias = weight.astype(np.float32, copy=True), bias.astype(np.float32, copy=True)
    step = np.float32(lr)
    onehot = np.eye(CLASSES, dtype=np.float32)[y]
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            batch = order[start:start + batch_size]
            xb = x[batch]
            grad_scores = (_softmax(xb @ weight.T + bias) - onehot[batch]) / np.float32(len(batch))
            weight -= step * (grad_scores.T @ xb)
            bias -= step * grad_scores.sum(axis=0)
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise FloatingPointError("training diverged: the weights became infinite or NaN")
    return weight, bias
