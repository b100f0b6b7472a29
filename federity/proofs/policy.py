"""A repository's proof policy, chosen at ``init``: how many steps are audited, the fixed-point scale, the SRS,
and the compiled circuit every prover and verifier of the repository uses."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from federity.errors import ConfigError, ProofError
from federity.proofs import srs as proof_srs
from federity.proofs.circuit import CircuitFiles, StepCircuit, compile_step, logrows, prepare

if TYPE_CHECKING:
    from federity.training import TrainingParams

SETTINGS_FILE = "proof-settings.json"
COMPILED_FILE = "proof-circuit.ezkl"


class ProvedHead(NamedTuple):
    """The layer whose training is proved: its weight and bias tensor names, and how the weight is laid out —
    ``out_in`` (``[classes, features]``, PyTorch's ``Linear.weight``) or ``in_out`` (``[features, classes]``,
    Keras' ``Dense.kernel``). Fixed at ``init`` in ``federity.yaml`` (``proofs.head``), so a prover cannot choose
    another layer or a transposed reading of it."""

    weight: str
    bias: str
    layout: Literal["out_in", "in_out"]

    @classmethod
    def of(cls, policy: dict[str, Any]) -> ProvedHead | None:
        """The head ``policy`` (``federity.yaml``'s ``proofs``) fixes; ``None`` for a repository made before heads
        were recorded (its head is read from each proof, in the ``out_in`` layout)."""
        head = policy.get("head")
        return None if head is None else cls(head["weight"], head["bias"], head["layout"])

    def to_json(self) -> dict[str, str]:
        return self._asdict()


def circuit_weight(weight: np.ndarray, layout: str) -> np.ndarray:
    """A stored head weight in ``layout`` as the circuit takes it, ``[features, classes]``; and, being its own
    inverse, the circuit's weight back in ``layout``."""
    return weight.T if layout == "out_in" else weight


@dataclass(frozen=True)
class ProofPolicy:
    """``audits`` proved steps per update; weights and data at ``2^-scale`` resolution; an imported SRS
    (``srs_file`` with its published ``srs_sha256``) or, by default, one generated offline (insecure)."""

    audits: int = 2
    scale: int = 10
    srs_file: Path | None = None
    srs_sha256: str | None = None

    def setup(self, tensors: dict[str, np.ndarray], head: ProvedHead, params: TrainingParams,
              model_dir: Path) -> dict[str, Any]:
        """Check the policy against the model (its ``tensors`` and proved ``head``) and parameters, compile the
        circuit, put it and the SRS in ``model_dir``, and return the ``proofs`` section of ``federity.yaml``."""
        if self.audits < 1:
            raise ConfigError(f"--proof-audits must be at least 1, not {self.audits}", "pass 1 or more")
        if not 6 <= self.scale <= 16:
            raise ConfigError(f"--proof-scale must be between 6 and 16, not {self.scale}",
                              "10 (1/1024 resolution) suits standardised features")
        if (self.srs_file is None) != (self.srs_sha256 is None):
            raise ConfigError("--srs and --srs-sha256 go together", "pass the SRS file and its published sha256")
        require_plain_sgd(params)
        features, classes = circuit_weight(tensors[head.weight], head.layout).shape
        circuit = StepCircuit(features, classes, int(params.batch_size), float(params.lr), self.scale)
        with tempfile.TemporaryDirectory(prefix="federity-compile-") as tmp:
            files = compile_step(circuit, Path(tmp))
            settings, compiled = files.settings.read_bytes(), files.compiled.read_bytes()
        (model_dir / SETTINGS_FILE).write_bytes(settings)
        (model_dir / COMPILED_FILE).write_bytes(compiled)
        target = model_dir / proof_srs.SRS_FILE
        if self.srs_file is not None and self.srs_sha256 is not None:
            srs = proof_srs.import_file(self.srs_file, self.srs_sha256, logrows(settings), target)
        else:
            srs = proof_srs.generate(logrows(settings), target)
        return {"audits": self.audits, "scale": self.scale, "srs": srs, "head": head.to_json(),
                "circuit": {**circuit.to_json(), "settings_sha256": hashlib.sha256(settings).hexdigest(),
                            "compiled_sha256": hashlib.sha256(compiled).hexdigest()}}


def require_plain_sgd(params: TrainingParams) -> None:
    """Raise unless ``params`` ask for what the circuit proves: plain SGD steps on cross-entropy, without FedProx's
    proximal term (``mu``)."""
    if params.optimizer != "sgd" or params.momentum or params.weight_decay:
        raise ConfigError("proved training is plain SGD, but params.yaml asks for "
                          f"optimizer={params.optimizer}, momentum={params.momentum}, "
                          f"weight_decay={params.weight_decay}",
                          "set optimizer: sgd, momentum: 0 and weight_decay: 0 in params.yaml")
    if params.mu:
        raise ConfigError(f"params.yaml asks for FedProx with mu={params.mu}, but the proof circuit proves plain SGD "
                          "steps and does not include FedProx's proximal term",
                          "set mu: 0 in params.yaml, or use a repository without proofs")


def step_circuit(policy: dict[str, Any], params: TrainingParams, weight: np.ndarray) -> StepCircuit:
    """The repository's circuit, after checking that ``params`` and the head ``weight`` (as the circuit takes
    it, ``[features, classes]``: :func:`circuit_weight`) still fit it."""
    require_plain_sgd(params)
    circuit = StepCircuit.from_json(policy["circuit"])
    if (params.lr, params.batch_size) != (circuit.lr, circuit.batch):
        raise ConfigError(f"params.yaml asks for lr={params.lr}, batch_size={params.batch_size}, but the "
                          f"repository's circuit proves lr={circuit.lr}, batch_size={circuit.batch}",
                          "restore those two values in params.yaml: a new circuit needs a new repository")
    if tuple(weight.shape) != (circuit.features, circuit.classes):
        raise ConfigError(f"the model's head is {tuple(weight.shape)} (features, classes), the circuit's "
                          f"{(circuit.features, circuit.classes)}", "the model does not match the repository")
    return circuit


@dataclass(frozen=True)
class StoredCircuit:
    """The circuit files a repository stores under ``model/`` as of ``commit``: the settings and compiled circuit
    (:data:`SETTINGS_FILE`, :data:`COMPILED_FILE`) as bytes, and ``read_srs``, which returns the stored SRS
    (called only when the cache holds no copy of it: an SRS is megabytes)."""

    commit: str
    settings: bytes
    compiled: bytes
    read_srs: Callable[[], bytes]


def circuit_files(policy: dict[str, Any], stored: StoredCircuit) -> CircuitFiles:
    """The repository's compiled circuit (``stored``, checked against the sha256s ``policy`` records) and its keys
    for the repository's SRS, from the cache or made now."""
    recorded = policy["circuit"]
    if (hashlib.sha256(stored.settings).hexdigest(), hashlib.sha256(stored.compiled).hexdigest()) != (
            recorded["settings_sha256"], recorded["compiled_sha256"]):
        raise ProofError(f"the compiled circuit at {stored.commit[:12]} does not match the sha256 in federity.yaml",
                         "restore model/proof-circuit.ezkl and model/proof-settings.json from the genesis commit")
    srs = policy["srs"]
    return prepare(stored.settings, stored.compiled, proof_srs.local_copy(srs, stored.read_srs, stored.commit),
                   srs["sha256"])
