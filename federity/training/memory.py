"""How much memory local training will take, estimated before it starts, and the refusal when it cannot fit.

The estimate adds what training holds at its peak: the model's tensors; one gradient per trainable value; the
optimiser's state (SGD with momentum keeps one buffer per trainable value, Adam two) and FedProx's copy of the
starting weights; and, per sample of a batch, every layer's output, kept for the backward pass and matched by
its gradient (twice the forward activations). Each framework's trainer measures the sizes from the model itself
and one sample (:meth:`federity.training.Trainer.memory`). It is an estimate, not a bound: the framework's own
workspace, the dataset and the interpreter come on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from federity.errors import DataError
from federity.training import TrainingParams

GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    """The parts of local training's peak memory, in bytes, for ``batch_size`` samples a step."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    batch_size: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def describe(self) -> str:
        parts = ", ".join(f"{name} {value / GIB:.2f}" for name, value in (
            ("weights", self.weights), ("gradients", self.gradients), ("optimizer state", self.optimizer),
            (f"activations for batch_size {self.batch_size}", self.activations)))
        return f"about {self.total / GIB:.2f} GiB ({parts})"


def estimate(weights: int, trainable: int, activations_per_sample: int, params: TrainingParams,
             n_samples: int) -> MemoryEstimate:
    """The estimate for a model holding ``weights`` bytes, ``trainable`` of them trained, whose layers output
    ``activations_per_sample`` bytes for one sample, trained with ``params`` on ``n_samples`` (a batch holds at
    most that many)."""
    buffers = 2 if params.optimizer == "adam" else 1 if params.momentum else 0
    optimizer = trainable * (buffers + (1 if params.mu > 0 else 0))
    batch = min(params.batch_size, max(n_samples, 1))
    return MemoryEstimate(weights, trainable, optimizer, 2 * activations_per_sample * batch, batch)


def available_memory() -> int | None:
    """Bytes this process can still take: the kernel's MemAvailable, lowered to the cgroup's free room when the
    process runs in a memory-limited cgroup (a container); ``None`` where neither can be read."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            candidates.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(candidates) if candidates else None


def require_fits(needed: MemoryEstimate, available: int | None = None) -> None:
    """Refuse, before training, a configuration whose estimate exceeds the memory available (read now unless
    given); nothing is refused where the available memory cannot be read."""
    available = available_memory() if available is None else available
    if available is not None and needed.total > available:
        raise DataError(f"training this model needs {needed.describe()}, but {available / GIB:.2f} GiB of memory "
                        "is available", "lower batch_size in params.yaml (activations grow with it), or ask the "
                        "owner for a smaller model configuration")
