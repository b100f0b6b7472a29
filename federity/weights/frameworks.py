"""Framework adapters: a model ⇄ named numpy tensors.

Adapters are small registered plugins with a ``name`` and a ``version`` (as Git-Theta does it), held by a
:class:`~federity.plugins.Registry` (entry-point group ``federity.frameworks``): nothing is imported until an
adapter is asked for, and an unknown name lists the installed ones. PyTorch's and TensorFlow's (Keras 3) are built
in; a third framework plugs in by declaring its adapter, trainer and zoo under the entry-point groups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from federity.plugins import Registry


class FrameworkAdapter(Protocol):
    """Moves weights between a framework's model object and named numpy tensors."""

    name: str
    version: int

    def seed(self, seed: int) -> None:
        """Seed the framework's random generators, so a model built next is reproducible."""
        ...

    def get_tensors(self, model: Any) -> dict[str, np.ndarray]:
        """Every tensor of the model's state, by name."""
        ...

    def set_tensors(self, model: Any, tensors: dict[str, np.ndarray]) -> None:
        """Load named tensors into the model; names, shapes and dtypes must match exactly."""
        ...

    export_formats: tuple[str, ...]
    """The formats :meth:`export` writes besides safetensors (``onnx`` and the framework's own)."""

    def export(self, model: Any, format: str, path: Path, sample: np.ndarray) -> None:
        """Write ``model`` to ``path`` in ``format`` (one of :attr:`export_formats`); ``sample`` is a batch of
        inputs laid out as :mod:`federity.data` reads them (images channel-first), for tracing."""
        ...

    def predict(self, model: Any, sample: np.ndarray) -> np.ndarray:
        """The model's outputs on ``sample`` in inference mode."""
        ...

    def onnx_input(self, sample: np.ndarray) -> np.ndarray:
        """``sample`` as the model's ONNX export takes it (the framework's own layout)."""
        ...


FRAMEWORKS: Registry[FrameworkAdapter] = Registry("framework", "federity.frameworks", {
    "torch": "federity.weights.torch_adapter:TorchAdapter",
    "tensorflow": "federity.weights.keras_adapter:KerasAdapter",
})


def installed_frameworks() -> list[str]:
    """Names of the frameworks Federity can use."""
    return FRAMEWORKS.names()


def get_framework(name: str) -> FrameworkAdapter:
    """The adapter registered as ``name`` (or ``name@version``); an unknown name lists the installed ones."""
    return FRAMEWORKS.create(name)
