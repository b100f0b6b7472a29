"""Verifying a proof from bytes and tensors alone: no repository, no git; hostile chain files are problems,
never exceptions."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pytest
from solders.keypair import Keypair

from federity.proofs.circuit import StepCircuit
from federity.proofs.policy import StoredCircuit
from federity.proofs.verify import ProofInputs, chain_batches, reused_batch, verify_proof
from federity.training import TrainingParams

CIRCUIT = StepCircuit(features=4, classes=2, batch=4, lr=0.5, scale=8)
POLICY = {"audits": 1, "scale": 8, "srs": {"file": "proof-srs.bin", "sha256": "0" * 64},
          "circuit": {**CIRCUIT.to_json(), "settings_sha256": "1" * 64, "compiled_sha256": "2" * 64}}
BASE = {"0.weight": np.zeros((2, 4), dtype=np.float32), "0.bias": np.zeros(2, dtype=np.float32)}
HOSTILE = [None, True, -1, 0, 10**400, 1.5, "", "x" * 1000, "\x00", [], [1, 2], {}, {"a": 1}, [[[]]],
           {"schema": 2}, ["0.weight"]]


AUTHOR = str(Keypair().pubkey())


def _chain() -> dict[str, Any]:
    return {"schema": 1, "circuit": CIRCUIT.to_json(), "compiled_circuit_sha256": "2" * 64,
            "head": {"weight": "0.weight", "bias": "0.bias"}, "repository": "r" * 32, "base": "b" * 40,
            "author": AUTHOR, "nonce": "n", "weights": [["w0"], ["w1"]], "batches": ["h0"],
            "commitment": "c" * 64, "audited": [0], "proofs": {"0": "d" * 64}, "srs_sha256": "0" * 64}


def _inputs(chain: bytes | None, proof_sha256: str | None = None) -> ProofInputs:
    def no_srs() -> bytes:
        raise AssertionError("the SRS must not be read")

    return ProofInputs(policy=POLICY, repository="r" * 32, base="b" * 40, update="u" * 40, author=AUTHOR,
                       nonce="n", proof_sha256=proof_sha256 if proof_sha256 is not None or chain is None
                       else hashlib.sha256(chain).hexdigest(),
                       chain=chain, params=TrainingParams(lr=0.5, batch_size=4, epochs=1),
                       base_tensors=BASE, tensors=dict(BASE), circuit=StoredCircuit("b" * 40, b"", b"", no_srs),
                       steps={})


def _mutations() -> list[bytes]:
    """Every top-level field of a chain file replaced by each hostile value, plus files that are not a mapping."""
    cases = [b"", b"\xff\xfe", b"[" * 100_000, b"null", b"[1, 2]", b'"chain"', b"1e400", b"{", b"{}"]
    for key in _chain():
        for value in HOSTILE:
            chain = {**_chain(), key: value}
            cases.append(json.dumps(chain).encode())
        cases.append(json.dumps({k: v for k, v in _chain().items() if k != key}).encode())
    return cases


def test_an_update_without_a_chain_or_with_an_unsigned_one_fails_first() -> None:
    assert verify_proof(_inputs(None)).problems == [
        "proof: the update carries no proof of training, and this repository requires one"]
    assert verify_proof(_inputs(b"{}", "0" * 64)).problems == [
        "proof: proof/chain.json does not match the sha256 the update's signature covers"]


def test_every_mutated_chain_file_is_a_problem_and_never_an_exception() -> None:
    cases = _mutations()
    for chain in cases:
        check = verify_proof(_inputs(chain))
        assert not check.ok and len(check.problems) == 1 and check.problems[0].startswith("proof: "), chain[:200]
    assert len(cases) > 200


def test_a_chain_for_another_author_or_round_names_what_differs() -> None:
    someone = str(Keypair().pubkey())
    assert verify_proof(_inputs(json.dumps({**_chain(), "author": someone}).encode())).problems == [
        "proof: it was made for another base commit, repository or author"]
    assert verify_proof(_inputs(json.dumps({**_chain(), "nonce": "old"}).encode())).problems == [
        "proof: it was made for another round (its nonce is not the update's)"]
    [too_short] = verify_proof(_inputs(json.dumps({**_chain(), "weights": [["w0"]]}).encode())).problems
    assert too_short.startswith("proof: malformed proof/chain.json: 'weights': List should have at least 2 items")


@pytest.mark.parametrize("earlier", [b"", b"[]", b'{"batches": 5}', b'{"batches": [1, null, {}]}', b"\xff"])
def test_unreadable_earlier_chains_share_no_batch(earlier: bytes) -> None:
    chain = json.dumps(_chain()).encode()
    assert reused_batch(chain, {"e" * 40: earlier}) is None


def test_a_batch_an_earlier_update_committed_to_is_named_with_that_update() -> None:
    chain = json.dumps(_chain()).encode()
    first, second = json.dumps({"batches": ["h9", "h0"]}).encode(), json.dumps({"batches": ["h0"]}).encode()
    assert reused_batch(chain, {"1" * 40: first, "2" * 40: second}) == (
        f"proof: a batch was already used by update {'1' * 12} (reused batch)")
    assert chain_batches(chain) == ["h0"] and chain_batches(None) == []
