"""Bulyan (El Mhamdi, Guerraoui, Rouault 2018, "The Hidden Vulnerability of Distributed Learning in Byzantium",
ICML): Krum's selection, then a coordinate-wise trimmed average around the median.

With K updates of which at most f are Byzantine (``byzantine``; Bulyan needs ``K >= 4f + 3``):

1. *selection* (once, in :meth:`Bulyan.plan`, from the whole-model squared distances between the updates'
   changes): θ = K - 2f times, pick by Krum the update with the lowest score among those not yet picked, and
   set it aside. Among the r updates left, a score sums the squared distances to the ``max(1, r - f - 2)``
   nearest others (the clamp at one neighbour is Flower's, for the last picks where ``r - f - 2 < 1``);
2. *aggregation* (per chunk): for each coordinate, the median of the θ picked changes, and the mean of the
   β = θ - 2f of them closest to that median. Ties in distance go to the smaller value, so the result depends
   only on the picked values, not on their order.

The new model is ``model + that mean``, computed in float64 like ``fedmedian``. Sample counts are ignored: each
picked update is one vote per coordinate.

Flower's ``aggregate_bulyan`` makes the same choices (θ, β, the one-neighbour clamp, Krum repeated on what is
left) but refuses ``K < 4f + 3`` with a ValueError, works on the full weights rather than each update's change
from its own base, and breaks ties among the β closest with ``argpartition`` (unspecified order).
"""

from __future__ import annotations

import numpy as np

from federity.aggregation import StrategyBase
from federity.aggregation.engine import Chunk, Plan, Round
from federity.aggregation.krum import Byzantine, krum_scores, require_updates
from federity.config import PluginParameters


class BulyanParams(PluginParameters):
    """``byzantine``: f, the number of Byzantine updates to tolerate."""

    byzantine: Byzantine = 1


def bulyan_selection(distances: np.ndarray, byzantine: int) -> list[int]:
    """The θ = K - 2f updates Bulyan picks, in the order picked, by Krum repeated on the updates not yet picked."""
    k = len(distances)
    left = list(range(k))
    picked: list[int] = []
    for _ in range(k - 2 * byzantine):
        scores = krum_scores(distances, left, max(1, len(left) - byzantine - 2))
        picked.append(left.pop(int(np.argmin(scores))))
    return picked


def closest_to_median_mean(values: np.ndarray, beta: int) -> np.ndarray:
    """Per column of ``values`` (θ x n), the mean of the ``beta`` values closest to the column's median (ties to
    the smaller value), summed in ascending order of value."""
    ordered = np.sort(values, axis=0)
    distance = np.abs(ordered - np.median(ordered, axis=0))
    closest = np.sort(np.argsort(distance, axis=0, kind="stable")[:beta], axis=0)
    return np.take_along_axis(ordered, closest, axis=0).mean(axis=0)


class Bulyan(StrategyBase):
    """Krum selection of K - 2f updates, then per coordinate the mean of the K - 4f closest to their median.

    Tolerates up to f Byzantine updates (K >= 4f + 3) and, unlike Krum alone, bounds how far each coordinate can
    be pulled by updates that are close to the others in L2 norm but far in a few coordinates."""

    name = "bulyan"
    version = 1
    Params = BulyanParams

    def plan(self, round: Round) -> Plan:
        """The selection, from one pass over the inputs; then the coordinate-wise step per chunk."""
        f = self.params.byzantine
        require_updates(self.name, round.k, 4 * f + 3, f, "K >= 4f + 3")
        picked = bulyan_selection(round.squared_distances(), f)
        beta = len(picked) - 2 * f

        def combine(chunk: Chunk) -> np.ndarray:
            return chunk.model.astype(np.float64) + closest_to_median_mean(chunk.deltas()[picked], beta)

        return combine
