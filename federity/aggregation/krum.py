"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer 2017, "Machine Learning with Adversaries:
Byzantine Tolerant Gradient Descent", NeurIPS; Multi-Krum as used by El Mhamdi, Guerraoui, Rouault 2018, "The
Hidden Vulnerability of Distributed Learning in Byzantium", ICML).

With K updates of which at most f are Byzantine (``byzantine``), the score of update i is the sum of the squared
L2 distances from its change to the changes of its ``K - f - 2`` nearest other updates, over every floating-point
tensor together (:meth:`~federity.aggregation.engine.Round.squared_distances`, one extra pass over the inputs)::

    score(i) = sum of the K - f - 2 smallest ||Δ_i - Δ_j||², j ≠ i

Krum moves the model by the change of the lowest-scoring update (``model + Δ_i``: exactly that update's weights
when it was trained on the current model). Multi-Krum averages the changes of the ``selected`` (m) lowest-scoring
updates, sample-weighted like FedAvg. Both need ``K > 2f + 2`` updates. Ties go to the update combined first
(the aggregate's parents are sorted by commit id), so the selection is deterministic.

Flower's ``aggregate_krum`` uses the same score but (a) does not refuse ``K <= 2f + 2`` (it takes at least one
neighbour), (b) compares the full weights rather than each update's change from its own base (the same when every
update was trained on the current model), and (c) breaks score ties in Multi-Krum by an unstable sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Annotated

import numpy as np
from pydantic import Field

from federity.aggregation import StrategyBase
from federity.aggregation.engine import Plan, Round
from federity.aggregation.fedavg import mean_plan
from federity.config import PluginParameters
from federity.errors import UpdateError

Byzantine = Annotated[int, Field(ge=0, description="int >= 0, default 1: how many updates may be Byzantine")]


def krum_scores(distances: np.ndarray, candidates: Sequence[int], neighbours: int) -> np.ndarray:
    """The Krum score of each of ``candidates`` among themselves: the sum of its ``neighbours`` smallest squared
    distances (``distances``, K x K) to the other candidates, summed in ascending order (float64)."""
    chosen = np.asarray(candidates)
    scores = np.empty(len(chosen))
    for position, i in enumerate(chosen):
        others = np.sort(distances[i, np.delete(chosen, position)])
        scores[position] = others[:neighbours].sum()
    return scores


def require_updates(strategy: str, k: int, needed: int, byzantine: int, rule: str) -> None:
    """Refuse a round of ``k`` updates when ``strategy`` needs ``needed`` (``rule``, e.g. ``"K > 2f + 2"``)."""
    if k < needed:
        raise UpdateError(f"{strategy} with byzantine={byzantine} needs at least {needed} updates ({rule}), "
                          f"{k} given",
                          f"approve at least {needed} updates, or lower {strategy}'s byzantine parameter")


class KrumParams(PluginParameters):
    """``byzantine``: f, the number of Byzantine updates to tolerate."""

    byzantine: Byzantine = 1


class Krum(StrategyBase):
    """The one update whose change is closest to its ``K - f - 2`` nearest neighbours; needs ``K > 2f + 2``.

    Tolerates up to f arbitrary (Byzantine) updates among K, but keeps only one update's change, so it learns
    more slowly than an average when every update is honest. Sample counts are ignored."""

    name = "krum"
    version = 1
    Params = KrumParams

    def selection(self, round: Round) -> tuple[list[int], np.ndarray]:
        """The updates in ascending order of Krum score (ties: first combined first), and their scores."""
        f = self.params.byzantine
        require_updates(self.name, round.k, 2 * f + 3, f, "K > 2f + 2")
        scores = krum_scores(round.squared_distances(), range(round.k), round.k - f - 2)
        order = np.argsort(scores, kind="stable")
        return [int(i) for i in order], scores[order]

    def plan(self, round: Round) -> Plan:
        """``model + Δ_i`` for the lowest-scoring update i."""
        best = self.selection(round)[0][0]
        return mean_plan(round, [Fraction(1)], [best])


class MultiKrumParams(PluginParameters):
    """``byzantine`` f, and ``selected`` m: how many of the lowest-scoring updates are averaged."""

    byzantine: Byzantine = 1
    selected: Annotated[int, Field(ge=1, description="int >= 1, at most K; default K - f")] | None = None


class MultiKrum(Krum):
    """The sample-weighted mean of the m lowest-scoring updates' changes (m = 1 is Krum, m = K is FedAvg);
    needs ``K > 2f + 2``. With the default m = K - f it averages as many updates as are assumed honest."""

    name = "multi-krum"
    version = 1
    Params = MultiKrumParams

    def plan(self, round: Round) -> Plan:
        """The FedAvg of the m lowest-scoring updates."""
        f, m = self.params.byzantine, self.params.selected
        require_updates(self.name, round.k, 2 * f + 3, f, "K > 2f + 2")
        m = round.k - f if m is None else m
        if m > round.k:
            raise UpdateError(f"multi-krum cannot select {m} updates from {round.k}",
                              "lower multi-krum's selected parameter, or approve more updates")
        return mean_plan(round, None, sorted(self.selection(round)[0][:m]))
