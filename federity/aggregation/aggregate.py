"""The maths of aggregation, as pure numpy functions over named tensors (as Flower's ``aggregate.py``).

Updates are aggregated as *deltas* from the model each was trained on, and the result is applied to the current
global model: ``w_new = w_global + combine(w_i - w_base_i)``. When every update was trained on the current global
model this is exactly the weighted average of the updates' weights (FedAvg).
"""

from __future__ import annotations

import numpy as np

Tensors = dict[str, np.ndarray]


def deltas(updates: list[Tensors], bases: list[Tensors]) -> list[Tensors]:
    """Each update minus the model it was trained on, in float64."""
    return [{name: u[name].astype(np.float64) - b[name].astype(np.float64) for name in u}
            for u, b in zip(updates, bases, strict=True)]


def weighted_mean(values: list[Tensors], weights: list[float]) -> Tensors:
    """Per-tensor weighted mean: ``sum(w_i * v_i) / sum(w_i)`` (McMahan et al. 2017, FedAvg)."""
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("aggregation weights must sum to a positive number")
    return {name: sum(w * v[name] for v, w in zip(values, weights, strict=True)) / total for name in values[0]}


def coordinate_median(values: list[Tensors]) -> Tensors:
    """Coordinate-wise median (Yin et al. 2018, "Byzantine-robust distributed learning")."""
    return {name: np.median(np.stack([v[name] for v in values]), axis=0) for name in values[0]}


def trimmed_mean(values: list[Tensors], trim_fraction: float) -> Tensors:
    """Coordinate-wise mean after dropping the ``trim_fraction`` largest and smallest values (Yin et al. 2018)."""
    if not 0 <= trim_fraction < 0.5:
        raise ValueError("trim_fraction must be in [0, 0.5)")
    k = int(len(values) * trim_fraction)
    result = {}
    for name in values[0]:
        stacked = np.sort(np.stack([v[name] for v in values]), axis=0)
        result[name] = stacked[k:len(values) - k].mean(axis=0)
    return result


def apply_delta(model: Tensors, delta: Tensors) -> Tensors:
    """``model + delta``, cast back to each tensor's dtype (integer tensors, e.g. counters, are rounded)."""
    out = {}
    for name, value in model.items():
        combined = value.astype(np.float64) + delta[name]
        if np.issubdtype(value.dtype, np.integer):
            combined = np.rint(combined)
        out[name] = combined.astype(value.dtype)
    return out
