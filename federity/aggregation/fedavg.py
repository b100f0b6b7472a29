"""FedAvg (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from Decentralized Data"):
the sample-weighted mean of the updates.

Each update's weight is its sample count discounted by its staleness (:attr:`Contribution.weight`), and the new
model is ``model + sum(w_i (u_i - b_i)) / sum(w_i)``. Version 2 computes it as one linear combination of the
distinct inputs with exact coefficients, in each tensor's own precision, reading every input once: when every
update was trained on the current model it is exactly ``sum(w_i u_i) / sum(w_i)``. Version 1 (aggregates made
before) computed every change in float64 first; it stays registered as ``fedavg@1`` so they still verify.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from federity.aggregation import StrategyBase
from federity.aggregation.engine import Chunk, Plan, Round


class FedAvg(StrategyBase):
    """Sample-weighted mean, one pass over the inputs."""

    name = "fedavg"
    version = 2

    def plan(self, round: Round) -> Plan:
        """Fixed coefficients for every chunk."""
        return mean_plan(round)


def mean_plan(round: Round, weights: Sequence[Fraction] | None = None,
              selected: Sequence[int] | None = None) -> Plan:
    """The plan that applies the weighted mean of the ``selected`` updates' changes (default: every update,
    weighted by :attr:`Contribution.weight`) to the model: one exact linear combination of the inputs
    (:meth:`Round.fedavg_terms`), in each tensor's precision."""
    terms = [(float(c), index) for c, index in round.fedavg_terms(weights, selected)]

    def combine(chunk: Chunk) -> np.ndarray:
        return chunk.linear([(c, round.source(chunk, index)) for c, index in terms])

    return combine


class FedAvgFloat64(StrategyBase):
    """Version 1: the weighted mean of the float64 changes, added to the float64 model."""

    name = "fedavg"
    version = 1

    def plan(self, round: Round) -> Plan:
        """The float weights of version 1: ``n_samples / (1 + staleness)``."""
        weights = [c.n_samples * (1.0 / (1.0 + c.staleness)) for c in round.contributions]
        total = float(sum(weights))
        if total <= 0:
            raise ValueError("aggregation weights must sum to a positive number")

        def combine(chunk: Chunk) -> np.ndarray:
            change = np.zeros(chunk.stop - chunk.start)
            for weight, delta in zip(weights, chunk.deltas(), strict=True):
                change = change + weight * delta
            return chunk.model.astype(np.float64) + change / total

        return combine
