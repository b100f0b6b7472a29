"""Server-side optimisers: the FedAvg change of a round used as a pseudo-gradient, with server state.

Each round's pseudo-gradient is FedAvg's weighted mean change (:meth:`Round.fedavg_terms`)::

    delta = sum(w_i (u_i - b_i)) / sum(w_i)

and, instead of adding it to the model as FedAvg does, the server feeds it to an optimiser whose state (moments)
is carried from round to round in ``model/strategy-state.safetensors`` (see :mod:`federity.repo.aggregate`):

- **FedAvgM** (Hsu, Qi and Brown 2019, "Measuring the Effects of Non-Identical Data Distribution for Federated
  Visual Classification"): server momentum, ``v = beta v + delta``, ``x = x + server_lr v``.
- **FedAdagrad, FedAdam, FedYogi** (Reddi et al. 2021, "Adaptive Federated Optimization", ICLR; Algorithm 2):
  ``m = beta1 m + (1 - beta1) delta``; ``v`` accumulates ``delta**2`` (Adagrad: ``v + delta**2``; Adam:
  ``beta2 v + (1 - beta2) delta**2``; Yogi: ``v - (1 - beta2) delta**2 sign(v - delta**2)``), and
  ``x = x + eta m / (sqrt(v) + tau)``, element-wise.

Choices, where the paper and Flower differ:

- Defaults: ``eta = 1e-2``, ``beta1 = 0.9``, ``beta2 = 0.99``, ``tau = 1e-3`` for all three, Flower's FedYogi
  defaults (``flwr.server.strategy.FedYogi``); the paper fixes ``beta1 = 0.9`` and ``beta2 = 0.99`` in its
  experiments and tunes ``eta`` and ``tau``. Flower's FedAdam and FedAdagrad default to ``eta = 0.1`` and
  ``tau = 1e-9``, with which every coordinate moves by about ``eta`` whatever the size of its change.
- No bias correction: Algorithm 2 has none (Flower's FedAdam adds Adam's ``sqrt(1 - beta2^t) / (1 - beta1^t)``).
- FedAdagrad keeps the first moment with ``beta1`` as Algorithm 2 writes it (Flower's uses ``beta1 = 0``; pass
  ``beta1: 0.0`` for plain Adagrad on the pseudo-gradient).
- Zero initial state: the first aggregation (or one after another strategy) starts from ``m = v = 0`` (Flower
  does the same), where Algorithm 2 asks for ``v_{-1} >= tau**2``: that would add at most ``tau**2`` to every
  later ``v`` (decaying as ``beta2**t`` for Adam), which matters only for coordinates whose changes stay near
  ``tau``.

Only floating-point tensors have state. Integer tensors (e.g. BatchNorm's ``num_batches_tracked``) are not
optimised: they are FedAvg's weighted mean, rounded by the engine. The optimiser's arithmetic runs in float64 for
every floating tensor; the moments are stored as float32 (so each round starts from the float32 moments the
previous one left, in ``aggregate`` and in ``verify`` alike) and the new weights are cast to the tensor's dtype.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated

import numpy as np
from pydantic import Field

from federity.aggregation import StrategyBase
from federity.aggregation.engine import Chunk, Plan, Round
from federity.aggregation.fedavg import mean_plan
from federity.config import PluginParameters

Terms = list[tuple[float, int]]

class FedAvgMParams(PluginParameters):
    """FedAvgM's parameters: the server learning rate and the momentum."""

    server_lr: Annotated[float, Field(gt=0, allow_inf_nan=False, description="> 0, default 1.0")] = 1.0
    beta: Annotated[float, Field(ge=0, lt=1, description="momentum in [0, 1), default 0.9")] = 0.9


class FedAdagradParams(PluginParameters):
    """FedAdagrad's parameters (Reddi et al. 2021, Algorithm 2)."""

    eta: Annotated[float, Field(gt=0, allow_inf_nan=False, description="server learning rate > 0, default 0.01")] \
        = 1e-2
    beta1: Annotated[float, Field(ge=0, lt=1, description="first-moment decay in [0, 1), default 0.9")] = 0.9
    tau: Annotated[float, Field(gt=0, allow_inf_nan=False,
                                description="adaptivity (added to sqrt(v)) > 0, default 0.001")] = 1e-3


class FedAdamParams(FedAdagradParams):
    """FedAdam's and FedYogi's parameters: FedAdagrad's and the second-moment decay ``beta2``."""

    beta2: Annotated[float, Field(ge=0, lt=1, description="second-moment decay in [0, 1), default 0.99")] = 0.99


def change_terms(mean: list[tuple[Fraction, int]]) -> Terms:
    """The terms of FedAvg's weighted mean change ``delta`` from the terms of ``model + delta``
    (:meth:`Round.fedavg_terms`): the model's coefficient less one, exactly."""
    coefficients = {index: c for c, index in mean}
    coefficients[-1] = coefficients.get(-1, Fraction(0)) - 1
    return [(float(c), index) for index, c in sorted(coefficients.items()) if c != 0]


def _linear64(chunk: Chunk, round: Round, terms: Terms) -> np.ndarray:
    """``sum(c * x)`` over the chunk's inputs, in float64, accumulated in the order given."""
    out = np.zeros(chunk.stop - chunk.start)
    scratch = np.empty_like(out)
    for coefficient, index in terms:
        np.multiply(round.source(chunk, index), coefficient, out=scratch, dtype=np.float64)
        out += scratch
    return out


class ServerOptimiser(StrategyBase):
    """What the server optimisers share: the pseudo-gradient of each floating chunk, FedAvg for the others."""

    def plan(self, round: Round) -> Plan:
        """FedAvg's coefficients, fixed for the round; the optimiser's step per floating chunk."""
        fedavg = mean_plan(round)
        change = change_terms(round.fedavg_terms())

        def combine(chunk: Chunk) -> np.ndarray:
            if not chunk.is_float:
                return fedavg(chunk)
            delta = _linear64(chunk, round, change)
            previous = {name: chunk.state[name].astype(np.float64) for name in self.state}
            step, new_state = self.step(delta, previous)
            chunk.new_state.update({name: value.astype(np.float32) for name, value in new_state.items()})
            return chunk.model.astype(np.float64) + step

        return combine

    def step(self, delta: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The change to apply to the model and the new state, from the pseudo-gradient and the previous state
        (float64 arrays of one chunk)."""
        raise NotImplementedError


class FedAvgM(ServerOptimiser):
    """FedAvg with server momentum (Hsu, Qi and Brown 2019): ``v = beta v + delta``, ``x = x + server_lr v``.

    With ``beta = 0`` and ``server_lr = 1`` it is FedAvg; with momentum the effective step is about
    ``server_lr / (1 - beta)`` once ``v`` has built up."""

    name = "fedavgm"
    version = 1
    Params = FedAvgMParams
    state = ("momentum",)

    def step(self, delta: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One momentum step."""
        momentum = self.params.beta * state["momentum"] + delta
        return self.params.server_lr * momentum, {"momentum": momentum}


class AdaptiveOptimiser(ServerOptimiser):
    """Reddi et al. 2021, Algorithm 2: a first moment ``m`` and a second moment ``v`` per coordinate, and the
    step ``eta m / (sqrt(v) + tau)``; subclasses say how ``v`` accumulates ``delta**2``."""

    state = ("m", "v")

    def step(self, delta: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One adaptive step."""
        beta1 = self.params.beta1
        m = beta1 * state["m"] + (1 - beta1) * delta
        v = self.second_moment(state["v"], delta * delta)
        return self.params.eta * m / (np.sqrt(v) + self.params.tau), {"m": m, "v": v}

    def second_moment(self, v: np.ndarray, square: np.ndarray) -> np.ndarray:
        """The new ``v`` from the previous one and ``delta**2``."""
        raise NotImplementedError


class FedAdagrad(AdaptiveOptimiser):
    """FedAdagrad (Reddi et al. 2021): ``v = v + delta**2``, so each coordinate's step shrinks as its changes
    accumulate."""

    name = "fedadagrad"
    version = 1
    Params = FedAdagradParams

    def second_moment(self, v: np.ndarray, square: np.ndarray) -> np.ndarray:
        """Adagrad's sum of squares."""
        return v + square


class FedAdam(AdaptiveOptimiser):
    """FedAdam (Reddi et al. 2021): ``v = beta2 v + (1 - beta2) delta**2``, an exponential average."""

    name = "fedadam"
    version = 1
    Params = FedAdamParams

    def second_moment(self, v: np.ndarray, square: np.ndarray) -> np.ndarray:
        """Adam's exponential moving average of the squares."""
        beta2 = self.params.beta2
        return beta2 * v + (1 - beta2) * square


class FedYogi(AdaptiveOptimiser):
    """FedYogi (Reddi et al. 2021, after Zaheer et al. 2018): ``v = v - (1 - beta2) delta**2 sign(v - delta**2)``.
    Where the changes become smaller than ``sqrt(v)``, ``v`` falls by at most ``(1 - beta2) delta**2`` a round
    (Adam's decays geometrically), so the step grows back only gradually after a burst of large changes."""

    name = "fedyogi"
    version = 1
    Params = FedAdamParams

    def second_moment(self, v: np.ndarray, square: np.ndarray) -> np.ndarray:
        """Yogi's additive update."""
        return v - (1 - self.params.beta2) * square * np.sign(v - square)
