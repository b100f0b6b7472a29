"""FedMedian: the coordinate-wise median of the updates (Yin et al. 2018), robust to a minority of outliers."""

from __future__ import annotations

from federity.aggregation import Contribution
from federity.aggregation.aggregate import Tensors, coordinate_median


class FedMedian:
    """Ignores sample counts: each update is one vote per coordinate."""

    name = "fedmedian"
    version = 1

    def combine(self, contributions: list[Contribution]) -> Tensors:
        """Coordinate-wise median of the deltas."""
        return coordinate_median([c.delta for c in contributions])
