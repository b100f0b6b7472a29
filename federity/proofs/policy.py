"""A repository's proof policy, chosen at ``init``: how many steps are audited, the fixed-point scale, the SRS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from federity.errors import ConfigError
from federity.proofs import srs as proof_srs

if TYPE_CHECKING:
    from federity.training import TrainingParams


@dataclass(frozen=True)
class ProofPolicy:
    """``audits`` proved steps per update; weights and data at ``2^-scale`` resolution; an imported SRS
    (``srs_file`` with its published ``srs_sha256``) or, by default, one generated offline (insecure)."""

    audits: int = 2
    scale: int = 10
    srs_file: Path | None = None
    srs_sha256: str | None = None

    def setup(self, tensors: dict[str, np.ndarray], params: TrainingParams, model_dir: Path) -> dict[str, Any]:
        """Check the policy against the model and parameters, put the SRS in ``model_dir``, and return the
        ``proofs`` section of ``federity.yaml``."""
        from federity.proofs.circuit import circuit_logrows
        from federity.proofs.prove import step_circuit

        if self.audits < 1:
            raise ConfigError(f"--proof-audits must be at least 1, not {self.audits}", "pass 1 or more")
        if not 6 <= self.scale <= 16:
            raise ConfigError(f"--proof-scale must be between 6 and 16, not {self.scale}",
                              "10 (1/1024 resolution) suits standardised features")
        if (self.srs_file is None) != (self.srs_sha256 is None):
            raise ConfigError("--srs and --srs-sha256 go together", "pass the SRS file and its published sha256")
        section: dict[str, Any] = {"audits": self.audits, "scale": self.scale}
        weight = list(tensors.values())[-2]
        circuit = step_circuit(section, params, weight)
        logrows = circuit_logrows(circuit)
        target = model_dir / proof_srs.SRS_FILE
        if self.srs_file is not None and self.srs_sha256 is not None:
            section["srs"] = proof_srs.import_file(self.srs_file, self.srs_sha256, logrows, target)
        else:
            section["srs"] = proof_srs.generate(logrows, target)
        return section
