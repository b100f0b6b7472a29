"""Aggregation strategies: small registered plugins over the streaming engine (:mod:`federity.aggregation.engine`).

A strategy combines the accepted updates of a round (each update's change from the model it was trained on, its
sample count and its staleness) into the next version of the current model, one chunk of coordinates at a time.
Strategies are plugins with a ``name``, a ``version`` and validated parameters, held by a
:class:`~federity.plugins.Registry` (entry-point group ``federity.strategies``). An unknown name lists the
installed ones, and ``name@version`` asks for one version of a strategy: every version whose maths an aggregate
commit may name stays registered, so ``verify`` recomputes past aggregates exactly as they were made.

Parameters (e.g. a trimmed mean's ``fraction``) are given as a mapping, validated by the strategy's ``Params``
model, and signed in the aggregate commit (``Federity-Strategy-Params``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from federity.aggregation.engine import Contribution, Plan, Round, Strategy
from federity.errors import ConfigError
from federity.plugins import Registry

__all__ = ["STRATEGIES", "Contribution", "Plan", "Round", "Strategy", "StrategyBase", "get_strategy",
           "installed_strategies"]


class NoParameters(BaseModel):
    """A strategy without parameters."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class StrategyBase:
    """What every built-in strategy shares: parameters validated by its ``Params`` model (strict types, unknown
    names refused), and no server state unless it names some."""

    name: ClassVar[str]
    version: ClassVar[int]
    Params: ClassVar[type[BaseModel]] = NoParameters
    state: tuple[str, ...] = ()

    def __init__(self, **parameters: Any) -> None:
        try:
            self.params = self.Params(**parameters)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}" for e in exc.errors())
            fields = ", ".join(f"{n} ({f.description or f.annotation})" for n, f in self.Params.model_fields.items())
            raise ConfigError(f"invalid parameters for aggregation strategy {self.name}@{self.version}: {problems}",
                              f"{self.name} takes: {fields or 'no parameters'}") from None

    def parameters(self) -> dict[str, Any]:
        """The parameters, as the aggregate commit signs them."""
        return self.params.model_dump()

    def plan(self, round: Round) -> Plan:
        """What to compute per chunk."""
        raise NotImplementedError


STRATEGIES: Registry[Strategy] = Registry("aggregation strategy", "federity.strategies", {
    "fedavg": "federity.aggregation.fedavg:FedAvg",
    "fedavg@1": "federity.aggregation.fedavg:FedAvgFloat64",
    "fedmedian": "federity.aggregation.fedmedian:FedMedian",
    "trimmed-mean": "federity.aggregation.trimmed_mean:TrimmedMean",
    "fedavgm": "federity.aggregation.fedopt:FedAvgM",
    "fedadam": "federity.aggregation.fedopt:FedAdam",
    "fedyogi": "federity.aggregation.fedopt:FedYogi",
    "fedadagrad": "federity.aggregation.fedopt:FedAdagrad",
})


def installed_strategies() -> list[str]:
    """Names of the available strategies."""
    return STRATEGIES.names()


def get_strategy(spec: str, parameters: Mapping[str, Any] | None = None) -> Strategy:
    """The strategy registered as ``spec`` (``name``, or exactly version ``v`` as ``name@v``) made with
    ``parameters``; an unknown name lists the installed ones, bad parameters say what the strategy takes."""
    plugin = STRATEGIES.load(spec)
    try:
        return plugin(**dict(parameters or {}))
    except TypeError as exc:  # a plugin that takes other arguments than it was given
        raise ConfigError(f"aggregation strategy {spec} cannot be made with parameters "
                          f"{', '.join(map(str, parameters or {})) or 'none'}: {exc}",
                          "pass only the parameters the strategy documents") from None
