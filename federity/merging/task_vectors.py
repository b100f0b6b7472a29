"""Merges over task vectors, each branch's change from the merge base: ``t = model - base``.

Task arithmetic adds them (Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023); TIES trims,
elects signs and averages what agrees (Yadav et al., "TIES-Merging: Resolving Interference When Merging Models",
NeurIPS 2023); DARE drops and rescales at random before adding (Yu et al., "Language Models are Super Mario:
Absorbing Abilities from Homologous Models as a Free Lunch", ICML 2024). Every choice is made per tensor and
from values alone (thresholds, not sort positions; a seeded stream, not a global one), so a recomputation with
the signed parameters is bit-identical.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated

import numpy as np
from pydantic import Field

from federity.config import PluginParameters
from federity.merging import MergeMethodBase

Scale = Annotated[float, Field(gt=0, allow_inf_nan=False, description="lambda: finite, > 0, default 1")]


class TaskArithmeticParams(PluginParameters):
    """``scale``: lambda, what the summed task vectors are multiplied by."""

    scale: Scale = 1.0


class TaskArithmetic(MergeMethodBase):
    """``base + scale * (t_ours + t_theirs)``: both branches' changes, added."""

    name = "task-arithmetic"
    version = 1
    Params = TaskArithmeticParams

    def merge(self, name: str, ours: np.ndarray, theirs: np.ndarray, base: np.ndarray) -> np.ndarray:
        """The base plus the scaled sum of the two task vectors."""
        return base + self.params.scale * ((ours - base) + (theirs - base))


class TiesParams(PluginParameters):
    """``density``: the fraction of each task vector's coordinates kept (the largest in magnitude); ``scale``."""

    density: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False, description="in (0, 1], default 0.2")] = 0.2
    scale: Scale = 1.0


class Ties(MergeMethodBase):
    """TIES: trim, elect sign, disjoint mean; ``base + scale * merged``."""

    name = "ties"
    version = 1
    Params = TiesParams

    def merge(self, name: str, ours: np.ndarray, theirs: np.ndarray, base: np.ndarray) -> np.ndarray:
        """The base plus the scaled disjoint mean of the trimmed task vectors that agree with the elected sign."""
        vectors = np.stack([trimmed(ours - base, self.params.density), trimmed(theirs - base, self.params.density)])
        elected = np.sign(vectors.sum(axis=0))
        agree = (np.sign(vectors) == elected) & (vectors != 0)
        count = agree.sum(axis=0)
        merged = np.where(agree, vectors, 0.0).sum(axis=0) / np.maximum(count, 1)
        return base + self.params.scale * merged


def trimmed(vector: np.ndarray, density: float) -> np.ndarray:
    """``vector`` with every coordinate below its ``ceil(density * n)``-th largest magnitude set to zero (equal
    magnitudes at the threshold are all kept)."""
    if vector.size == 0 or density >= 1:
        return vector
    keep = max(1, math.ceil(density * vector.size))
    magnitude = np.abs(vector)
    threshold = np.partition(magnitude.reshape(-1), vector.size - keep)[vector.size - keep]
    return np.where(magnitude >= threshold, vector, 0.0)


class DareParams(PluginParameters):
    """``drop_rate`` p: the probability a task-vector coordinate is dropped; ``seed`` of the drops; ``scale``."""

    drop_rate: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False, description="in [0, 1), default 0.5")] = 0.5
    seed: Annotated[int, Field(ge=0, lt=2**63, description="the drops' seed, default 0")] = 0
    scale: Scale = 1.0


class Dare(MergeMethodBase):
    """DARE: ``base + scale * (t~_ours + t~_theirs)``, each ``t~`` its task vector with coordinates dropped with
    probability ``drop_rate`` and the rest rescaled by ``1 / (1 - drop_rate)``."""

    name = "dare"
    version = 1
    Params = DareParams

    def merge(self, name: str, ours: np.ndarray, theirs: np.ndarray, base: np.ndarray) -> np.ndarray:
        """The base plus the scaled sum of the two dropped-and-rescaled task vectors."""
        return base + self.params.scale * (self._dropped(ours - base, name, 0) + self._dropped(theirs - base, name, 1))

    def _dropped(self, vector: np.ndarray, name: str, branch: int) -> np.ndarray:
        rate = self.params.drop_rate
        kept = drop_mask(self.params.seed, name, branch, rate, vector.shape)
        return np.where(kept, vector / (1.0 - rate), 0.0)


def drop_mask(seed: int, name: str, branch: int, rate: float, shape: tuple[int, ...]) -> np.ndarray:
    """Which coordinates of tensor ``name`` of ``branch`` (0: ours, 1: theirs) DARE keeps: each is dropped with
    probability ``rate``, from a PCG64 stream seeded by ``(seed, name, branch)`` (numpy keeps PCG64's and
    SeedSequence's raw output fixed across releases, so the mask is too)."""
    name_key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    stream = np.random.PCG64(np.random.SeedSequence([seed, name_key, branch]))
    raw = stream.random_raw(int(np.prod(shape, dtype=np.int64)))
    threshold = np.uint64(min(int(rate * 2**64), 2**64 - 1))
    return (raw >= threshold).reshape(shape)
