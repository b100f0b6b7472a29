"""Framework adapters: a model ⇄ named numpy tensors.

Adapters are small registered plugins with a ``name`` (as Git-Theta does it): the registry holds import paths,
so nothing is imported until an adapter is asked for, and an unknown name lists the installed ones. The
TensorFlow adapter plugs in by adding one entry.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from federity.errors import UnknownPluginError

_ADAPTERS: dict[str, str] = {
    "torch": "federity.weights.torch_adapter:TorchAdapter",
}


class FrameworkAdapter(Protocol):
    """Moves weights between a framework's model object and named numpy tensors."""

    name: str

    def seed(self, seed: int) -> None:
        """Seed the framework's random generators, so a model built next is reproducible."""
        ...

    def get_tensors(self, model: Any) -> dict[str, np.ndarray]:
        """Every tensor of the model's state, by name."""
        ...

    def set_tensors(self, model: Any, tensors: dict[str, np.ndarray]) -> None:
        """Load named tensors into the model; names, shapes and dtypes must match exactly."""
        ...


def installed_frameworks() -> list[str]:
    """Names of the frameworks Federity can use."""
    return sorted(_ADAPTERS)


def get_framework(name: str) -> FrameworkAdapter:
    """The adapter registered as ``name``."""
    if name not in _ADAPTERS:
        raise UnknownPluginError(
            f"unknown framework {name!r}",
            f"use one of the installed frameworks: {', '.join(installed_frameworks())}",
        )
    module_name, _, class_name = _ADAPTERS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)()
