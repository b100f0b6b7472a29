"""The proved computation: one SGD step of a softmax-regression head, as an ONNX graph that ezkl compiles.

Inputs (all three *hashed*: the proof's public instances are their Poseidon hashes, the values stay private):

- ``W``, shape ``[features, classes]``: the head's weight matrix (the transpose of torch's ``Linear.weight``);
- ``b``, shape ``[classes]``: the head's bias;
- ``batch``, shape ``[batch + 1, features + classes]``: ``batch`` rows of features followed by the one-hot label,
  then one row of salt that the graph ignores, so the batch hash cannot be brute-forced from guessed data.

Outputs (hashed as well): ``W - lr·∇W`` and ``b - lr·∇b`` for the mean cross-entropy of the batch, where
``∇W = Xᵀ(softmax(XW + b) - Y)/B`` and ``∇b = Σ(softmax(XW + b) - Y)/B``. The softmax sees each logit's gap to its
row's largest, clipped at ``-LOGIT_SPREAD`` (beyond which ``exp`` is below the grid anyway), so the circuit's
``exp`` table covers every gap a confident model produces. ``lr/B`` is multiplied in last, as one constant on the
grid (:attr:`StepCircuit.effective_lr`), so the gradient keeps the grid's full precision.

Everything runs in ezkl's fixed point at ``2^-scale`` resolution. The graph, its run arguments and the
calibration input are all functions of the :class:`StepCircuit` fields. The compiled circuit is made once per
repository and stored in it (:func:`compile_step` says why); with the repository's SRS, every prover and verifier
derives the same keys from it (ezkl's setup is deterministic).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from federity.errors import ProofError

CIRCUIT_SCHEMA = 2
SALT_ROWS = 1
LOOKUP_SAFETY_MARGIN = 2
LOGIT_SPREAD = 12
TABLE_RESERVED_ROWS = 64


@dataclass(frozen=True)
class StepCircuit:
    """The shape and constants of one proved SGD step; equal fields mean an identical circuit."""

    features: int
    classes: int
    batch: int
    lr: float
    scale: int

    @property
    def parameters(self) -> int:
        """How many trainable parameters the proof covers."""
        return self.features * self.classes + self.classes

    @property
    def effective_lr(self) -> float:
        """The learning rate the circuit applies: ``lr/batch`` is compiled as a constant at ``2^-scale``."""
        return round(self.lr / self.batch * 2**self.scale) * self.batch / 2**self.scale

    def to_json(self) -> dict[str, Any]:
        """The fields, plus the schema version of the graph they build."""
        return {"schema": CIRCUIT_SCHEMA, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepCircuit:
        """The circuit a proof record names; an unknown schema is refused."""
        if data.get("schema") != CIRCUIT_SCHEMA:
            raise ProofError(f"the repository's proof circuit is schema {data.get('schema')!r}; this Federity "
                             f"proves and verifies schema {CIRCUIT_SCHEMA}",
                             "use the Federity version that created the repository")
        return cls(int(data["features"]), int(data["classes"]), int(data["batch"]), float(data["lr"]),
                   int(data["scale"]))

    def onnx_bytes(self) -> bytes:
        """The serialised ONNX graph of the step (deterministic)."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        f, c, b = self.features, self.classes, self.batch

        def ints(*values: int) -> np.ndarray:
            return np.array(values, np.int64)

        constants = {
            "zero": ints(0), "one": ints(1), "n_features": ints(f), "n_columns": ints(f + c), "n_rows": ints(b),
            "lr_over_batch": np.array(self.lr / b, np.float32), "lowest_gap": np.array(-LOGIT_SPREAD, np.float32),
        }
        nodes = [
            helper.make_node("Slice", ["batch", "zero", "n_rows", "zero"], ["rows"]),
            helper.make_node("Slice", ["rows", "zero", "n_features", "one"], ["X"]),
            helper.make_node("Slice", ["rows", "n_features", "n_columns", "one"], ["Y"]),
            helper.make_node("MatMul", ["X", "W"], ["XW"]),
            helper.make_node("Add", ["XW", "b"], ["logits"]),
            helper.make_node("ReduceMax", ["logits"], ["top"], axes=[1], keepdims=1),
            helper.make_node("Sub", ["logits", "top"], ["gap"]),
            helper.make_node("Max", ["gap", "lowest_gap"], ["clipped_gap"]),
            helper.make_node("Softmax", ["clipped_gap"], ["p"], axis=1),
            helper.make_node("Sub", ["p", "Y"], ["error"]),
            helper.make_node("Transpose", ["X"], ["XT"], perm=[1, 0]),
            helper.make_node("MatMul", ["XT", "error"], ["grad_W"]),
            helper.make_node("ReduceSum", ["error", "zero"], ["grad_b"], keepdims=0),
            helper.make_node("Mul", ["grad_W", "lr_over_batch"], ["step_W"]),
            helper.make_node("Mul", ["grad_b", "lr_over_batch"], ["step_b"]),
            helper.make_node("Sub", ["W", "step_W"], ["W_next"]),
            helper.make_node("Sub", ["b", "step_b"], ["b_next"]),
        ]
        graph = helper.make_graph(
            nodes, "federity_sgd_step",
            [helper.make_tensor_value_info("W", TensorProto.FLOAT, [f, c]),
             helper.make_tensor_value_info("b", TensorProto.FLOAT, [c]),
             helper.make_tensor_value_info("batch", TensorProto.FLOAT, [b + SALT_ROWS, f + c])],
            [helper.make_tensor_value_info("W_next", TensorProto.FLOAT, [f, c]),
             helper.make_tensor_value_info("b_next", TensorProto.FLOAT, [c])],
            [numpy_helper.from_array(value, name) for name, value in constants.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="federity")
        onnx.checker.check_model(model)
        return model.SerializeToString(deterministic=True)

    def _run_args(self) -> dict[str, Any]:
        return {"input_visibility": "hashed", "output_visibility": "hashed", "param_visibility": "fixed",
                "input_scale": self.scale, "param_scale": self.scale, "decomp_base": 1024, "decomp_legs": 3}

    def calibration_input(self) -> list[list[float]]:
        """A deterministic input for ezkl's calibration: standardised features and typical weights."""
        rng = np.random.default_rng(0)
        return self.input_values(rng.normal(0, 0.5, (self.features, self.classes)),
                                 rng.normal(0, 0.5, self.classes),
                                 rng.normal(0, 1.5, (self.batch, self.features)),
                                 rng.integers(0, self.classes, self.batch),
                                 np.zeros(self.features + self.classes))

    def input_values(self, weight: np.ndarray, bias: np.ndarray, features: np.ndarray, labels: np.ndarray,
                     salt: np.ndarray) -> list[list[float]]:
        """ezkl's ``input_data`` for one step: ``weight`` is ``[features, classes]``."""
        rows = np.concatenate([features, np.eye(self.classes)[labels]], axis=1)
        batch = np.concatenate([rows, np.asarray(salt).reshape(SALT_ROWS, -1)], axis=0)
        return [quantize(weight, self.scale).ravel().tolist(), quantize(bias, self.scale).tolist(),
                quantize(batch, self.scale).ravel().tolist()]


def quantize(values: np.ndarray, scale: int) -> np.ndarray:
    """``values`` rounded to ezkl's fixed-point grid at ``2^-scale`` (as float64, exactly representable)."""
    return np.round(np.asarray(values, np.float64) * 2.0**scale) / 2.0**scale


@contextlib.contextmanager
def _quiet_ezkl() -> Iterator[None]:
    """ezkl prints calibration tables and progress from Rust to stdout and stderr: keep both clean (stdout
    carries ``--json``); its failures still arrive as Python exceptions."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def call_ezkl(name: str, *args: Any, **kwargs: Any) -> Any:
    """Run one ezkl function quietly; its failure becomes a :class:`ProofError` naming the step."""
    import ezkl

    try:
        with _quiet_ezkl():
            return getattr(ezkl, name)(*args, **kwargs)
    except Exception as exc:
        raise ProofError(f"ezkl {name} failed: {exc}", "see docs/proofs.md for the circuit's limits") from None


@dataclass(frozen=True)
class CircuitFiles:
    """A circuit's compiled form and keys in the local cache."""

    directory: Path
    srs: Path

    @property
    def onnx(self) -> Path:
        return self.directory / "step.onnx"

    @property
    def settings(self) -> Path:
        return self.directory / "settings.json"

    @property
    def compiled(self) -> Path:
        return self.directory / "step.ezkl"

    @property
    def vk(self) -> Path:
        return self.directory / "vk.key"

    @property
    def pk(self) -> Path:
        return self.directory / "pk.key"

    def lookup_range(self) -> tuple[int, int]:
        """The fixed-point range ezkl's lookup tables cover for this circuit."""
        low, high = json.loads(self.settings.read_text())["run_args"]["lookup_range"]
        return int(low), int(high)


def cache_root() -> Path:
    """Where compiled circuits and keys are cached: ``$FEDERITY_CACHE`` or the user cache directory."""
    from platformdirs import user_cache_path

    return Path(os.environ.get("FEDERITY_CACHE") or user_cache_path("federity")) / "circuits"


def compile_step(circuit: StepCircuit, directory: Path) -> CircuitFiles:
    """Write the circuit's ONNX graph, calibrated settings and compiled form into ``directory`` (no keys).

    ezkl's compilation is not reproducible across processes (the layout follows hash-map order), while its setup
    is deterministic for a given compiled circuit. So a repository compiles once, at ``init``, and stores the
    result: every prover and verifier derives the same keys from those bytes and the repository's SRS.
    """
    import ezkl

    files = CircuitFiles(directory, directory / "none")
    files.onnx.write_bytes(circuit.onnx_bytes())
    run_args = ezkl.PyRunArgs()
    for key, value in circuit._run_args().items():
        setattr(run_args, key, value)
    calibration = files.directory / "calibration.json"
    calibration.write_text(json.dumps({"input_data": circuit.calibration_input()}))
    call_ezkl("gen_settings", str(files.onnx), str(files.settings), py_run_args=run_args)
    call_ezkl("calibrate_settings", str(calibration), str(files.onnx), str(files.settings), "resources",
              lookup_safety_margin=LOOKUP_SAFETY_MARGIN, scales=[circuit.scale])
    # Calibration sizes the softmax's exp table from one sample; fix it instead to every logit gap the graph lets
    # through (it clips them at LOGIT_SPREAD), and make room for the table.
    settings = json.loads(files.settings.read_text())
    run_args = settings["run_args"]
    low = min(int(run_args["lookup_range"][0]), -(LOGIT_SPREAD << circuit.scale))
    run_args["lookup_range"] = [low, max(int(run_args["lookup_range"][1]), 0)]
    table_rows = run_args["lookup_range"][1] - low + TABLE_RESERVED_ROWS
    run_args["logrows"] = max(int(run_args["logrows"]), math.ceil(math.log2(table_rows)))
    files.settings.write_text(json.dumps(settings, sort_keys=True))
    call_ezkl("compile_circuit", str(files.onnx), str(files.compiled), str(files.settings))
    return files


def logrows(settings: bytes) -> int:
    """The number of rows (log2) a compiled circuit's settings need."""
    return int(json.loads(settings)["run_args"]["logrows"])


def prepare(settings: bytes, compiled: bytes, srs: Path, srs_sha256: str) -> CircuitFiles:
    """Keys for a compiled circuit (``settings`` and ``compiled`` bytes) and ``srs``, made once and cached.

    The cache key is the compiled circuit's sha256 and the SRS's. Processes that need the same keys at once (agents
    starting their first proved round together) take turns, so the keys are made once; a partly written entry is
    never used (it is made in a staging directory and renamed into place when complete).
    """
    import shutil
    import tempfile
    from importlib.metadata import version

    from filelock import FileLock

    digest = hashlib.sha256(compiled).hexdigest()
    target = cache_root() / f"{digest[:24]}-{srs_sha256[:12]}-ezkl{version('ezkl')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):
        if (target / "pk.key").is_file():
            return CircuitFiles(target, srs)
        with open(srs, "rb") as handle:
            available = int.from_bytes(handle.read(4), "little")
        if logrows(settings) > available:
            raise ProofError(f"the circuit needs 2^{logrows(settings)} rows, but the SRS supports 2^{available}",
                             "re-create the repository with a larger SRS (--srs)")
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        try:
            files = CircuitFiles(staging, srs)
            files.settings.write_bytes(settings)
            files.compiled.write_bytes(compiled)
            call_ezkl("setup", str(files.compiled), str(files.vk), str(files.pk), str(srs))
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return CircuitFiles(target, srs)
