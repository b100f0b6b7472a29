"""Proofs of training with real ezkl proofs: the honest path passes; every forgery fails with its reason and
leaves main as it was. A forgery is re-signed by its author: a dishonest contributor can always sign."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

from federity.errors import ProofError, UpdateError
from federity.identity import Wallet
from federity.proofs import chain as proof_chain
from federity.proofs import srs as proof_srs
from federity.proofs.circuit import CircuitFiles, StepCircuit, compile_step, prepare, quantize
from federity.proofs.policy import ProofPolicy, StoredCircuit
from federity.proofs.prove import CHAIN_FILE
from federity.repo import Repository
from federity.repo.checks import update_problems, valid_updates
from federity.repo.commits import create_commit, read_commit
from federity.repo.history import History
from federity.repo.privacy import sealing_for
from federity.repo.proof_inputs import check_update_proof
from federity.repo.storage import MODEL_DVC_FILE
from federity.repo.updates import UPDATE_FILE, check_updates, find_update, read_update_record
from federity.rounds import aggregate_round, approve_verified, collect_updates, pin_round, push_round
from federity.site import train_at_site
from federity.tracking import DEFAULT_DB
from federity.weights import read_tensors, tensors_to_bytes
from tests.conftest import snapshot, write_csv

PARAMS = {"lr": 0.5, "epochs": 1, "batch_size": 4, "seed": 0}
NONCE = "nonce-of-round-1"


@pytest.fixture(scope="module")
def circuit_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache of compiled circuits and keys for the module: setup runs once per SRS."""
    cache = tmp_path_factory.mktemp("federity-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEDERITY_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def proved(tmp_path_factory: pytest.TempPathFactory, circuit_cache: Path) -> dict[str, Any]:
    """A repository requiring proofs, a contributor's clone, and one honest update trained for ``NONCE``."""
    tmp = tmp_path_factory.mktemp("proved")
    owner, contributor = Wallet.create(tmp / "owner.json"), Wallet.create(tmp / "contributor.json")
    repo, _ = Repository.init(tmp / "repo", owner, name="proved", framework="torch", model="logistic-regression",
                              model_args=["in_features=4"], remote=str(tmp / "remote.git"), params=PARAMS,
                              proofs=ProofPolicy(audits=2, scale=8))
    repo.add_member(owner, contributor.pubkey, "contributor")
    repo.push()
    site = Repository.clone(str(tmp / "remote.git"), tmp / "site", wallet=contributor)
    data = write_csv(tmp / "site-data" / "train.csv", 40, seed=1)
    update = site.train(contributor, data, nonce=NONCE)
    return {"tmp": tmp, "owner": owner, "contributor": contributor, "repo": repo, "site": site, "data": data,
            "update": update}


@pytest.fixture(autouse=True)
def _shared_cache(circuit_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDERITY_CACHE", str(circuit_cache))


def _problems(site: Repository, update: str) -> list[str]:
    """The proof check alone: forgeries that keep the honest weights would also fail the replay check."""
    return check_update_proof(site, read_commit(site, update), read_update_record(site, update) or {},
                              valid_updates(History.load(site))).problems


_forgeries = iter(range(1000))


def _forge(site: Repository, wallet: Wallet, update: str, *, base: str | None = None,
           change: Callable[[Path, dict[str, Any], dict[str, Any]], None]) -> str:
    """A new update commit with ``update``'s files after ``change(model_dir, chain, record)``, re-signed."""
    original_base = site.git.run("rev-parse", f"{update}^")
    branch = f"updates/r1/forged-{next(_forgeries)}"
    site.git.run("checkout", "--quiet", "-b", branch, base or original_base)
    site.git.run("checkout", update, "--", MODEL_DVC_FILE, UPDATE_FILE)
    site.store.checkout()
    model_dir = site.weights_path.parent
    for relpath in site.store.files(update):  # the author opens its own (sealed) files to forge them
        (model_dir / relpath).write_bytes(site.store.read(update, relpath))
    chain = json.loads((model_dir / CHAIN_FILE).read_text())
    record = json.loads((site.root / UPDATE_FILE).read_text())
    change(model_dir, chain, record)
    chain_bytes = (json.dumps(chain, indent=1, sort_keys=True) + "\n").encode()
    (model_dir / CHAIN_FILE).write_bytes(chain_bytes)
    (site.root / UPDATE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    site.store.track(sealing=sealing_for(site, wallet, "update", site.config(base or original_base)))
    commit = create_commit(site, wallet, "update", "forged", [base or original_base], round=1,
                           paths=(MODEL_DVC_FILE, UPDATE_FILE), proof_sha256=hashlib.sha256(chain_bytes).hexdigest())
    site.checkout("main")
    return commit.commit


def chain_audited(repo: Repository, update: str) -> list[int]:
    return json.loads(repo.store.read(update, CHAIN_FILE))["audited"]


def _set_proof_sha(chain: dict[str, Any], model_dir: Path, index: int) -> None:
    chain["proofs"][str(index)] = hashlib.sha256((model_dir / f"proof/step-{index}.json").read_bytes()).hexdigest()


def test_an_honest_update_carries_a_proof_that_verifies_and_show_says_what_it_covers(proved: dict[str, Any]
                                                                                    ) -> None:
    site, update = proved["site"], proved["update"]
    assert update.proof["steps"] == 10 and len(update.proof["audited"]) == 2
    assert 0 < update.proof["proof_bytes"] < 30_000 and update.proof["srs"] == proof_srs.INSECURE_NOTE
    assert update_problems(History.load(site), find_update(site, update.update), site.git.resolve("main"),
                           nonce=NONCE) == []
    shown = site.show(update.update)["proof"]
    assert "2 of 10 SGD steps" in shown["covers"] and "0.weight and 0.bias (10 parameters)" in shown["covers"]
    assert "not audited" in shown["does_not_cover"] and shown["srs"].startswith("INSECURE")
    files = site.store.files(update.update)
    assert {f"proof/step-{i}.json" for i in update.proof["audited"]} <= set(files)


def test_the_submitted_weights_are_the_exact_end_of_the_circuit_s_chain(proved: dict[str, Any]) -> None:
    site, update = proved["site"], proved["update"]
    tensors = read_tensors(site.store.read(update.update), "update")
    chain = json.loads(site.store.read(update.update, CHAIN_FILE))
    circuit = StepCircuit.from_json(chain["circuit"])
    assert proof_chain.weights_hash(circuit, tensors["0.weight"].T, tensors["0.bias"]) == chain["weights"][-1]
    assert chain["audited"] == proof_chain.challenge(chain["commitment"], NONCE, 10, 2)


def test_weights_changed_after_proving_fail(proved: dict[str, Any]) -> None:
    def nudge(model_dir: Path, chain: dict[str, Any], record: dict[str, Any]) -> None:
        path = model_dir / "model.safetensors"
        tensors = read_tensors(path.read_bytes(), "weights")
        tensors["0.bias"] = tensors["0.bias"] + np.float32(1 / 256)  # still on the fixed-point grid
        path.write_bytes(tensors_to_bytes(tensors))

    forged = _forge(proved["site"], proved["contributor"], proved["update"].update, change=nudge)
    assert _problems(proved["site"], forged) == [
        "proof: the submitted weights are not the end of the proved chain (changed after proving)"]


def test_a_proof_replayed_from_an_earlier_round_fails(proved: dict[str, Any]) -> None:
    def claim_new_round(model_dir: Path, chain: dict[str, Any], record: dict[str, Any]) -> None:
        # a later round's nonce whose draw differs (1 nonce in 45 draws the same 2 of 10 steps; then the proofs
        # would still match, and only the replay and base checks, outside the proof, would refuse the update)
        later = next(f"nonce-of-a-later-round-{i}" for i in range(100) if proof_chain.challenge(
            chain["commitment"], f"nonce-of-a-later-round-{i}", len(chain["batches"]), 2) != chain["audited"])
        record["nonce"] = chain["nonce"] = later

    forged = _forge(proved["site"], proved["contributor"], proved["update"].update, change=claim_new_round)
    [problem] = _problems(proved["site"], forged)
    assert problem.startswith(f"proof: it audits steps {proved['update'].proof['audited']}, but the challenge draws")


def test_tampered_proof_bytes_fail(proved: dict[str, Any]) -> None:
    index = proved["update"].proof["audited"][0]

    def flip_a_byte(model_dir: Path, chain: dict[str, Any], record: dict[str, Any]) -> None:
        path = model_dir / f"proof/step-{index}.json"
        stored = json.loads(path.read_text())
        raw = bytearray(bytes.fromhex(stored["proof"]))
        raw[200] ^= 0x01
        stored["proof"] = raw.hex()
        path.write_text(json.dumps(stored))
        _set_proof_sha(chain, model_dir, index)

    forged = _forge(proved["site"], proved["contributor"], proved["update"].update, change=flip_a_byte)
    assert _problems(proved["site"], forged) == [f"proof: the proof of step {index} does not verify"]


def test_an_audited_step_not_in_the_committed_chain_fails(proved: dict[str, Any]) -> None:
    first, second = proved["update"].proof["audited"]

    def swap_proofs(model_dir: Path, chain: dict[str, Any], record: dict[str, Any]) -> None:
        a, b = model_dir / f"proof/step-{first}.json", model_dir / f"proof/step-{second}.json"
        a_bytes = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(a_bytes)
        _set_proof_sha(chain, model_dir, first)
        _set_proof_sha(chain, model_dir, second)

    forged = _forge(proved["site"], proved["contributor"], proved["update"].update, change=swap_proofs)
    assert _problems(proved["site"], forged) == [
        f"proof: the proof of step {first} proves a step that is not in the committed chain"]


def test_a_proof_under_another_srs_fails_against_the_repository_s_verification_key(
        proved: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    site, contributor = proved["site"], proved["contributor"]
    other = proved["tmp"] / "other.srs"
    other_record = proof_srs.generate(12, other)
    def keys_under_another_srs(policy: dict[str, Any], stored: StoredCircuit) -> CircuitFiles:
        return prepare(stored.settings, stored.compiled, other, other_record["sha256"])

    monkeypatch.setattr("federity.proofs.prove.circuit_files", keys_under_another_srs)
    result = site.train(contributor, proved["data"], nonce="another-nonce")
    monkeypatch.undo()
    site.checkout("main")
    problems = _problems(site, result.update)
    assert len(problems) == 1 and problems[0].endswith("does not verify")


def test_a_batch_used_twice_fails(proved: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    site, contributor = proved["site"], proved["contributor"]

    class SameOrder:
        def permutation(self, n: int) -> np.ndarray:
            return np.arange(n)

    replaying = functools.partial(proof_chain.train, skip_repeated_batches=False)  # a prover that replays batches
    monkeypatch.setattr(proof_chain.np.random, "default_rng", lambda _seed: SameOrder())
    monkeypatch.setattr(proof_chain, "train", replaying)
    result = site.train(contributor, proved["data"], epochs=2, nonce="nonce-2")
    monkeypatch.undo()
    site.checkout("main")
    assert _problems(site, result.update) == [
        "proof: a batch is used twice in the chain (reused batch)"]


def test_training_with_another_update_checked_out_stores_only_its_own_proof_files(proved: dict[str, Any]) -> None:
    site, contributor = proved["site"], proved["contributor"]
    site.checkout(proved["update"].branch)  # the working tree holds that update's chain and step proofs
    result = site.train(contributor, proved["data"], nonce="nonce-3", base="main")
    site.checkout("main")
    stored = {f for f in site.store.files(result.update) if f.startswith("proof/")}
    assert stored == {"proof/chain.json", *(f"proof/step-{i}.json" for i in result.proof["audited"])}
    assert _problems(site, result.update) == []


def test_an_update_storing_more_step_proofs_than_the_repository_audits_is_refused_unread(
        proved: dict[str, Any]) -> None:
    def pad_with_proofs(model_dir: Path, chain: dict[str, Any], record: dict[str, Any]) -> None:
        for index in range(100, 103):
            (model_dir / f"proof/step-{index}.json").write_text("{}")

    forged = _forge(proved["site"], proved["contributor"], proved["update"].update, change=pad_with_proofs)
    assert _problems(proved["site"], forged) == [
        "proof: the update stores 5 step proofs; the repository audits 2 steps"]


def test_a_rejected_proof_is_recorded_and_main_and_the_remote_stay_unchanged(proved: dict[str, Any]) -> None:
    repo, site, owner = proved["repo"], proved["site"], proved["owner"]

    def drop_proof(model_dir: Path, chain: dict[str, Any], record: dict[str, Any]) -> None:
        chain["audited"] = chain["audited"][:1]

    forged = _forge(site, proved["contributor"], proved["update"].update, change=drop_proof)
    site.checkout(find_update(site, forged).branch)
    site.push()
    site.checkout("main")
    repo.pull()
    before = snapshot(repo, proved["tmp"] / "remote.git")
    with pytest.raises(UpdateError, match=r"fails its checks.*it audits steps"):
        repo.review(owner, forged[:12], approve=True)
    assert next(u for u in repo.updates() if u.id == forged).status == "rejected"
    after = snapshot(repo, proved["tmp"] / "remote.git")
    assert after.pop("refs") != before.pop("refs")  # the review note is new: nothing else may change
    assert after == before and repo.head() == repo.git.resolve("origin/main")
    report = repo.verify()  # a rejected update is evidence, listed apart: it does not make the repository fail
    [rejected] = [r for r in report.rejected if r["update"] == forged]
    assert (f"proof: it audits steps {chain_audited(repo, forged)}, but the challenge draws "
            f"{proved['update'].proof['audited']}") in rejected["reasons"]
    assert not [f for f in report.failures if f["commit"] == forged]


def test_an_srs_whose_hash_does_not_match_is_refused_before_use(tmp_path: Path, owner: Wallet) -> None:
    srs_file = tmp_path / "kzg12.srs"
    proof_srs.generate(12, srs_file)
    with pytest.raises(ProofError, match=r"has sha256 .*not the expected"):
        Repository.init(tmp_path / "repo", owner, name="x", framework="torch", model="logistic-regression",
                        model_args=["in_features=4"], params=PARAMS,
                        proofs=ProofPolicy(scale=8, srs_file=srs_file, srs_sha256="0" * 64))
    assert not (tmp_path / "repo").exists()


def test_concurrent_copies_of_the_srs_into_the_cache_each_get_the_whole_file(
        proved: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two agents starting their first proved round together both copy the SRS into the shared cache; a damaged
    cached copy is replaced."""
    monkeypatch.setenv("FEDERITY_CACHE", str(tmp_path / "cold-cache"))
    site = proved["site"]
    srs = site.config().proofs["srs"]
    start = threading.Barrier(8)

    def read() -> bytes:
        return site.store.read(site.head(), srs["file"])

    def copy() -> str:
        start.wait()
        return hashlib.sha256(proof_srs.local_copy(srs, read, site.head()).read_bytes()).hexdigest()

    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(lambda _: copy(), range(8)))
    assert digests == [srs["sha256"]] * 8
    [cached] = (tmp_path / "cold-cache" / "srs").iterdir()
    assert cached.name == f"{srs['sha256']}.srs"
    cached.write_bytes(cached.read_bytes()[:1000])  # e.g. left half-written by an older version
    assert hashlib.sha256(proof_srs.local_copy(srs, read, site.head()).read_bytes()).hexdigest() == srs["sha256"]


def test_agents_preparing_the_same_keys_at_once_make_them_once(proved: dict[str, Any], tmp_path: Path) -> None:
    """Two processes (ezkl holds the GIL, so threads would take turns anyway) need the same keys on a cold cache."""
    log = tmp_path / "ezkl-calls.log"
    script = f"""
from pathlib import Path
from federity.proofs import circuit
from federity.proofs.policy import circuit_files
from federity.repo import Repository
from federity.repo.proof_inputs import stored_circuit

real_call = circuit.call_ezkl
def logged_call(name, *args, **kwargs):
    with open({str(log)!r}, "a") as out:
        out.write(name + "\\n")
    return real_call(name, *args, **kwargs)
circuit.call_ezkl = logged_call
site = Repository(Path({str(proved["site"].root)!r}), wallet_path=Path({str(proved["contributor"].path)!r}))
policy = site.config().proofs
print(circuit_files(policy, stored_circuit(site, site.head(), policy)).pk)
"""
    env = {**os.environ, "FEDERITY_CACHE": str(tmp_path / "cold-cache")}
    agents = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
              for _ in range(2)]
    keys = [Path(agent.communicate(timeout=300)[0].strip()) for agent in agents]
    assert [agent.returncode for agent in agents] == [0, 0]
    assert log.read_text().split() == ["setup"]
    assert keys[0] == keys[1] and keys[0].is_file()
    assert not [p for p in (tmp_path / "cold-cache" / "circuits").iterdir() if p.name.startswith(".staging")]


def test_an_imported_srs_is_recorded_as_imported(tmp_path: Path, owner: Wallet) -> None:
    srs_file = tmp_path / "kzg13.srs"
    proof_srs.generate(13, srs_file)
    digest = hashlib.sha256(srs_file.read_bytes()).hexdigest()
    repo, _ = Repository.init(tmp_path / "repo", owner, name="x", framework="torch", model="logistic-regression",
                              model_args=["in_features=4"], params=PARAMS,
                              proofs=ProofPolicy(scale=8, srs_file=srs_file, srs_sha256=digest))
    srs = repo.config().proofs["srs"]
    assert srs == {"file": "proof-srs.bin", "sha256": digest, "logrows": 13, "source": "imported"}
    assert repo.store.read(repo.head(), "proof-srs.bin") == srs_file.read_bytes()
    assert proof_srs.describe(srs).startswith("imported public SRS")


def test_proved_training_refuses_an_optimizer_the_circuit_does_not_prove(tmp_path: Path, owner: Wallet) -> None:
    with pytest.raises(Exception, match="proved training is plain SGD"):
        Repository.init(tmp_path / "repo", owner, name="x", framework="torch", model="logistic-regression",
                        model_args=["in_features=4"], params={**PARAMS, "optimizer": "adam"},
                        proofs=ProofPolicy(scale=8))
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("logit_gap", [2.0, 30.0])
def test_a_proved_step_is_sgd_at_the_effective_lr_even_for_a_confident_model(tmp_path: Path,
                                                                          logit_gap: float) -> None:
    """One step in the circuit against float SGD: within a few grid steps, also when the logits are far apart
    (their gaps are clipped where exp is below the grid, instead of leaving the exp table's range)."""
    circuit = StepCircuit(features=4, classes=3, batch=4, lr=0.05, scale=10)
    files = compile_step(circuit, tmp_path)
    rng = np.random.default_rng(3)
    x = quantize(rng.normal(0, 1, (4, 4)), 10)
    labels = np.array([0, 1, 2, 0])
    weight = quantize(np.outer(np.ones(4), [logit_gap / 4, 0, -logit_gap / 4]) + rng.normal(0, 0.1, (4, 3)), 10)
    bias = quantize(rng.normal(0, 0.1, 3), 10)
    trained = proof_chain.train(circuit, files, weight, bias, x, labels, epochs=1, seed=0,
                                salt=np.zeros(circuit.features + circuit.classes))

    rows = trained.step_inputs[0][2]  # the batch in the order the step used it
    order = [next(i for i in range(4) if np.allclose(x[i], rows[7 * r:7 * r + 4])) for r in range(4)]
    logits = x[order] @ weight + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    error = p / p.sum(axis=1, keepdims=True) - np.eye(3)[labels[order]]
    step = circuit.effective_lr / circuit.batch
    assert circuit.effective_lr == 13 * 4 / 2**10  # lr/batch = 0.0125 ≈ 13·2^-10
    assert np.abs(trained.weight - (weight - x[order].T @ error * step)).max() <= 3 / 2**10
    assert np.abs(trained.bias - (bias - error.sum(axis=0) * step)).max() <= 3 / 2**10


def test_a_batch_that_repeats_an_earlier_step_is_skipped_so_duplicate_rows_give_a_chain_verify_accepts(
        tmp_path: Path) -> None:
    """Eight copies of one sample, batch 4, two epochs: four batches hash the same, so one step is kept (a chain
    that used a batch twice would be refused as a reused batch)."""
    circuit = StepCircuit(features=4, classes=3, batch=4, lr=0.05, scale=10)
    files = compile_step(circuit, tmp_path)
    x = quantize(np.tile(np.random.default_rng(4).normal(0, 1, (1, 4)), (8, 1)), 10)
    weight, bias = np.zeros((4, 3)), np.zeros(3)
    trained = proof_chain.train(circuit, files, weight, bias, x, np.zeros(8, dtype=int), epochs=2, seed=0,
                                salt=np.zeros(circuit.features + circuit.classes))
    assert trained.steps == 1 and len(trained.weight_hashes) == 2
    assert not np.array_equal(trained.weight, weight)


def test_the_commitment_binds_every_hash_and_the_challenge_follows_it() -> None:
    circuit = StepCircuit(4, 2, 4, 0.5, 8)
    weights, batches = [["a", "b"], ["c", "d"], ["e", "f"]], ["x", "y"]
    base = proof_chain.commitment("repo", "base", "author", circuit, weights, batches)
    assert base != proof_chain.commitment("repo", "base", "author", circuit, weights, ["x", "z"])
    assert base != proof_chain.commitment("repo", "other", "author", circuit, weights, batches)
    draws = {tuple(proof_chain.challenge(base, f"nonce-{i}", 100, 3)) for i in range(20)}
    assert len(draws) > 15 and all(len(set(d)) == 3 and max(d) < 100 for d in draws)
    assert proof_chain.challenge(base, "n", 2, 5) == [0, 1]


def test_an_mlp_proves_its_head_on_frozen_features_and_a_changed_body_fails(tmp_path: Path, owner: Wallet) -> None:
    repo, _ = Repository.init(tmp_path / "mlp", owner, name="mlp", framework="torch", model="mlp",
                              model_args=["in_features=4", "hidden=3"], params=PARAMS,
                              proofs=ProofPolicy(audits=1, scale=8))
    base = read_tensors(repo.store.read(repo.head()), "base")
    result = repo.train(owner, write_csv(tmp_path / "d" / "t.csv", 24, seed=5))
    trained = read_tensors(repo.store.read(result.update), "update")
    assert result.proof["head"] == ["2.weight", "2.bias"] and result.proof["parameters_proved"] == 8
    assert all(np.array_equal(trained[n], base[n]) for n in ("0.weight", "0.bias"))  # the body is frozen
    assert not np.array_equal(trained["2.weight"], base["2.weight"])
    assert _problems(repo, result.update) == []

    def train_the_body(model_dir: Path, chain: dict[str, Any], record: dict[str, Any]) -> None:
        path = model_dir / "model.safetensors"
        tensors = read_tensors(path.read_bytes(), "weights")
        tensors["0.bias"] = tensors["0.bias"] + np.float32(0.5)
        path.write_bytes(tensors_to_bytes(tensors))

    forged = _forge(repo, owner, result.update, change=train_the_body)
    assert _problems(repo, forged) == ["proof: tensors outside the proved head changed: 0.bias"]


def test_a_round_with_two_contributors_verifies_aggregates_and_tracks_their_proofs(
        proved: dict[str, Any], seed_mlflow_db: Callable[[Path], Path]) -> None:
    repo, owner, tmp = proved["repo"], proved["owner"], proved["tmp"]
    second = Wallet.create(tmp / "second.json")
    repo.add_member(owner, second.pubkey, "contributor")
    repo.push()
    pin = pin_round(repo)
    for name, wallet, seed in (("a", proved["contributor"], 3), ("b", second, 4)):
        result = train_at_site(pin.remote, tmp / f"round-{name}", wallet,
                               write_csv(tmp / f"round-data-{name}" / "t.csv", 24 + 8 * seed, seed=seed),
                               base=pin.base, nonce=pin.nonce)
        assert result["proof"]["audited"] and result["proof"]["steps"] == (24 + 8 * seed) // 4
    updates = collect_updates(repo, pin)
    check_updates(repo, owner, updates, nonce=pin.nonce)
    assert sorted(u.status for u in updates) == ["verified", "verified"]
    aggregate = aggregate_round(repo, owner, pin, approve_verified(repo, owner, updates), quorum=2)
    push_round(repo, pin)
    assert sorted(aggregate["updates"]) == sorted(u.id for u in updates)
    report = repo.verify()  # re-verifies every proof in the history, offline
    round_commits = {aggregate["commit"], *aggregate["updates"]}
    assert report.commits_checked > len(round_commits)
    assert not [f for f in report.failures if f["commit"] in round_commits]  # (the earlier forgery fails)
    seed_mlflow_db(repo.root)
    run_id = repo.track(aggregate["commit"])
    client = MlflowClient(tracking_uri=f"sqlite:///{repo.root / DEFAULT_DB}")
    children = client.search_runs([client.get_run(run_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    assert len(children) == 2
    for child in children:
        metrics = child.data.metrics
        assert metrics["proof.verified"] == 1.0 and 0 < metrics["proof.verify_seconds"] < 5
        assert metrics["proof.proof_bytes"] > 0 and metrics["proof.prove_seconds_per_step"] > 0


def test_a_proof_made_for_another_base_commit_fails(proved: dict[str, Any]) -> None:
    """Last in the module: it moves main on."""
    repo, site, owner = proved["repo"], proved["site"], proved["owner"]
    weights = proved["tmp"] / "new-main.safetensors"
    tensors = read_tensors(repo.store.read(repo.head()), "weights")
    weights.write_bytes(tensors_to_bytes({k: v + np.float32(0.25) for k, v in tensors.items()}))
    new_main = repo.commit(owner, weights, "new main").commit
    repo.push()
    site.pull()
    forged = _forge(site, proved["contributor"], proved["update"].update, base=new_main, change=lambda *_: None)
    assert _problems(site, forged) == ["proof: it was made for another base commit, repository or author"]


def test_a_keras_model_proves_its_dense_head_in_its_own_layout_and_the_repository_pins_that_head(
        tmp_path: Path, owner: Wallet) -> None:
    """Keras stores a Dense kernel as [features, classes], PyTorch as [classes, features]: the head and its layout
    are fixed in federity.yaml at init, the chain ends at the submitted kernel as stored, and a proof of another
    head is refused."""
    repo, _ = Repository.init(tmp_path / "keras", owner, name="keras", framework="tensorflow", model="mlp",
                              model_args=["in_features=4", "hidden=5", "num_classes=3"], params=PARAMS,
                              proofs=ProofPolicy(audits=1, scale=8))
    assert repo.config().proofs["head"] == {"weight": "2.kernel", "bias": "2.bias", "layout": "in_out"}
    assert repo.config().proofs["circuit"]["features"] == 5 and repo.config().proofs["circuit"]["classes"] == 3
    result = repo.train(owner, write_csv(tmp_path / "d" / "t.csv", 24, seed=5))
    trained = read_tensors(repo.store.read(result.update), "update")
    chain = json.loads(repo.store.read(result.update, CHAIN_FILE))
    circuit = StepCircuit.from_json(chain["circuit"])
    assert proof_chain.weights_hash(circuit, trained["2.kernel"], trained["2.bias"]) == chain["weights"][-1]
    assert _problems(repo, result.update) == []

    def prove_another_head(model_dir: Path, chain: dict[str, Any], record: dict[str, Any]) -> None:
        chain["head"] = {"weight": "0.kernel", "bias": "0.bias"}

    forged = _forge(repo, owner, result.update, change=prove_another_head)
    assert _problems(repo, forged) == ["proof: it proves '0.kernel' and '0.bias', but the repository proves "
                                       "'2.kernel' and '2.bias'"]
