"""Verifying an update's proof of training, offline, from the repository alone.

Every check rebuilds what it compares against from the base commit (circuit, weights hash, SRS, keys) and never
trusts a value the update supplies about itself. Each failure is one sentence that says what does not hold.
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
from federity.proofs.policy import circuit_files, step_circuit
from federity.proofs.prove import CHAIN_FILE, ezkl_proof, step_file
from federity.records import parse_proof_chain

if TYPE_CHECKING:
    from federity.repo import Repository
    from federity.repo.commits import CommitRecord


@dataclass
class ProofCheck:
    """The outcome of verifying one update's proof."""

    problems: list[str] = field(default_factory=list)
    verify_seconds: float = 0.0
    audited: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _chain_bytes(repo: Repository, commit: str) -> bytes | None:
    """An update's ``proof/chain.json``, or ``None`` when it carries none."""
    return repo.store.read(commit, CHAIN_FILE) if CHAIN_FILE in repo.store.files(commit) else None


def check_update_proof(repo: Repository, commit: CommitRecord, record: dict[str, Any]) -> ProofCheck:
    """Verify the proof of training of update ``commit`` (whose ``update.json`` is ``record``)."""
    try:
        return _check(repo, commit, record)
    except FederityError as exc:
        return ProofCheck([f"proof: {exc.message}"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError):
        return ProofCheck(["proof: proof/chain.json is malformed"])


def _check(repo: Repository, commit: CommitRecord, record: dict[str, Any]) -> ProofCheck:
    from federity.repo.train import training_params
    from federity.repo.updates import list_updates
    from federity.weights import read_tensors

    base = commit.parents[0]
    config = repo.config(base)
    policy = config.proofs
    if policy is None:
        return ProofCheck()
    meta = commit.meta
    assert meta is not None
    chain_bytes = _chain_bytes(repo, commit.commit)
    if chain_bytes is None or meta.proof_sha256 is None:
        return ProofCheck(["proof: the update carries no proof of training, and this repository requires one"])
    if hashlib.sha256(chain_bytes).hexdigest() != meta.proof_sha256:
        return ProofCheck(["proof: proof/chain.json does not match the sha256 the update's signature covers"])
    chain = parse_proof_chain(chain_bytes, f"proof/chain.json of update {commit.commit[:12]}")

    params = training_params(repo, base)
    base_tensors = read_tensors(repo.store.read(base), f"the weights of {base[:12]}")
    head = chain.get("head") or {}
    weight_name, bias_name = head.get("weight"), head.get("bias")
    if weight_name not in base_tensors or bias_name not in base_tensors:
        return ProofCheck(["proof: it names a head that is not in the model"])
    circuit = step_circuit(policy, params, base_tensors[weight_name])
    if (StepCircuit.from_json(chain["circuit"]), chain.get("compiled_circuit_sha256")) != (
            circuit, policy["circuit"]["compiled_sha256"]):
        return ProofCheck(["proof: it was made for another circuit than the one the base commit's model and "
                           "params.yaml fix"])
    if (chain.get("repository"), chain.get("base"), chain.get("author")) != (config.id, base, meta.author):
        return ProofCheck(["proof: it was made for another base commit, repository or author"])
    if chain.get("nonce") != record.get("nonce"):
        return ProofCheck(["proof: it was made for another round (its nonce is not the update's)"])
    weights, batches = chain["weights"], chain["batches"]
    if not batches or len(weights) != len(batches) + 1:
        return ProofCheck(["proof: the hash chain is empty or malformed"])
    if proof_chain.weights_hash(circuit, base_tensors[weight_name].T, base_tensors[bias_name]) != weights[0]:
        return ProofCheck(["proof: the chain does not start at the base commit's weights"])

    tensors = read_tensors(repo.store.read(commit.commit), f"the weights of update {commit.commit[:12]}")
    frozen = [n for n in base_tensors if n not in (weight_name, bias_name)
              and not np.array_equal(tensors.get(n), base_tensors[n])]
    if frozen:
        return ProofCheck([f"proof: tensors outside the proved head changed: {', '.join(frozen)}"])
    head_w, head_b = tensors[weight_name].T.astype(np.float64), tensors[bias_name].astype(np.float64)
    on_grid = np.array_equal(quantize(head_w, circuit.scale), head_w) and np.array_equal(
        quantize(head_b, circuit.scale), head_b)
    if not on_grid or proof_chain.weights_hash(circuit, head_w, head_b) != weights[-1]:
        return ProofCheck(["proof: the submitted weights are not the end of the proved chain (changed after "
                           "proving)"])

    commitment = proof_chain.commitment(config.id, base, meta.author, circuit, weights, batches)
    if commitment != chain.get("commitment"):
        return ProofCheck(["proof: the commitment does not match the hash chain"])
    audited = proof_chain.challenge(commitment, record.get("nonce"), len(batches), int(policy["audits"]))
    if chain.get("audited") != audited:
        return ProofCheck([f"proof: it audits steps {chain.get('audited')}, but the challenge draws {audited}"])
    check = _verify_steps(repo, base, commit.commit, chain, policy, audited)
    if check.ok and len(set(batches)) != len(batches):
        check.problems.append("proof: a batch is used twice in the chain (reused batch)")
    if check.ok:
        earlier = _earlier_batches(repo, commit, list_updates(repo))
        reused = earlier.keys() & set(batches)
        if reused:
            check.problems.append(f"proof: a batch was already used by update {earlier[min(reused)][:12]} "
                                  "(reused batch)")
    return check


def _earlier_batches(repo: Repository, commit: CommitRecord, updates: list[Any]) -> dict[str, str]:
    """Batch hashes committed by the same author's earlier updates → the update that committed them."""
    seen: dict[str, str] = {}
    for other in updates:
        if other.id == commit.commit or other.author != commit.meta.author or other.round > commit.meta.round:
            continue
        if other.round == commit.meta.round and other.id > commit.commit:
            continue
        other_chain = _chain_bytes(repo, other.id)
        for batch in json.loads(other_chain)["batches"] if other_chain else []:
            seen.setdefault(batch, other.id)
    return seen


def _verify_steps(repo: Repository, base: str, update: str, chain: dict[str, Any], policy: dict[str, Any],
                  audited: list[int]) -> ProofCheck:
    files = circuit_files(repo, base, policy)
    weights, batches = chain["weights"], chain["batches"]
    elapsed = 0.0
    with tempfile.TemporaryDirectory(prefix="federity-verify-") as tmp:
        for index in audited:
            data = repo.store.read(update, step_file(index))
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
