"""Plain and weighted averaging of two branches' models (the weighted form is FedAvg's rule, McMahan et al. 2017,
"Communication-Efficient Learning of Deep Networks from Decentralized Data", applied to two models)."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from federity.config import PluginParameters
from federity.errors import MergeError
from federity.merging import MergeMethod, MergeMethodBase


class Average(MergeMethodBase):
    """``(ours + theirs) / 2``: both branches count the same."""

    name = "average"
    version = 1

    def merge(self, name: str, ours: np.ndarray, theirs: np.ndarray, base: np.ndarray) -> np.ndarray:
        """The mean of the two tensors."""
        return 0.5 * ours + 0.5 * theirs


Weight = Annotated[float, Field(gt=0, allow_inf_nan=False, description="finite, > 0")]


class WeightedParams(PluginParameters):
    """The two branches' weights, both or neither (then: their sample counts since the merge base)."""

    ours: Weight | None = None
    theirs: Weight | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> WeightedParams:
        if (self.ours is None) != (self.theirs is None):
            raise ValueError("give both weights (ours and theirs) or neither")
        return self


class Weighted(MergeMethodBase):
    """``(w_ours * ours + w_theirs * theirs) / (w_ours + w_theirs)``; the weights default to the samples each
    branch trained on since the merge base."""

    name = "weighted"
    version = 1
    Params = WeightedParams

    def with_sample_counts(self, ours: int, theirs: int) -> MergeMethod:
        """With the weights given, itself; otherwise the method weighted by the two sample counts."""
        if self.params.ours is not None:
            return self
        if ours <= 0 or theirs <= 0:
            raise MergeError(f"weighted merging takes its weights from the samples each branch trained on since the "
                             f"merge base, and {'ours' if ours <= 0 else 'theirs'} trained on none (no aggregate "
                             "took in updates there)", "give the weights: --strategy-param ours=1 "
                                                       "--strategy-param theirs=3, or merge with --strategy average")
        return Weighted(ours=float(ours), theirs=float(theirs))

    def merge(self, name: str, ours: np.ndarray, theirs: np.ndarray, base: np.ndarray) -> np.ndarray:
        """The weighted mean of the two tensors."""
        w_ours, w_theirs = self.params.ours, self.params.theirs
        if w_ours is None or w_theirs is None:
            raise MergeError("weighted merging was asked to merge before its weights were known",
                             "this is a bug in the caller: give the weights, or call with_sample_counts first")
        total = math.fsum((w_ours, w_theirs))
        return (w_ours / total) * ours + (w_theirs / total) * theirs
