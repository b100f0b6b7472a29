"""Weights: named tensors stored as safetensors, and the adapters that move them in and out of a framework.

Tensors travel inside Federity as ``dict[str, numpy.ndarray]``; frameworks plug in through a
:class:`~federity.weights.frameworks.FrameworkAdapter`.
"""

from federity.weights.files import (
    WEIGHTS_FILE,
    check_safetensors,
    read_header,
    read_tensors,
    sha256_bytes,
    tensors_to_bytes,
)
from federity.weights.frameworks import FrameworkAdapter, get_framework, installed_frameworks

__all__ = [
    "WEIGHTS_FILE",
    "FrameworkAdapter",
    "check_safetensors",
    "get_framework",
    "installed_frameworks",
    "read_header",
    "read_tensors",
    "sha256_bytes",
    "tensors_to_bytes",
]
