"""What proving and verifying a proof of training read from a repository, gathered in one place.

:mod:`federity.proofs` takes bytes and tensors and never a :class:`~federity.repo.Repository`; this module reads
them (the stored circuit and SRS, ``params.yaml``, the weights, an update's proof files, the same author's earlier
updates' chains) and calls it. :func:`check_update_proof` and :func:`prove_training` are the entry points the
repository's checks and ``federity train`` use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from federity.errors import FederityError, PrivateWeightsError, ProofError
from federity.proofs.policy import COMPILED_FILE, SETTINGS_FILE, ProvedHead, StoredCircuit
from federity.proofs.prove import CHAIN_FILE, PROOF_DIR, ProvedUpdate, prove_head
from federity.proofs.verify import ProofCheck, ProofInputs, reused_batch, signed_chain, verify_proof
from federity.repo.commits import CommitRecord, read_commit
from federity.repo.params import training_params
from federity.training import build_with_tensors, get_trainer
from federity.weights import read_tensors

if TYPE_CHECKING:
    from federity.data import Dataset
    from federity.identity import Wallet
    from federity.repo import Repository
    from federity.training import TrainingParams

_STEP_FILE = re.compile(re.escape(PROOF_DIR) + r"/step-(0|[1-9][0-9]{0,8})\.json")


def stored_circuit(repo: Repository, commit: str, policy: dict[str, Any]) -> StoredCircuit:
    """The circuit files ``commit`` stores under ``model/`` (the SRS read only if the cache needs it)."""
    srs_file = policy["srs"]["file"]
    return StoredCircuit(commit, repo.store.read(commit, SETTINGS_FILE), repo.store.read(commit, COMPILED_FILE),
                         lambda: repo.store.read(commit, srs_file))


def _chain_bytes(repo: Repository, commit: str) -> bytes | None:
    """An update's ``proof/chain.json``, or ``None`` when it carries none."""
    return repo.store.read(commit, CHAIN_FILE) if CHAIN_FILE in repo.store.files(commit) else None


def update_proof_inputs(repo: Repository, commit: CommitRecord, record: dict[str, Any]) -> ProofInputs | None:
    """What verifying the proof of update ``commit`` (whose ``update.json`` is ``record``) reads; ``None`` when the
    base commit's repository requires no proofs. An update without a proof, or whose proof is not the one its
    signature covers, gets only what says so (nothing else is read)."""
    base = commit.parents[0]
    config = repo.config(base)
    policy = config.proofs
    if policy is None:
        return None
    meta = commit.meta
    if meta is None:
        raise ProofError(f"commit {commit.commit[:12]} carries no Federity metadata", "it is not an update")
    chain = _chain_bytes(repo, commit.commit)
    inputs = ProofInputs(policy=policy, repository=config.id, base=base, update=commit.commit, author=meta.author,
                         nonce=record.get("nonce"), proof_sha256=meta.proof_sha256, chain=chain)
    if signed_chain(chain, meta.proof_sha256) is not None:
        return inputs
    limit = int(policy["audits"])
    step_files = {int(m.group(1)): name for name in repo.store.files(commit.commit)
                  if (m := _STEP_FILE.fullmatch(name))}
    if len(step_files) > limit:
        raise ProofError(f"the update stores {len(step_files)} step proofs; the repository audits {limit} steps",
                         "submit only the proofs of the audited steps")
    return ProofInputs(
        policy=policy, repository=config.id, base=base, update=commit.commit, author=meta.author,
        nonce=record.get("nonce"), proof_sha256=meta.proof_sha256, chain=chain,
        params=training_params(repo, base),
        base_tensors=read_tensors(repo.store.read(base), f"the weights of {base[:12]}"),
        tensors=read_tensors(repo.store.read(commit.commit), f"the weights of update {commit.commit[:12]}"),
        circuit=stored_circuit(repo, base, policy),
        steps={index: repo.store.read(commit.commit, name) for index, name in sorted(step_files.items())},
    )


def earlier_chains(repo: Repository, commit: CommitRecord, updates: Iterable[str]) -> dict[str, bytes]:
    """The proof chains of the same author's earlier updates (earlier round, or same round and smaller id), oldest
    first, among ``updates`` (commit ids of updates whose signatures verify)."""
    assert commit.meta is not None
    key = (commit.meta.round, commit.commit)
    earlier: list[tuple[tuple[int, str], str]] = []
    for other in dict.fromkeys(updates):
        meta = read_commit(repo, other).meta
        if (other != commit.commit and meta is not None and meta.kind == "update"
                and meta.author == commit.meta.author and (meta.round, other) < key):
            earlier.append(((meta.round, other), other))
    chains = {}
    for _, other in sorted(earlier):
        chain = _chain_bytes(repo, other)
        if chain is not None:
            chains[other] = chain
    return chains


def check_update_proof(repo: Repository, commit: CommitRecord, record: dict[str, Any],
                       updates: Iterable[str]) -> ProofCheck:
    """Verify the proof of training of update ``commit`` (whose ``update.json`` is ``record``); a batch it shares
    with one of the same author's earlier updates among ``updates`` (commit ids of updates whose signatures
    verify: :func:`federity.repo.checks.valid_updates`, so an unsigned branch cannot make a batch look reused) is a
    reused batch."""
    try:
        inputs = update_proof_inputs(repo, commit, record)
        if inputs is None:
            return ProofCheck()
        check = verify_proof(inputs)
        if check.ok and inputs.chain is not None:
            problem = reused_batch(inputs.chain, earlier_chains(repo, commit, updates))
            if problem is not None:
                check.problems.append(problem)
        return check
    except PrivateWeightsError:  # not this proof's fault: the caller says what it could not check
        raise
    except FederityError as exc:
        return ProofCheck([f"proof: {exc.message}"])
    except (KeyError, TypeError, ValueError):
        return ProofCheck(["proof: proof/chain.json is malformed"])


def prove_training(repo: Repository, wallet: Wallet, base: str, base_tensors: dict[str, np.ndarray],
                   data: Dataset, params: TrainingParams, nonce: str | None,
                   progress: Callable[[str], None] | None = None) -> ProvedUpdate:
    """Train the head of ``base``'s model on ``data`` in the repository's circuit, commit to the chain and prove
    the audited steps (:func:`federity.proofs.prove.prove_head`). The body's tensors are left exactly as in
    ``base``."""
    config = repo.config(base)
    policy = config.proofs or {}
    model = build_with_tensors(config, repo.root, base_tensors)
    trainer = get_trainer(config.framework)
    head, pinned = trainer.head(model), ProvedHead.of(policy)
    if pinned not in (None, head):
        raise ProofError(f"the repository proves the layer {pinned.weight} and {pinned.bias}, but its model's last "
                         f"layer is {head.weight} and {head.bias}",
                         "train the repository's own model (its federity.yaml and builder at the base)")
    return prove_head(policy, stored_circuit(repo, base, policy), repository=config.id, base=base, wallet=wallet,
                      head=head, base_tensors=base_tensors, features=trainer.head_features(model, data),
                      labels=data.labels, params=params, nonce=nonce, progress=progress)
