"""PyTorch adapter: a ``torch.nn.Module``'s ``state_dict`` ⇄ named numpy tensors."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

from federity.weights.files import require_layout, tensor_layout


class TorchAdapter:
    """Reads and writes every entry of a module's ``state_dict`` (parameters and buffers)."""

    name = "torch"
    version = 1

    def seed(self, seed: int) -> None:
        """Seed PyTorch's generators."""
        torch.manual_seed(seed)

    def get_tensors(self, model: torch.nn.Module) -> dict[str, np.ndarray]:
        """The module's state as numpy arrays, detached and on the CPU."""
        return {name: t.detach().cpu().numpy().copy() for name, t in model.state_dict().items()}

    def set_tensors(self, model: torch.nn.Module, tensors: dict[str, np.ndarray]) -> None:
        """Load ``tensors`` into ``model``; any missing, extra or reshaped tensor is an error."""
        require_layout(tensor_layout(self.get_tensors(model)), tensors, "the weights")
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()})

    export_formats = ("onnx", "torch")

    def export(self, model: torch.nn.Module, format: str, path: Path, sample: np.ndarray) -> None:
        """``torch``: a ``torch.export`` program (``.pt2``, loadable with ``torch.export.load`` without the model's
        code); ``onnx``: the same program through PyTorch's ONNX exporter. The batch size, an image's height and
        width, and a sequence's length stay free."""
        inputs = (torch.from_numpy(np.ascontiguousarray(sample, np.float32)),)
        dynamic = torch.export.Dim.DYNAMIC
        free = {4: (0, 2, 3), 3: (0, 1)}.get(sample.ndim, (0,))  # images' sides, sequences' length
        batch = ({axis: dynamic for axis in free},)
        model.eval()
        with contextlib.redirect_stdout(sys.stderr):  # the ONNX exporter reports progress on stdout
            if format == "torch":
                torch.export.save(torch.export.export(model, inputs, dynamic_shapes=batch), path)
            else:
                torch.onnx.export(model, inputs, path, dynamo=True, dynamic_shapes=batch, external_data=False,
                                  input_names=["input"], output_names=["output"])

    def predict(self, model: torch.nn.Module, sample: np.ndarray) -> np.ndarray:
        """The module's outputs in evaluation mode, without gradients."""
        model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(sample, np.float32))).numpy()

    def onnx_input(self, sample: np.ndarray) -> np.ndarray:
        """PyTorch takes images channel-first, as they are read."""
        return np.ascontiguousarray(sample, np.float32)
