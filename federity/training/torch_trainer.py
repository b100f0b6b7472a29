"""PyTorch trainer: mini-batch SGD or Adam on cross-entropy, deterministic for a given seed."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from federity.data import Dataset
from federity.errors import DataError, ProofError
from federity.training import TrainingParams


def _tensors(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(data.features, dtype=torch.float32), torch.tensor(data.labels, dtype=torch.long)


class TorchTrainer:
    """Trains a ``torch.nn.Module`` whose output is class scores."""

    name = "torch"
    version = 1

    def fit(self, model: nn.Module, data: Dataset, params: TrainingParams) -> dict[str, float]:
        """Train ``model`` in place for ``params.epochs`` epochs; return loss and accuracy on ``data`` after."""
        features, labels = _tensors(data)
        generator = torch.Generator().manual_seed(params.seed)
        if params.optimizer == "adam":
            optimizer: torch.optim.Optimizer = torch.optim.Adam(
                model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=params.lr, momentum=params.momentum,
                                        weight_decay=params.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(params.epochs):
            order = torch.randperm(len(labels), generator=generator)
            for start in range(0, len(labels), params.batch_size):
                batch = order[start:start + params.batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(features[batch]), labels[batch])
                if not torch.isfinite(loss):
                    raise DataError("training diverged: the loss became infinite or NaN",
                                    "lower lr in params.yaml, or check that the features are scaled")
                loss.backward()
                optimizer.step()
        return self.evaluate(model, data)

    def head_features(self, model: nn.Module, data: Dataset) -> tuple[str, str, np.ndarray]:
        """The names of the last ``Linear`` layer's weight and bias, and ``data`` as that layer sees it: passed
        through every layer before it, frozen (evaluation mode, no gradients)."""
        if not (isinstance(model, nn.Sequential) and isinstance(model[-1], nn.Linear) and model[-1].bias is not None):
            raise ProofError("proofs of training need a model that is an nn.Sequential ending in a Linear layer "
                             "with a bias (every zoo model is)", "use a zoo model, or build yours that way")
        features, _ = _tensors(data)
        body = model[:-1].eval()
        with torch.no_grad():
            seen = body(features).reshape(len(features), -1).numpy().astype(np.float64)
        index = len(model) - 1
        return f"{index}.weight", f"{index}.bias", seen

    def evaluate(self, model: nn.Module, data: Dataset) -> dict[str, float]:
        """Mean cross-entropy and accuracy of ``model`` on ``data``."""
        features, labels = _tensors(data)
        model.eval()
        with torch.no_grad():
            scores = model(features)
            loss = float(nn.functional.cross_entropy(scores, labels))
            accuracy = float((scores.argmax(dim=1) == labels).float().mean())
        return {"loss": loss if math.isfinite(loss) else float("nan"), "accuracy": accuracy}
