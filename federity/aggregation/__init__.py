"""Aggregation strategies: small registered plugins over the streaming engine (:mod:`federity.aggregation.engine`).

A strategy combines the accepted updates of a round (each update's change from the model it was trained on, its
sample count and its staleness) into the next version of the current model, one chunk of coordinates at a time.
Strategies are plugins with a ``name``, a ``version`` and validated parameters, held by a
:class:`~federity.plugins.Registry` (entry-point group ``federity.strategies``). An unknown name lists the
installed ones, and ``name@version`` asks for one version of a strategy: every version whose maths an aggregate
commit may name stays registered, so ``verify`` recomputes past aggregates exactly as they were made.

Parameters (e.g. a trimmed mean's ``fraction``) are given as a mapping, validated by the strategy's ``Params``
model, and signed in the aggregate commit (``Federity-Strategy-Params``).

Every built-in strategy also takes ``clip_norm`` C (Sun et al. 2019, "Can You Really Backdoor Federated
Learning?"): each update's change over the floating-point tensors is scaled by ``min(1, C / ||u_i - b_i||)``
before the strategy combines it. It is handled once, here and in the engine, rather than by each strategy: the
strategy's own ``Params`` never see it, :meth:`StrategyBase.parameters` signs it when it is set, and the engine
clips the chunks it hands the strategy (:meth:`~federity.aggregation.engine.Round.clip_factors`). Without it a
strategy computes exactly what it computed before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, Field

from federity.aggregation.engine import Contribution, Plan, Round, Strategy
from federity.config import PluginParameters, validated_parameters
from federity.plugins import Registry

__all__ = ["STRATEGIES", "Contribution", "Plan", "Round", "Strategy", "StrategyBase", "get_strategy",
           "installed_strategies"]


M = TypeVar("M", bound=BaseModel)


class ClipParameters(PluginParameters):
    """``clip_norm``: the L2 norm every update's change is clipped to (none when ``None``)."""

    clip_norm: Annotated[float, Field(gt=0, allow_inf_nan=False,
                                      description="optional, finite, > 0: clip each update's change to this L2 norm")
                         ] | None = None


CLIP_NORM = "clip_norm"
"""The parameter name every built-in strategy takes for update-norm clipping (reserved: no ``Params`` may use it)."""


class StrategyBase:
    """What every built-in strategy shares: parameters validated by its ``Params`` model (strict types, unknown
    names refused), the optional ``clip_norm`` (taken out before ``Params`` sees the rest, and signed with them
    when set), and no server state unless it names some."""

    name: ClassVar[str]
    version: ClassVar[int]
    Params: ClassVar[type[BaseModel]] = PluginParameters
    state: tuple[str, ...] = ()

    def __init__(self, **parameters: Any) -> None:
        clip = {CLIP_NORM: parameters.pop(CLIP_NORM)} if CLIP_NORM in parameters else {}
        self.clip_norm: float | None = self._validated(ClipParameters, clip).clip_norm
        self.params = self._validated(self.Params, parameters)

    def _validated(self, model: type[M], parameters: dict[str, Any]) -> M:
        return validated_parameters(model, parameters, f"aggregation strategy {self.name}@{self.version}",
                                    [*self.Params.model_fields.items(), *ClipParameters.model_fields.items()])

    def parameters(self) -> dict[str, Any]:
        """The parameters, as the aggregate commit signs them (``clip_norm`` only when it is set)."""
        signed = self.params.model_dump()
        if self.clip_norm is not None:
            signed[CLIP_NORM] = self.clip_norm
        return signed

    def plan(self, round: Round) -> Plan:
        """What to compute per chunk."""
        raise NotImplementedError


STRATEGIES: Registry[Strategy] = Registry("aggregation strategy", "federity.strategies", {
    "fedavg": "federity.aggregation.fedavg:FedAvg",
    "fedavg@1": "federity.aggregation.fedavg:FedAvgFloat64",
    "fedmedian": "federity.aggregation.fedmedian:FedMedian",
    "trimmed-mean": "federity.aggregation.trimmed_mean:TrimmedMean",
    "krum": "federity.aggregation.krum:Krum",
    "multi-krum": "federity.aggregation.krum:MultiKrum",
    "bulyan": "federity.aggregation.bulyan:Bulyan",
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
    return STRATEGIES.with_parameters(spec, parameters)
