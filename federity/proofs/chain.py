"""Proved training: SGD on the head, run step by step in the circuit's own fixed point, and the hash chain.

Every step is executed by ezkl's witness generator, so the weights each step hands to the next are exactly the
values the circuit computes, and the Poseidon hash of one step's output *is* the hash of the next step's input.
The chain ``H(w_0), (H(batch_0), H(w_1)), …, (H(batch_{T-1}), H(w_T))`` is committed to (sha256 over the chain,
the repository, the base commit and the author) before any step is proved; the audited steps are then drawn
from that commitment and the round's nonce (commit-then-audit, Fiat-Shamir).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from federity.errors import DataError, ProofError
from federity.proofs.circuit import CircuitFiles, StepCircuit, call_ezkl, quantize

SALT_BOUND = 2**12


@dataclass
class ProvedTraining:
    """The outcome of proved training: final head weights, the hash chain, and each step's private input."""

    weight: np.ndarray  # [features, classes], on the fixed-point grid
    bias: np.ndarray
    weight_hashes: list[list[str]]  # H(W_t), H(b_t) for t = 0..T
    batch_hashes: list[str]  # H(batch_t) for t = 0..T-1
    step_inputs: list[list[list[float]]] = field(repr=False)  # private: never leaves the site

    @property
    def steps(self) -> int:
        return len(self.batch_hashes)


def batch_salt(secret: bytes, circuit: StepCircuit) -> np.ndarray:
    """The contributor's salt row: secret (derived from the wallet), fixed, so a reused batch hashes the same."""
    values = np.frombuffer(hashlib.shake_256(b"federity-batch-salt" + secret).digest(4 * (circuit.features +
                                                                                          circuit.classes)),
                           dtype="<u4").astype(np.int64)
    return ((values % (2 * SALT_BOUND)) - SALT_BOUND) / 2.0**circuit.scale


def _hashes(witness: dict[str, Any], key: str) -> list[str]:
    return list(witness[key]["poseidon_hash"])


def _run_step(files: CircuitFiles, inputs: list[list[float]], workdir: Path) -> dict[str, Any]:
    source, target = workdir / "input.json", workdir / "witness.json"
    source.write_text(json.dumps({"input_data": inputs}))
    call_ezkl("gen_witness", str(source), str(files.compiled), str(target))
    witness = json.loads(target.read_text())
    low, high = files.lookup_range()
    if min(witness["min_lookup_inputs"], 0) < low or witness["max_lookup_inputs"] > high:
        raise DataError("a proved training step left the range the circuit's lookup tables cover",
                        "standardise the features (mean 0, standard deviation 1) or lower lr in params.yaml")
    return witness


def train(circuit: StepCircuit, files: CircuitFiles, weight: np.ndarray, bias: np.ndarray, features: np.ndarray,
          labels: np.ndarray, *, epochs: int, seed: int, salt: np.ndarray,
          progress: Callable[[str], None] | None = None, skip_repeated_batches: bool = True) -> ProvedTraining:
    """Run ``epochs`` of mini-batch SGD on the head in the circuit's fixed point.

    ``weight`` is ``[features, classes]``. Each epoch visits the samples in a fresh order drawn from ``seed``;
    the last ``n mod batch`` samples of an epoch's order are left out (the circuit's batch size is fixed). A batch
    whose quantised rows equal an earlier step's is skipped: it would hash the same, and a verifier refuses a chain
    that uses a batch twice (duplicate rows in the data, or frozen layers that map several samples to the same
    head inputs, make such batches honestly). ``skip_repeated_batches=False`` keeps them, making the chain a
    verifier refuses (what a prover that replays batches submits).
    """
    n = len(labels)
    if n < circuit.batch:
        raise DataError(f"proved training needs at least batch_size={circuit.batch} samples; the data has {n}",
                        "use more data, or ask the owner for a smaller batch_size in params.yaml")
    rng = np.random.default_rng(seed)
    weight, bias = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
    weight_hashes: list[list[str]] = []
    batch_hashes: list[str] = []
    step_inputs: list[list[list[float]]] = []
    used_batches: set[tuple[float, ...]] = set()
    total = epochs * (n // circuit.batch)
    with tempfile.TemporaryDirectory(prefix="federity-witness-") as tmp:
        for _ in range(epochs):
            order = rng.permutation(n)
            for start in range(0, n - circuit.batch + 1, circuit.batch):
                rows = order[start:start + circuit.batch]
                inputs = circuit.input_values(weight, bias, features[rows], labels[rows], salt)
                batch = tuple(inputs[2])
                if skip_repeated_batches and batch in used_batches:
                    continue
                used_batches.add(batch)
                witness = _run_step(files, inputs, Path(tmp))
                hashes_in, hashes_out = _hashes(witness, "processed_inputs"), _hashes(witness, "processed_outputs")
                if weight_hashes and weight_hashes[-1] != hashes_in[:2]:
                    raise ProofError("the circuit's output did not re-enter it unchanged (broken hash chain)",
                                     "report this with the ezkl version: proved training cannot continue")
                if not weight_hashes:
                    weight_hashes.append(hashes_in[:2])
                batch_hashes.append(hashes_in[2])
                weight_hashes.append(hashes_out)
                step_inputs.append(inputs)
                outputs = witness["pretty_elements"]["rescaled_outputs"]
                weight = np.array(outputs[0], np.float64).reshape(circuit.features, circuit.classes)
                bias = np.array(outputs[1], np.float64)
                if progress and len(batch_hashes) % 10 == 0:
                    progress(f"proved training: step {len(batch_hashes)} of at most {total}")
    if progress:
        progress(f"proved training: {len(batch_hashes)} steps ({total - len(batch_hashes)} repeated batches "
                 "skipped)")
    return ProvedTraining(weight, bias, weight_hashes, batch_hashes, step_inputs)


def commitment(repository: str, base: str, author: str, circuit: StepCircuit, weight_hashes: list[list[str]],
               batch_hashes: list[str]) -> str:
    """sha256 over everything the contributor commits to before the audited steps are drawn."""
    payload = {"repository": repository, "base": base, "author": author, "circuit": circuit.to_json(),
               "weights": weight_hashes, "batches": batch_hashes}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def challenge(commitment_hex: str, nonce: str | None, steps: int, audits: int) -> list[int]:
    """The audited step indices: ``audits`` distinct steps drawn from sha256(commitment, nonce), sorted."""
    chosen: list[int] = []
    counter = 0
    while len(chosen) < min(audits, steps):
        digest = hashlib.sha256(f"{commitment_hex}:{nonce or ''}:{counter}".encode()).digest()
        index = int.from_bytes(digest[:8], "big") % steps
        if index not in chosen:
            chosen.append(index)
        counter += 1
    return sorted(chosen)


def weights_hash(circuit: StepCircuit, weight: np.ndarray, bias: np.ndarray) -> list[str]:
    """Poseidon hashes of the head's weight ``[features, classes]`` and bias as the circuit sees them."""
    import ezkl

    def felts(values: np.ndarray) -> list[str]:
        return [ezkl.float_to_felt(float(v), circuit.scale, ezkl.PyInputType.F64) for v in np.ravel(values)]

    return [call_ezkl("poseidon_hash", felts(quantize(weight, circuit.scale)))[0],
            call_ezkl("poseidon_hash", felts(quantize(bias, circuit.scale)))[0]]
