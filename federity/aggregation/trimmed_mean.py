"""Trimmed mean (Yin et al. 2018): per coordinate, drop the extremes, average the rest."""

from __future__ import annotations

from federity.aggregation import Contribution
from federity.aggregation.aggregate import Tensors, trimmed_mean


class TrimmedMean:
    """Drops the top and bottom 10 % of values per coordinate (at least one each way from 10 updates on)."""

    name = "trimmed-mean"
    version = 1
    trim_fraction = 0.1

    def combine(self, contributions: list[Contribution]) -> Tensors:
        """Coordinate-wise trimmed mean of the deltas."""
        return trimmed_mean([c.delta for c in contributions], self.trim_fraction)
