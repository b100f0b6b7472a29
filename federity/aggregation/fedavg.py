"""FedAvg (McMahan et al. 2017): the sample-weighted mean of the updates."""

from __future__ import annotations

from federity.aggregation import Contribution, staleness_discount
from federity.aggregation.aggregate import Tensors, weighted_mean


class FedAvg:
    """Weights each update by its sample count, discounted by its staleness."""

    name = "fedavg"
    version = 1

    def combine(self, contributions: list[Contribution]) -> Tensors:
        """Sample-weighted mean of the deltas."""
        weights = [c.n_samples * staleness_discount(c.staleness) for c in contributions]
        return weighted_mean([c.delta for c in contributions], weights)
