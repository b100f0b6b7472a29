"""PyTorch adapter: a ``torch.nn.Module``'s ``state_dict`` ⇄ named numpy tensors."""

from __future__ import annotations

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
