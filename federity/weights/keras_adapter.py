"""TensorFlow adapter: a Keras 3 model's variables ⇄ named numpy tensors, on the TensorFlow backend.

Keras names variables after layer names that carry process-wide counters (``dense_3/kernel``), so the same
architecture built twice gets different names. Tensors are named instead by the layer's index in ``model.layers``
and the variable's path inside that layer: ``0.kernel``, ``0.bias``, ``3.moving_mean`` — stable wherever and
however often the model is built, and in the same ``index.name`` form as a PyTorch ``nn.Sequential``'s state. A
nested model (a ``keras.applications`` backbone) is walked the same way: ``0.2.kernel`` is the kernel of the
backbone's layer 2 (its layer names carry counters too: EfficientNet's ``normalization_1``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from federity.errors import ConfigError
from federity.weights.files import require_layout, tensor_layout


def import_keras() -> Any:
    """Keras 3 on the TensorFlow backend. A process that already imported Keras on another backend is refused:
    one process runs one Keras backend.

    Unless the environment says otherwise, TensorFlow's oneDNN custom operations are off (they reorder
    floating-point sums by CPU type, so the same seed could train differently on two sites' machines) and its C++
    logging is kept to warnings and errors (both otherwise print on every start, on stderr)."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"Keras runs on the {keras.backend.backend()!r} backend in this process; Federity's "
                          "tensorflow framework needs the TensorFlow backend",
                          "unset KERAS_BACKEND (or set it to tensorflow) and run again")
    return keras


def channel_last(features: np.ndarray) -> np.ndarray:
    """Features as Keras takes them: float32, images (read channel-first) channel-last."""
    features = np.asarray(features, np.float32)
    return np.ascontiguousarray(features.transpose(0, 2, 3, 1)) if features.ndim == 4 else features


def named_variables(model: Any) -> dict[str, Any]:
    """Every variable of ``model`` (trainable or not) by its stable name: the layer's index in ``model.layers``
    (and, inside a nested model, the index in its layers, and so on), then the variable's path in that layer."""
    named: dict[str, Any] = {}

    def walk(layers: list[Any], prefix: str) -> None:
        for index, layer in enumerate(layers):
            inner_layers = getattr(layer, "layers", None)
            if inner_layers:  # a nested model: its layers' names may carry counters too (keras.applications' do)
                walk(list(inner_layers), f"{prefix}{index}.")
                continue
            own = f"{layer.path}/" if getattr(layer, "path", None) else ""
            for variable in layer.weights:
                inner = variable.path[len(own):] if own and variable.path.startswith(own) else variable.name
                name = f"{prefix}{index}.{inner.replace('/', '.')}"
                if name in named:
                    raise ConfigError(f"the Keras model names two variables {name!r}",
                                      "give the sub-layers of that layer distinct names")
                named[name] = variable

    walk(list(model.layers), "")
    return named


class KerasAdapter:
    """Reads and writes every variable of a Keras model (weights and non-trainable state such as BatchNorm's
    moving statistics)."""

    name = "tensorflow"
    version = 1

    def seed(self, seed: int) -> None:
        """Seed Python's, NumPy's and TensorFlow's generators (``keras.utils.set_random_seed``)."""
        import_keras().utils.set_random_seed(seed)

    def get_tensors(self, model: Any) -> dict[str, np.ndarray]:
        """The model's variables as numpy arrays."""
        return {name: np.array(variable.numpy()) for name, variable in named_variables(model).items()}

    def set_tensors(self, model: Any, tensors: dict[str, np.ndarray]) -> None:
        """Assign ``tensors`` to the model's variables; any missing, extra or reshaped tensor is an error."""
        variables = named_variables(model)
        require_layout(tensor_layout({n: np.zeros(tuple(v.shape), v.dtype) for n, v in variables.items()}),
                       tensors, "the weights")
        for name, variable in variables.items():
            variable.assign(tensors[name])

    export_formats = ("onnx", "keras")

    def export(self, model: Any, format: str, path: Path, sample: np.ndarray) -> None:
        """``keras``: Keras' own ``.keras`` file (architecture and weights, ``keras.models.load_model``); ``onnx``:
        Keras' ONNX export (through tf2onnx)."""
        self.predict(model, sample)  # Keras exports only a model that has been called
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # tf2onnx's probe of np.object
            if format == "keras":
                model.save(path)
            else:
                model.export(str(path), format="onnx", verbose=False)

    def predict(self, model: Any, sample: np.ndarray) -> np.ndarray:
        """The model's outputs in inference mode."""
        return np.asarray(model(channel_last(sample), training=False))

    def onnx_input(self, sample: np.ndarray) -> np.ndarray:
        """Keras takes images channel-last."""
        return channel_last(sample)
