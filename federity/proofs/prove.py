"""Proving at the edge: proved training of the head, the commitment, the audited steps' ezkl proofs.

The artifacts go into the update's ``model/`` directory (stored by DVC): ``proof/chain.json`` (the statement's
public part: circuit, head, base, author, nonce, the hash chain, the commitment, the audited steps and their
proofs' sha256) and ``proof/step-<i>.json`` (ezkl's proof of step ``i``). The update commit signs the sha256 of
``chain.json`` (``Federity-Proof-Sha256``).

Proving takes bytes and tensors (the base weights, the head's input features, the stored circuit), never a
repository: :func:`federity.repo.proof_inputs.prove_training` gathers them from one.
"""

from __future__ import annotations

import hashlib
import json
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from federity.proofs import chain as proof_chain
from federity.proofs import srs as proof_srs
from federity.proofs.circuit import call_ezkl
from federity.proofs.policy import ProvedHead, StoredCircuit, circuit_files, circuit_weight, step_circuit

if TYPE_CHECKING:
    from federity.identity import Wallet
    from federity.training import TrainingParams

CHAIN_SCHEMA = 1
PROOF_DIR = "proof"
CHAIN_FILE = f"{PROOF_DIR}/chain.json"


def step_file(index: int) -> str:
    """Where the proof of step ``index`` is stored, relative to ``model/``."""
    return f"{PROOF_DIR}/step-{index}.json"


def compact_proof(ezkl_proof: dict[str, Any]) -> bytes:
    """The stored form of an ezkl proof: its public instances and proof bytes (hex), nothing else."""
    return (json.dumps({"ezkl": ezkl_proof["version"], "instances": ezkl_proof["instances"],
                        "proof": bytes(ezkl_proof["proof"]).hex()}, sort_keys=True) + "\n").encode()


def ezkl_proof(stored: bytes) -> dict[str, Any]:
    """The proof file ezkl's verifier reads, rebuilt from the stored form (:func:`compact_proof`)."""
    data = json.loads(stored)
    return {"protocol": None, "split": None, "version": data["ezkl"], "instances": data["instances"],
            "proof": list(bytes.fromhex(data["proof"]))}


@dataclass
class ProvedUpdate:
    """What proving produced: the new weights, the files to store under ``model/`` and the update.json summary."""

    tensors: dict[str, np.ndarray]
    files: dict[str, bytes]
    summary: dict[str, Any]


def prove_head(policy: dict[str, Any], stored: StoredCircuit, *, repository: str, base: str, wallet: Wallet,
               head: ProvedHead, base_tensors: dict[str, np.ndarray], features: np.ndarray, labels: np.ndarray,
               params: TrainingParams, nonce: str | None,
               progress: Callable[[str], None] | None = None) -> ProvedUpdate:
    """Train the head (``head``: its weight and bias tensor names in ``base_tensors`` and layout; the weights of commit
    ``base`` of repository ``repository``) on ``features`` (the data as the head sees it) and ``labels`` in the
    circuit that ``policy`` (``federity.yaml``'s ``proofs``) and ``stored`` fix; commit to the chain and prove the
    audited steps. The other tensors are left exactly as in ``base_tensors``."""
    say = progress or (lambda _message: None)
    weight_name, bias_name, layout = head
    circuit = step_circuit(policy, params, circuit_weight(base_tensors[weight_name], layout))
    say(f"preparing the circuit's keys ({circuit.parameters} parameters, batch {circuit.batch}); cached after the "
        "first time")
    files = circuit_files(policy, stored)
    started = time.perf_counter()
    trained = proof_chain.train(circuit, files, circuit_weight(base_tensors[weight_name], layout),
                                base_tensors[bias_name], features,
                                labels, epochs=params.epochs, seed=params.seed,
                                salt=proof_chain.batch_salt(bytes(wallet.keypair.secret()), circuit),
                                progress=say)
    training_seconds = time.perf_counter() - started
    commitment = proof_chain.commitment(repository, base, wallet.pubkey, circuit, trained.weight_hashes,
                                        trained.batch_hashes)
    audited = proof_chain.challenge(commitment, nonce, trained.steps, int(policy["audits"]))
    proofs: dict[str, bytes] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="federity-prove-") as tmp:
        for n, index in enumerate(audited, 1):
            say(f"proving audited step {index} ({n}/{len(audited)})")
            source, witness, proof = (Path(tmp) / name for name in ("input.json", "witness.json", "proof.json"))
            source.write_text(json.dumps({"input_data": trained.step_inputs[index]}))
            call_ezkl("gen_witness", str(source), str(files.compiled), str(witness))
            call_ezkl("prove", str(witness), str(files.compiled), str(files.pk), str(proof), str(files.srs))
            proofs[step_file(index)] = compact_proof(json.loads(proof.read_text()))
    prove_seconds = time.perf_counter() - started
    record = {
        "schema": CHAIN_SCHEMA, "circuit": circuit.to_json(),
        "compiled_circuit_sha256": policy["circuit"]["compiled_sha256"],
        "head": {"weight": weight_name, "bias": bias_name}, "repository": repository, "base": base,
        "author": wallet.pubkey, "nonce": nonce, "weights": trained.weight_hashes, "batches": trained.batch_hashes,
        "commitment": commitment, "audited": audited,
        "proofs": {str(i): hashlib.sha256(proofs[step_file(i)]).hexdigest() for i in audited},
        "srs_sha256": policy["srs"]["sha256"],
    }
    chain_bytes = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
    tensors = dict(base_tensors)
    tensors[weight_name] = circuit_weight(trained.weight, layout).astype(base_tensors[weight_name].dtype)
    tensors[bias_name] = trained.bias.astype(base_tensors[bias_name].dtype)
    summary = {
        "sha256": hashlib.sha256(chain_bytes).hexdigest(), "steps": trained.steps, "audited": audited,
        "parameters_proved": circuit.parameters, "head": [weight_name, bias_name],
        "lr": circuit.lr, "effective_lr": circuit.effective_lr,
        "training_seconds": round(training_seconds, 3), "prove_seconds": round(prove_seconds, 3),
        "prove_seconds_per_step": round(prove_seconds / max(len(audited), 1), 3),
        "proof_bytes": sum(len(json.loads(p)["proof"]) // 2 for p in proofs.values()),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "srs": proof_srs.describe(policy["srs"]),
    }
    return ProvedUpdate(tensors, {CHAIN_FILE: chain_bytes, **proofs}, summary)


def describe(summary: dict[str, Any]) -> dict[str, Any]:
    """What an update's proof covers and does not, for ``federity show`` (from its update.json summary)."""
    weight, bias = summary["head"]
    return {
        **summary,
        "covers": (f"{len(summary['audited'])} of {summary['steps']} SGD steps, drawn after the contributor "
                   f"committed to all of them, each proved to map the committed weights of {weight} and {bias} "
                   f"({summary['parameters_proved']} parameters) and a committed, salted batch to the next "
                   "committed weights; the chain starts at the base commit's weights and ends at the submitted "
                   f"ones. The step is SGD in the circuit's fixed point, with logit gaps clipped at -12 and lr "
                   f"{summary['effective_lr']:g} (params.yaml: {summary['lr']:g}; lr/batch is a constant on its "
                   "grid)"),
        "does_not_cover": ("the steps that were not audited; that the batches are real or representative data "
                           "(only that the same batch was not used twice by this contributor); the layers before "
                           "the head, which must be unchanged; the data contract, which the contributor's machine "
                           "checks"),
    }
