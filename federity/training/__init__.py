"""Local training at a contributor's site, and evaluation, behind one interface per framework.

A trainer is a small registered plugin (as the weights adapters are): ``fit`` trains a model in place on a
:class:`~federity.data.Dataset` with the repository's ``params.yaml`` and returns local metrics; ``evaluate``
scores a model. Trainers are held by a :class:`~federity.plugins.Registry` (entry-point group
``federity.trainers``), one per framework, registered under the framework's name: PyTorch's and TensorFlow's
(Keras 3) are built in, and a third framework plugs in by declaring its trainer under that group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from federity.errors import ConfigError
from federity.plugins import Registry

if TYPE_CHECKING:
    from federity.config import RepoConfig
    from federity.data import Dataset
    from federity.proofs.policy import ProvedHead
    from federity.training.memory import MemoryEstimate

def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return float(value)


_Finite = Annotated[float, AfterValidator(_finite)]


class _ParamsSchema(BaseModel):
    """The schema of ``params.yaml``: exact types (``batch_size: 0.5`` or ``seed: abc`` are refused), bounds."""

    model_config = ConfigDict(strict=True, extra="forbid")
    lr: Annotated[_Finite, Field(gt=0, le=1e6)] = 0.1
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 5
    batch_size: Annotated[int, Field(ge=1, le=2**24)] = 32
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: Annotated[_Finite, Field(ge=0, lt=1)] = 0.0
    weight_decay: Annotated[_Finite, Field(ge=0, le=1e6)] = 0.0
    mu: Annotated[_Finite, Field(ge=0, le=1e6)] = 0.0


_PARAM_HINTS = {
    "lr": "lr is a positive finite number, e.g. lr: 0.1",
    "epochs": "epochs is a positive integer, e.g. epochs: 5",
    "batch_size": "batch_size is a positive integer, e.g. batch_size: 32",
    "seed": "seed is a non-negative integer, e.g. seed: 0",
    "optimizer": "use optimizer: sgd or optimizer: adam",
    "momentum": "momentum is a number in [0, 1), e.g. momentum: 0.9",
    "weight_decay": "weight_decay is a non-negative number, e.g. weight_decay: 0.0001",
    "mu": "mu (FedProx's proximal weight) is a non-negative finite number, at most 1e6; 0 turns it off, "
          "e.g. mu: 0.01",
}

@dataclass(frozen=True)
class TrainingParams:
    """Local training hyper-parameters, read from ``params.yaml``.

    ``mu`` is FedProx's proximal weight (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys
    2020): above 0, local training adds ``(mu / 2) * ||w - w_start||^2`` to the loss, pulling the site's weights
    towards the global model it started from; 0 (the default) is plain local training.
    """

    lr: float = 0.1
    epochs: int = 5
    batch_size: int = 32
    seed: int = 0
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    mu: float = 0.0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "params.yaml") -> TrainingParams:
        """Validate and convert (``data`` is hostile: ``params.yaml`` of someone else's commit); an unknown key or
        a bad value is a :class:`ConfigError` naming ``source`` and the key."""
        from pydantic import ValidationError

        from federity.config import validation_problem

        if not isinstance(data, Mapping):
            raise ConfigError(f"{source} is not a mapping", "write params.yaml as `name: value` lines")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(repr(key)[:60] for key in data if key not in known)
        if unknown:
            raise ConfigError(f"{source} has unknown training parameter(s) {', '.join(unknown[:10])}",
                              f"use only: {', '.join(sorted(known))}")
        try:
            parsed = _ParamsSchema.model_validate(dict(data))
        except ValidationError as exc:
            key = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else ""
            raise ConfigError(validation_problem(exc, source), _PARAM_HINTS.get(key, f"fix {source}")) from None
        return cls(**parsed.model_dump())

    @classmethod
    def from_yaml(cls, raw: bytes | str | None, source: str = "params.yaml",
                  overrides: Mapping[str, Any] | None = None) -> TrainingParams:
        """Parse ``params.yaml`` (its bytes at a commit; ``None`` or empty: the defaults) with the bounded YAML
        reader, apply ``overrides`` (e.g. ``--epochs``), and validate (:meth:`from_mapping`). Every problem is a
        :class:`ConfigError` naming ``source``."""
        from federity.config import load_yaml

        hint = "fix params.yaml on main (`name: value` lines, e.g. `lr: 0.1`)"
        data = load_yaml(raw, source, hint) if raw else None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source} is not a mapping", hint)
        return cls.from_mapping({**data, **(overrides or {})}, source)

    def to_json(self) -> dict[str, Any]:
        """The parameters as a plain mapping (for update records and MLflow params)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


EVALUATION_BATCH = 1024
"""Samples a trainer scores at a time in ``evaluate``."""


class Trainer(Protocol):
    """Trains and evaluates a framework's model on a local dataset."""

    name: str
    version: int

    def fit(self, model: Any, data: Dataset, params: TrainingParams, objective: str = "cross_entropy"
            ) -> dict[str, float]:
        """Train ``model`` in place on ``objective`` (:data:`~federity.config.Objective`); return the local
        metrics after training (:meth:`evaluate`'s)."""
        ...

    def evaluate(self, model: Any, data: Dataset, objective: str = "cross_entropy") -> dict[str, float]:
        """``loss`` of ``model`` on ``data`` under ``objective``, and ``accuracy`` but for ``reconstruction``."""
        ...

    def memory(self, model: Any, data: Dataset, params: TrainingParams) -> MemoryEstimate:
        """Local training's peak memory with ``params``, estimated from the model and one sample of ``data``
        (:func:`federity.training.memory.estimate`)."""
        ...

    def head(self, model: Any) -> ProvedHead:
        """The layer proofs of training prove (the model's last, linear layer): its tensor names and layout."""
        ...

    def head_features(self, model: Any, data: Dataset) -> np.ndarray:
        """``data`` as the head sees it: through every layer before it, frozen, one row per sample."""
        ...


TRAINERS: Registry[Trainer] = Registry("trainer", "federity.trainers", {
    "torch": "federity.training.torch_trainer:TorchTrainer",
    "tensorflow": "federity.training.keras_trainer:KerasTrainer",
})


def require_finite_loss(loss: float) -> None:
    """Stop training whose loss became infinite or NaN. Trainers check the last step of each epoch (a check a
    step would cost tiny models a tenth of their speed); a NaN leaves NaN weights behind it, and the trained
    weights are checked to be finite before anything is committed."""
    if not math.isfinite(loss):
        from federity.errors import DataError

        raise DataError("training diverged: the loss became infinite or NaN",
                        "lower lr in params.yaml, or check that the features are scaled")


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
    """Train the repository's model, starting from ``base``, on ``data``; refused before training when its memory
    estimate exceeds what the machine has available."""
    from federity.training.memory import require_fits
    from federity.weights import get_framework

    model = build_with_tensors(config, root, base)
    trainer = get_trainer(config.framework)
    require_fits(_fitting_memory(trainer, model, data, params))  # before any step: too large fails now
    metrics = trainer.fit(model, data, params, objective_of(config))
    return TrainResult(get_framework(config.framework).get_tensors(model), data.n_samples, metrics)


def _fitting_memory(trainer: Trainer, model: Any, data: Dataset, params: TrainingParams) -> MemoryEstimate:
    """The memory estimate, which runs the model on one example: an example of another modality or shape than the
    model takes fails there, and is reported by its shape (never a value)."""
    from federity.errors import DataError, FederityError

    failure = None
    try:
        return trainer.memory(model, data, params)
    except FederityError:
        raise
    except Exception as exc:  # the framework's own error on the site's data: its text may quote values
        failure = type(exc).__name__
    raise DataError(f"the dataset's examples, of shape {tuple(data.features.shape[1:])}, do not fit the model "
                    f"({failure} on the first example)", "give the model data of the modality and shape it takes "
                    "(see `federity models`: tables, images channel-first, sequences, or text)")


def evaluate(config: RepoConfig, root: Path, tensors: dict[str, np.ndarray], data: Dataset) -> dict[str, float]:
    """The task's metrics (loss, and accuracy for a classifier or language model) of the model holding
    ``tensors`` on ``data``."""
    return get_trainer(config.framework).evaluate(build_with_tensors(config, root, tensors), data,
                                                  objective_of(config))


def objective_of(config: RepoConfig) -> str:
    """The objective ``config``'s task trains (:data:`~federity.config.Objective`)."""
    return str(config.task.get("loss", "cross_entropy"))
