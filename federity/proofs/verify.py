"""Verifying an update's proof of training, offline, from the repository alone.

Every check rebuilds what it compares against from the base commit (circuit, weights hash, SRS, keys) and never
trusts a value the update supplies about itself. Each failure is one sentence that says what does not hold.
Verification takes bytes and tensors (:class:`ProofInputs`), never a repository:
:func:`federity.repo.proof_inputs.check_update_proof` gathers them from one.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from federity.errors import FederityError
from federity.proofs import chain as proof_chain
from federity.proofs.circuit import StepCircuit, call_ezkl, quantize
from federity.proofs.policy import ProvedHead, StoredCircuit, circuit_files, circuit_weight, step_circuit
from federity.proofs.prove import ezkl_proof
from federity.records import parse_proof_chain

if TYPE_CHECKING:
    from federity.training import TrainingParams

Tensors = dict[str, np.ndarray]


@dataclass
class ProofCheck:
    """The outcome of verifying one update's proof."""

    problems: list[str] = field(default_factory=list)
    verify_seconds: float = 0.0
    audited: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ProofInputs:
    """Everything verifying one update's proof reads, as bytes and tensors (gathered from a repository by
    :func:`federity.repo.proof_inputs.update_proof_inputs`).

    ``policy`` is the ``proofs`` section of the base commit's ``federity.yaml`` and ``repository`` its id;
    ``author`` and ``proof_sha256`` come from the update's signed metadata, ``nonce`` from its ``update.json``;
    ``chain`` is its ``proof/chain.json`` (``None``: it stores none) and ``steps`` its ``proof/step-<i>.json``
    files by ``i``; ``params`` is ``params.yaml`` at the base; ``circuit`` the circuit files the base stores.
    """

    policy: dict[str, Any]
    repository: str
    base: str
    update: str
    author: str
    nonce: Any
    proof_sha256: str | None
    chain: bytes | None
    params: TrainingParams | None = None
    base_tensors: Tensors = field(default_factory=dict)
    tensors: Tensors = field(default_factory=dict)
    circuit: StoredCircuit | None = None
    steps: dict[int, bytes] = field(default_factory=dict)


def signed_chain(chain: bytes | None, proof_sha256: str | None) -> str | None:
    """The problem with an update's ``proof/chain.json`` before anything else is read: missing, or not the one its
    signature covers; ``None`` when it is."""
    if chain is None or proof_sha256 is None:
        return "proof: the update carries no proof of training, and this repository requires one"
    if hashlib.sha256(chain).hexdigest() != proof_sha256:
        return "proof: proof/chain.json does not match the sha256 the update's signature covers"
    return None


def verify_proof(inputs: ProofInputs) -> ProofCheck:
    """Verify the proof of training ``inputs`` describe (every check but batch reuse across updates:
    :func:`reused_batch`). Malformed input is a problem, never an exception."""
    try:
        return _check(inputs)
    except FederityError as exc:
        return ProofCheck([f"proof: {exc.message}"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError):
        return ProofCheck(["proof: proof/chain.json is malformed"])


def _check(inputs: ProofInputs) -> ProofCheck:
    problem = signed_chain(inputs.chain, inputs.proof_sha256)
    if problem is not None:
        return ProofCheck([problem])
    assert inputs.chain is not None and inputs.params is not None and inputs.circuit is not None
    policy, base, base_tensors = inputs.policy, inputs.base, inputs.base_tensors
    chain = parse_proof_chain(inputs.chain, "proof/chain.json")
    head = chain.get("head") or {}
    weight_name, bias_name = head.get("weight"), head.get("bias")
    pinned = ProvedHead.of(policy)
    if pinned is not None and (weight_name, bias_name) != (pinned.weight, pinned.bias):
        return ProofCheck([f"proof: it proves {weight_name!r} and {bias_name!r}, but the repository proves "
                           f"{pinned.weight!r} and {pinned.bias!r}"])
    if weight_name not in base_tensors or bias_name not in base_tensors:
        return ProofCheck(["proof: it names a head that is not in the model"])
    layout = pinned.layout if pinned is not None else "out_in"
    circuit = step_circuit(policy, inputs.params, circuit_weight(base_tensors[weight_name], layout))
    if (StepCircuit.from_json(chain["circuit"]), chain.get("compiled_circuit_sha256")) != (
            circuit, policy["circuit"]["compiled_sha256"]):
        return ProofCheck(["proof: it was made for another circuit than the one the base commit's model and "
                           "params.yaml fix"])
    if (chain.get("repository"), chain.get("base"), chain.get("author")) != (inputs.repository, base, inputs.author):
        return ProofCheck(["proof: it was made for another base commit, repository or author"])
    if chain.get("nonce") != inputs.nonce:
        return ProofCheck(["proof: it was made for another round (its nonce is not the update's)"])
    weights, batches = chain["weights"], chain["batches"]
    if not batches or len(weights) != len(batches) + 1:
        return ProofCheck(["proof: the hash chain is empty or malformed"])
    if proof_chain.weights_hash(circuit, circuit_weight(base_tensors[weight_name], layout),
                                base_tensors[bias_name]) != weights[0]:
        return ProofCheck(["proof: the chain does not start at the base commit's weights"])

    tensors = inputs.tensors
    frozen = [n for n in base_tensors if n not in (weight_name, bias_name)
              and not np.array_equal(tensors.get(n), base_tensors[n])]
    if frozen:
        return ProofCheck([f"proof: tensors outside the proved head changed: {', '.join(frozen)}"])
    head_w = circuit_weight(tensors[weight_name], layout).astype(np.float64)
    head_b = tensors[bias_name].astype(np.float64)
    on_grid = np.array_equal(quantize(head_w, circuit.scale), head_w) and np.array_equal(
        quantize(head_b, circuit.scale), head_b)
    if not on_grid or proof_chain.weights_hash(circuit, head_w, head_b) != weights[-1]:
        return ProofCheck(["proof: the submitted weights are not the end of the proved chain (changed after "
                           "proving)"])

    commitment = proof_chain.commitment(inputs.repository, base, inputs.author, circuit, weights, batches)
    if commitment != chain.get("commitment"):
        return ProofCheck(["proof: the commitment does not match the hash chain"])
    audited = proof_chain.challenge(commitment, inputs.nonce, len(batches), int(policy["audits"]))
    if chain.get("audited") != audited:
        return ProofCheck([f"proof: it audits steps {chain.get('audited')}, but the challenge draws {audited}"])
    check = _verify_steps(inputs.circuit, inputs.steps, chain, policy, audited)
    if check.ok and len(set(batches)) != len(batches):
        check.problems.append("proof: a batch is used twice in the chain (reused batch)")
    return check


def chain_batches(chain: bytes | None) -> list[str]:
    """The batch hashes an update's ``proof/chain.json`` commits to (none when it has no readable chain)."""
    if chain is None:
        return []
    try:
        batches = json.loads(chain)["batches"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return []
    return [b for b in batches if isinstance(b, str)] if isinstance(batches, list) else []


def reused_batch(chain: bytes, earlier: dict[str, bytes]) -> str | None:
    """The problem when ``chain`` commits to a batch that one of ``earlier`` (the same author's earlier updates'
    chains, by update id, oldest first) already committed to; ``None`` otherwise."""
    seen: dict[str, str] = {}
    for update, other in earlier.items():
        for batch in chain_batches(other):
            seen.setdefault(batch, update)
    reused = seen.keys() & set(chain_batches(chain))
    if reused:
        return f"proof: a batch was already used by update {seen[min(reused)][:12]} (reused batch)"
    return None


def _verify_steps(stored: StoredCircuit, steps: dict[int, bytes], chain: dict[str, Any], policy: dict[str, Any],
                  audited: list[int]) -> ProofCheck:
    files = circuit_files(policy, stored)
    weights, batches = chain["weights"], chain["batches"]
    elapsed = 0.0
    with tempfile.TemporaryDirectory(prefix="federity-verify-") as tmp:
        for index in audited:
            data = steps.get(index)
            if data is None:
                return ProofCheck([f"proof: the update stores no proof of step {index}"])
            if hashlib.sha256(data).hexdigest() != (chain.get("proofs") or {}).get(str(index)):
                return ProofCheck([f"proof: the proof of step {index} does not match its sha256 in the chain"])
            try:
                proof = ezkl_proof(data)
                instances = proof["instances"][0]
            except (ValueError, KeyError, IndexError, TypeError, RecursionError):
                return ProofCheck([f"proof: the proof of step {index} is not an ezkl proof"])
            if instances != [*weights[index], batches[index], *weights[index + 1]]:
                return ProofCheck([f"proof: the proof of step {index} proves a step that is not in the committed "
                                   "chain"])
            path = Path(tmp) / f"step-{index}.json"
            path.write_text(json.dumps(proof))
            started = time.perf_counter()
            try:
                valid = call_ezkl("verify", str(path), str(files.settings), str(files.vk), str(files.srs))
            except FederityError:
                valid = False
            elapsed += time.perf_counter() - started
            if not valid:
                return ProofCheck([f"proof: the proof of step {index} does not verify"], elapsed, audited)
    return ProofCheck([], elapsed, audited)
