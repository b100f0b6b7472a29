"""``export``: a commit's model for use outside Federity.

``safetensors`` writes the stored weights as they are. ``onnx`` and the framework's own format (``torch``: a
``torch.export`` program; ``keras``: a ``.keras`` file) build the model at that commit and write it through the
framework adapter. An ONNX export is then run with onnxruntime on a sample batch and its outputs compared with
the framework's on the same inputs; the export is refused when they differ. The file appears at ``--out`` only
when everything succeeded.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from federity.errors import ConfigError, WeightsError
from federity.weights import get_framework, read_tensors

if TYPE_CHECKING:
    from federity.config import RepoConfig
    from federity.repo import Repository

FORMATS = ("onnx", "safetensors", "torch", "keras")
SUFFIXES = {"onnx": ".onnx", "safetensors": ".safetensors", "torch": ".pt2", "keras": ".keras"}
SAMPLE_BATCH = 3
IMAGE_SIDE = 32
SEQUENCE_STEPS = 16
ONNX_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
_OTHER_FORMAT = "export as safetensors or the framework's own format instead, and report this"


@dataclass(frozen=True)
class ExportResult:
    """What ``export`` wrote: ``path``, the ``format``, the exported ``commit``; for a built model, the shape of
    the sample batch it was traced and checked with, and for ONNX the largest difference between onnxruntime's
    outputs and the framework's on it."""

    path: Path
    format: str
    commit: str
    sample_shape: tuple[int, ...] | None = None
    onnx_max_abs_diff: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "commit": self.commit,
                "sample_shape": list(self.sample_shape) if self.sample_shape else None,
                "onnx_max_abs_diff": self.onnx_max_abs_diff}


def sample_input(config: RepoConfig, input_shape: tuple[int, ...] | None) -> np.ndarray:
    """A batch of seeded random inputs for tracing and checking an export: one example's shape is ``input_shape``
    (channel-first for images, steps first for sequences), or read from the model's ``in_features``,
    ``in_channels`` or ``input_size`` argument; for a model of token ids (``vocab_size``), ids."""
    args = config.model.get("args") or {}
    rng = np.random.default_rng(0)
    if input_shape is None and isinstance(args.get("vocab_size"), int):  # token ids, 0 being padding
        steps = min(SEQUENCE_STEPS, int(args.get("max_length", SEQUENCE_STEPS)))
        return rng.integers(1, max(args["vocab_size"], 2), (SAMPLE_BATCH, steps)).astype(np.float32)
    if input_shape is None:
        if isinstance(args.get("in_features"), int):
            input_shape = (args["in_features"],)
        elif isinstance(args.get("in_channels"), int):
            input_shape = (args["in_channels"], IMAGE_SIDE, IMAGE_SIDE)
        elif isinstance(args.get("input_size"), int):
            input_shape = (SEQUENCE_STEPS, args["input_size"])
        else:
            raise ConfigError("the model's input shape is not among its arguments",
                              "pass --input-shape with one example's shape, e.g. 3,32,32 (images channel-first)")
    if not input_shape or any(side < 1 for side in input_shape) or int(np.prod(input_shape)) > 2**24:
        raise ConfigError(f"--input-shape {','.join(map(str, input_shape))} is not a shape of one example",
                          "give positive sides, at most 16M values in all, e.g. 3,32,32")
    return rng.normal(size=(SAMPLE_BATCH, *input_shape)).astype(np.float32)


def export(repo: Repository, rev: str, format: str, out: Path, input_shape: tuple[int, ...] | None = None
           ) -> ExportResult:
    """Write the model at ``rev`` to ``out`` in ``format`` (:data:`FORMATS`). ``out`` must not exist yet."""
    from federity.training import build_with_tensors

    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}", f"use one of: {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise ConfigError(f"{out} already exists", "choose another --out, or remove that file first")
    if not out.parent.is_dir():
        raise ConfigError(f"the directory of {out} does not exist", "create it, or choose another --out")
    commit = repo.git.resolve(rev)
    weights = repo.store.read(commit)
    if format == "safetensors":
        _write_atomically(out, lambda path: path.write_bytes(weights))
        return ExportResult(out, format, commit)
    config = repo.config(commit)
    adapter = get_framework(config.framework)
    if format not in adapter.export_formats:
        raise ConfigError(f"a {config.framework} model does not export as {format}",
                          f"use one of: {', '.join(('safetensors', *adapter.export_formats))}")
    model = build_with_tensors(config, repo.root, read_tensors(weights, f"the weights of {commit[:12]}"))
    sample = sample_input(config, input_shape)
    difference: list[float] = []

    def write(path: Path) -> None:
        try:
            adapter.export(model, format, path, sample)
        except Exception as exc:  # the framework's exporter: its failure is reported, not raised as a traceback
            raise WeightsError(f"the {config.framework} exporter could not write this model as {format} "
                               f"({type(exc).__name__}: {str(exc)[:300]})", _OTHER_FORMAT) from None
        if format == "onnx":
            difference.append(_onnx_difference(path, adapter.onnx_input(sample), adapter.predict(model, sample)))

    _write_atomically(out, write, suffix=SUFFIXES[format])
    return ExportResult(out, format, commit, sample.shape, difference[0] if difference else None)


def _onnx_difference(path: Path, inputs: np.ndarray, expected: np.ndarray) -> float:
    """The largest absolute difference between onnxruntime's outputs for ``inputs`` and ``expected``; an export
    whose outputs are not within :data:`ONNX_TOLERANCE` of the framework's is refused."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    except Exception as exc:  # onnxruntime's own exception types, on the file the exporter just wrote
        raise WeightsError(f"onnxruntime cannot run the ONNX export ({type(exc).__name__}: {str(exc)[:300]})",
                           _OTHER_FORMAT) from None
    if got.shape != expected.shape or not np.allclose(got, expected, **ONNX_TOLERANCE):
        worst = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        raise WeightsError(f"the ONNX export's outputs differ from the framework's on the same inputs "
                           f"(largest difference {worst:.3g}, shapes {got.shape} and {expected.shape})",
                           _OTHER_FORMAT)
    return float(np.abs(got - expected).max())


def _write_atomically(out: Path, write: Any, suffix: str = "") -> None:
    """Run ``write(path)`` on a temporary file beside ``out``, then move it to ``out``: a failure leaves nothing
    at ``out``."""
    with tempfile.TemporaryDirectory(prefix=".federity-export-", dir=out.parent) as tmp:
        path = Path(tmp) / f"export{suffix}"
        write(path)
        os.replace(path, out)
