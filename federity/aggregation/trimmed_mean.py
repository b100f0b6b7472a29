"""Trimmed mean (Yin et al. 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates"):
per coordinate, drop the ``fraction`` largest and smallest changes and average the rest."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from federity.aggregation import StrategyBase
from federity.aggregation.engine import Chunk, Plan, Round
from federity.config import PluginParameters


class TrimmedMeanParams(PluginParameters):
    """``fraction``: the share of updates dropped at each end, per coordinate."""

    fraction: Annotated[float, Field(ge=0, lt=0.5, description="in [0, 0.5), default 0.1")] = 0.1


class TrimmedMean(StrategyBase):
    """Drops ``int(K * fraction)`` values at each end per coordinate (with the default 0.1: one each way from
    10 updates on). Computed in float64; sample counts are ignored."""

    name = "trimmed-mean"
    version = 1
    Params = TrimmedMeanParams

    def plan(self, round: Round) -> Plan:
        """How many values each end drops."""
        trim = int(round.k * self.params.fraction)

        def combine(chunk: Chunk) -> np.ndarray:
            ordered = np.sort(chunk.deltas(), axis=0)
            return chunk.model.astype(np.float64) + ordered[trim:round.k - trim].mean(axis=0)

        return combine
