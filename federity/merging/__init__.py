"""Merge methods: how ``federity merge`` combines the model of the current branch ("ours") with another branch's
("theirs"), tensor by tensor, relative to the two branches' merge base.

A method is a registered plugin (:class:`~federity.plugins.Registry`, entry-point group
``federity.merge_methods``) with a ``name``, a ``version`` and validated parameters; the merge commit signs the
method as ``name@version`` and its parameters as canonical JSON (the ``Federity-Strategy`` and
``Federity-Strategy-Params`` trailers), so ``federity verify`` recomputes every merge with exactly what was used.

Every method is a pure function of three tensors of one name: ``ours``, ``theirs`` and ``base`` (the merge base's),
in float64, returning the merged tensor; the operation (:mod:`federity.repo.merge`) rounds it back to the
tensor's dtype and refuses non-finite results. With ``t_ours = ours - base`` and ``t_theirs = theirs - base``
(the branches' task vectors):

- ``average`` — ``(ours + theirs) / 2``.
- ``weighted`` — ``(w_o * ours + w_t * theirs) / (w_o + w_t)``; the weights default to the samples each branch
  trained on since the merge base (the ``n_samples`` of the updates its aggregates took in).
- ``task-arithmetic`` — ``base + lambda * (t_ours + t_theirs)`` (Ilharco et al., "Editing Models with Task
  Arithmetic", ICLR 2023).
- ``ties`` — trim each task vector to its largest-magnitude ``density`` fraction, elect each coordinate's sign
  as the sign of the trimmed vectors' sum, and average only the trimmed values that agree with it:
  ``base + lambda * merged`` (Yadav et al., "TIES-Merging: Resolving Interference When Merging Models",
  NeurIPS 2023).
- ``dare`` — drop each task-vector coordinate with probability ``drop_rate`` and rescale the rest by
  ``1 / (1 - drop_rate)``, then add them: ``base + lambda * (t~_ours + t~_theirs)`` (Yu et al., "Language Models
  are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch", ICML 2024). The drops come from
  a seeded PCG64 stream per tensor and branch, the ``seed`` signed with the parameters: the merge is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel

from federity.config import PluginParameters, validated_parameters
from federity.plugins import Registry

__all__ = ["MERGE_METHODS", "MergeMethod", "MergeMethodBase", "get_merge_method", "installed_merge_methods"]


class MergeMethod(Protocol):
    """What ``federity merge`` and ``verify`` need of a merge method."""

    name: str
    version: int

    def parameters(self) -> dict[str, Any]:
        """The parameters, as the merge commit signs them."""
        ...

    def with_sample_counts(self, ours: int, theirs: int) -> MergeMethod:
        """This method with anything it takes from the branches' sample counts filled in (itself if nothing)."""
        ...

    def merge(self, name: str, ours: np.ndarray, theirs: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Tensor ``name`` merged (float64 inputs of one shape; any floating dtype out)."""
        ...


class MergeMethodBase:
    """What the built-in methods share: parameters validated by their ``Params`` model (strict types, unknown
    names refused), and no use for sample counts unless they say so."""

    name: ClassVar[str]
    version: ClassVar[int]
    Params: ClassVar[type[BaseModel]] = PluginParameters

    def __init__(self, **parameters: Any) -> None:
        self.params = validated_parameters(self.Params, parameters, f"merge method {self.name}@{self.version}")

    def parameters(self) -> dict[str, Any]:
        """The parameters, as the merge commit signs them."""
        return self.params.model_dump()

    def with_sample_counts(self, ours: int, theirs: int) -> MergeMethod:
        """Itself: the built-in methods other than ``weighted`` do not use sample counts."""
        return self

    def merge(self, name: str, ours: np.ndarray, theirs: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Tensor ``name`` merged."""
        raise NotImplementedError


MERGE_METHODS: Registry[MergeMethod] = Registry("merge method", "federity.merge_methods", {
    "average": "federity.merging.average:Average",
    "weighted": "federity.merging.average:Weighted",
    "task-arithmetic": "federity.merging.task_vectors:TaskArithmetic",
    "ties": "federity.merging.task_vectors:Ties",
    "dare": "federity.merging.task_vectors:Dare",
})

DEFAULT_MERGE_METHOD = "average"


def installed_merge_methods() -> list[str]:
    """Names of the available merge methods."""
    return MERGE_METHODS.names()


def get_merge_method(spec: str, parameters: Mapping[str, Any] | None = None) -> MergeMethod:
    """The merge method registered as ``spec`` (``name`` or ``name@version``) made with ``parameters``; an unknown
    name lists the installed ones, bad parameters say what the method takes."""
    return MERGE_METHODS.with_parameters(spec, parameters)
