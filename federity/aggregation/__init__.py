"""Aggregation strategies: one small class per module, the maths in :mod:`federity.aggregation.aggregate`.

A strategy combines contributions (each update's change from the model it was trained on, its sample count and
its staleness) into one change applied to the current global model. Strategies are plugins with a ``name`` and a
``version``, held by a :class:`~federity.plugins.Registry` (entry-point group ``federity.strategies``); an
unknown name lists the installed ones, and ``name@version`` asks for one version of a strategy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from federity.aggregation.aggregate import Tensors
from federity.plugins import Registry


@dataclass
class Contribution:
    """One accepted update, as a strategy sees it."""

    delta: Tensors
    n_samples: int
    staleness: int = 0


class Strategy(Protocol):
    """Combines contributions into the change applied to the global model."""

    name: str
    version: int

    def combine(self, contributions: list[Contribution]) -> Tensors:
        """The change to apply to the current global model."""
        ...


STRATEGIES: Registry[Strategy] = Registry("aggregation strategy", "federity.strategies", {
    "fedavg": "federity.aggregation.fedavg:FedAvg",
    "fedmedian": "federity.aggregation.fedmedian:FedMedian",
    "trimmed-mean": "federity.aggregation.trimmed_mean:TrimmedMean",
})


def installed_strategies() -> list[str]:
    """Names of the available strategies."""
    return STRATEGIES.names()


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``, or exactly version ``v`` of it as ``name@v``; an unknown name lists
    the installed ones, an unknown version the installed versions."""
    return STRATEGIES.create(name)


def staleness_discount(staleness: int) -> float:
    """Weight factor of an update trained ``staleness`` rounds behind: ``1 / (1 + staleness)``, the polynomial
    staleness function of FedAsync (Xie et al. 2019)."""
    return 1.0 / (1.0 + staleness)
