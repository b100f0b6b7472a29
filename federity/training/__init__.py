"""Local training at a contributor's site, and evaluation, behind one interface per framework.

A trainer is a small registered plugin (as the weights adapters are): ``fit`` trains a model in place on a
:class:`~federity.data.Dataset` with the repository's ``params.yaml`` and returns local metrics; ``evaluate``
scores a model. Trainers are held by a :class:`~federity.plugins.Registry` (entry-point group
``federity.trainers``), one per framework, registered under the framework's name. The TensorFlow trainer plugs
in by adding one registry entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from federity.errors import ConfigError
from federity.plugins import Registry

if TYPE_CHECKING:
    from federity.config import RepoConfig
    from federity.data import Dataset



@dataclass(frozen=True)
class TrainingParams:
    """Local training hyper-parameters, read from ``params.yaml``."""

    lr: float = 0.1
    epochs: int = 5
    batch_size: int = 32
    seed: int = 0
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "params.yaml") -> TrainingParams:
        """Validate and convert; an unknown key or a bad value names the key."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source} has unknown training parameter(s) {', '.join(unknown)}",
                              f"use only: {', '.join(sorted(known))}")
        values = {key: data[key] for key in known if key in data}
        params = cls(**values)
        for name in ("lr", "epochs", "batch_size"):
            value = getattr(params, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{source}: {name} must be a positive number, not {value!r}", f"fix {name}")
        if params.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"{source}: optimizer {params.optimizer!r} is unknown", "use sgd or adam")
        return params

    def to_json(self) -> dict[str, Any]:
        """The parameters as a plain mapping (for update records and MLflow params)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Trainer(Protocol):
    """Trains and evaluates a framework's model on a local dataset."""

    name: str
    version: int

    def fit(self, model: Any, data: Dataset, params: TrainingParams) -> dict[str, float]:
        """Train ``model`` in place; return the local metrics after training (``loss``, ``accuracy``)."""
        ...

    def evaluate(self, model: Any, data: Dataset) -> dict[str, float]:
        """``loss`` and ``accuracy`` of ``model`` on ``data``."""
        ...

    def head_features(self, model: Any, data: Dataset) -> tuple[str, str, np.ndarray]:
        """The head's weight and bias tensor names, and ``data`` as the head sees it (through the frozen body)."""
        ...


TRAINERS: Registry[Trainer] = Registry("trainer", "federity.trainers", {
    "torch": "federity.training.torch_trainer:TorchTrainer",
})


def get_trainer(framework: str) -> Trainer:
    """The trainer registered for ``framework``; an unknown framework lists the installed trainers."""
    return TRAINERS.create(framework)


@dataclass
class TrainResult:
    """What local training produced: new weights, and what may leave the site about it."""

    tensors: dict[str, np.ndarray]
    n_samples: int
    metrics: dict[str, float]


def build_with_tensors(config: RepoConfig, root: Path, tensors: dict[str, np.ndarray]) -> Any:
    """The repository's model with ``tensors`` loaded into it."""
    from federity.models import build_model
    from federity.weights import get_framework

    adapter = get_framework(config.framework)
    model = build_model(config.model["id"], config.framework, config.model["args"], root)
    adapter.set_tensors(model, tensors)
    return model


def train_locally(config: RepoConfig, root: Path, base: dict[str, np.ndarray], data: Dataset,
                  params: TrainingParams) -> TrainResult:
    """Train the repository's model, starting from ``base``, on ``data``."""
    from federity.weights import get_framework

    model = build_with_tensors(config, root, base)
    metrics = get_trainer(config.framework).fit(model, data, params)
    return TrainResult(get_framework(config.framework).get_tensors(model), data.n_samples, metrics)


def evaluate(config: RepoConfig, root: Path, tensors: dict[str, np.ndarray], data: Dataset) -> dict[str, float]:
    """Loss and accuracy of the model holding ``tensors`` on ``data``."""
    return get_trainer(config.framework).evaluate(build_with_tensors(config, root, tensors), data)
