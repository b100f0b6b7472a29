"""Aggregation strategies: one small class per module, the maths in :mod:`federity.aggregation.aggregate`.

A strategy combines contributions (each update's change from the model it was trained on, its sample count and
its staleness) into one change applied to the current global model. Strategies are registered plugins with a
``name``; an unknown name lists the installed ones.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from federity.aggregation.aggregate import Tensors
from federity.errors import UnknownPluginError

_STRATEGIES: dict[str, str] = {
    "fedavg": "federity.aggregation.fedavg:FedAvg",
    "fedmedian": "federity.aggregation.fedmedian:FedMedian",
    "trimmed-mean": "federity.aggregation.trimmed_mean:TrimmedMean",
}


@dataclass
class Contribution:
    """One accepted update, as a strategy sees it."""

    delta: Tensors
    n_samples: int
    staleness: int = 0


class Strategy(Protocol):
    """Combines contributions into the change applied to the global model."""

    name: str

    def combine(self, contributions: list[Contribution]) -> Tensors:
        """The change to apply to the current global model."""
        ...


def installed_strategies() -> list[str]:
    """Names of the available strategies."""
    return sorted(_STRATEGIES)


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``."""
    if name not in _STRATEGIES:
        raise UnknownPluginError(f"unknown aggregation strategy {name!r}",
                                 f"use one of: {', '.join(installed_strategies())}")
    module_name, _, class_name = _STRATEGIES[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)()


def staleness_discount(staleness: int) -> float:
    """Weight factor of an update trained ``staleness`` rounds behind: ``1 / (1 + staleness)``, the polynomial
    staleness function of FedAsync (Xie et al. 2019)."""
    return 1.0 / (1.0 + staleness)
