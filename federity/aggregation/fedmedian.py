"""FedMedian: the coordinate-wise median of the updates' changes (Yin et al. 2018, "Byzantine-Robust Distributed
Learning: Towards Optimal Statistical Rates"), robust to a minority of outliers."""

from __future__ import annotations

import numpy as np

from federity.aggregation import StrategyBase
from federity.aggregation.engine import Chunk, Plan, Round


class FedMedian(StrategyBase):
    """Ignores sample counts: each update is one vote per coordinate. Computed in float64."""

    name = "fedmedian"
    version = 1

    def plan(self, round: Round) -> Plan:
        """The same computation for every chunk."""

        def combine(chunk: Chunk) -> np.ndarray:
            return chunk.model.astype(np.float64) + np.median(chunk.deltas(), axis=0)

        return combine
