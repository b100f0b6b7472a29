"""FedProx's proximal term in local training (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys
2020): ``mu`` in params.yaml, the torch trainer's loss, and its refusal where proofs of training are required."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from solders.keypair import Keypair
from torch import nn

from federity.config import PARAMS_FILE
from federity.data import Dataset
from federity.errors import ConfigError
from federity.identity import Wallet
from federity.proofs.circuit import StepCircuit
from federity.proofs.policy import ProofPolicy, StoredCircuit
from federity.proofs.verify import ProofInputs, verify_proof
from federity.repo import Repository
from federity.repo.commits import create_commit
from federity.training import _PARAM_HINTS, TrainingParams
from federity.training.torch_trainer import TorchTrainer
from tests.conftest import snapshot, write_csv

PROOF_PARAMS = {"lr": 0.5, "epochs": 1, "batch_size": 4, "seed": 0}
FEDPROX_MESSAGE = "the proof circuit proves plain SGD steps and does not include FedProx's proximal term"
FEDPROX_HINT = "set mu: 0 in params.yaml, or use a repository without proofs"
AUTHOR = str(Keypair().pubkey())


def _dataset(n: int, seed: int) -> Dataset:
    """``n`` separable 4-feature binary examples (as tests.conftest.write_csv draws them), as arrays."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return Dataset(x, y, pd.DataFrame(x), "npz")


def _linear(seed: int = 3, features: int = 4) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 2))


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _trained(params: TrainingParams, data: Dataset) -> nn.Sequential:
    model = _linear()
    TorchTrainer().fit(model, data, params)
    return model


# --- the proximal term --------------------------------------------------------------------------------------------

def test_with_mu_the_weights_stay_closer_to_the_global_model_than_without() -> None:
    data = _dataset(64, seed=1)
    start = _flat(_linear())
    plain = _flat(_trained(TrainingParams(lr=0.5, epochs=30, batch_size=8, seed=2), data))
    proximal = _flat(_trained(TrainingParams(lr=0.5, epochs=30, batch_size=8, seed=2, mu=1.0), data))
    drift_plain, drift_proximal = float((plain - start).norm()), float((proximal - start).norm())
    # separable data: plain cross-entropy keeps growing the weights; mu = 1 holds them near the start
    assert drift_plain == pytest.approx(5.355, abs=0.005)
    assert drift_proximal == pytest.approx(0.3413, abs=0.0005)
    assert drift_proximal / drift_plain == pytest.approx(0.0637, abs=0.0005)


def _cross_entropy_gradient(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
    """d/d(w, b) of the mean cross-entropy of softmax(x w^T + b), by hand: (softmax - onehot)^T x / n."""
    logits = x @ w.T + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    error = (p - np.eye(w.shape[0])[y]) / len(y)
    return error.T @ x, error.sum(axis=0)


def test_two_full_batch_sgd_steps_add_mu_times_the_distance_to_the_start_to_the_gradient() -> None:
    x = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0], [-1.5, 0.5, 2.0], [2.0, 0.0, -1.0]], dtype=np.float32)
    y = np.array([0, 1, 1, 0])
    data = Dataset(x, y, pd.DataFrame(x), "npz")
    lr, mu = 0.5, 0.3
    model = _linear(seed=5, features=3)
    w0 = model[0].weight.detach().double().numpy().copy()
    b0 = model[0].bias.detach().double().numpy().copy()
    TorchTrainer().fit(model, data, TrainingParams(lr=lr, epochs=2, batch_size=4, seed=0, mu=mu))

    x64 = x.astype(np.float64)
    gw, gb = _cross_entropy_gradient(w0, b0, x64, y)
    w1, b1 = w0 - lr * gw, b0 - lr * gb  # step 1: w == w_start, the proximal gradient is 0
    gw, gb = _cross_entropy_gradient(w1, b1, x64, y)
    w2, b2 = w1 - lr * (gw + mu * (w1 - w0)), b1 - lr * (gb + mu * (b1 - b0))  # step 2
    np.testing.assert_allclose(model[0].weight.detach().double().numpy(), w2, atol=1e-6)
    np.testing.assert_allclose(model[0].bias.detach().double().numpy(), b2, atol=1e-6)
    # against the same training with mu = 0, the term moved the weights by -lr * mu * (w1 - w0)
    plain = _linear(seed=5, features=3)
    TorchTrainer().fit(plain, data, TrainingParams(lr=lr, epochs=2, batch_size=4, seed=0))
    moved = (model[0].weight - plain[0].weight).detach().double().numpy()
    np.testing.assert_allclose(moved, -lr * mu * (w1 - w0), atol=1e-6)
    assert float(np.abs(moved).max()) == pytest.approx(0.0527, abs=1e-4)  # lr^2 * mu * 0.7027, the largest gradient


def _plain_training(model: nn.Module, data: Dataset, params: TrainingParams) -> None:
    """Local training as it was before FedProx: the same batches and optimizer, cross-entropy alone."""
    features, labels = torch.tensor(data.features), torch.tensor(data.labels)
    generator = torch.Generator().manual_seed(params.seed)
    optimizer = (torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
                 if params.optimizer == "adam" else
                 torch.optim.SGD(model.parameters(), lr=params.lr, momentum=params.momentum,
                                 weight_decay=params.weight_decay))
    model.train()
    for _ in range(params.epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), params.batch_size):
            batch = order[start:start + params.batch_size]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(features[batch]), labels[batch]).backward()
            optimizer.step()


@pytest.mark.parametrize("optimizer", [{"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.01},
                                       {"optimizer": "adam"}])
def test_mu_0_trains_bit_identical_weights_to_no_mu_and_to_plain_training(optimizer: dict[str, object]) -> None:
    data = _dataset(50, seed=4)
    text = yaml.safe_dump({"lr": 0.05, "epochs": 3, "batch_size": 8, "seed": 11, **optimizer})
    unset = TrainingParams.from_yaml(text)
    zero = TrainingParams.from_yaml(text + "mu: 0\n")
    assert zero == unset and zero.mu == 0.0
    reference = _linear()
    _plain_training(reference, data, unset)
    for trained in (_trained(unset, data), _trained(zero, data)):
        assert all(torch.equal(p, q) for p, q in zip(trained.state_dict().values(), reference.state_dict().values(),
                                                    strict=True))
    assert float((_flat(reference) - _flat(_linear())).norm()) > 0.1  # it trained


# --- params.yaml --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "message"), [
    ("-1", r"'mu': Input should be greater than or equal to 0"),
    (".nan", r"'mu': must be a finite number"),
    (".inf", r"'mu': must be a finite number"),
    ("x", r"'mu': Input should be a valid number"),
    ("1.0e+7", r"'mu': Input should be less than or equal to 1000000"),
    ("true", r"'mu': Input should be a valid number"),
])
def test_a_bad_mu_is_refused_with_the_hint(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^params.yaml at 0123456789ab:? {message}") as caught:
        TrainingParams.from_yaml(f"lr: 0.1\nmu: {value}\n", "params.yaml at 0123456789ab")
    assert caught.value.hint == _PARAM_HINTS["mu"]


def test_mu_is_read_as_a_float_and_recorded_with_the_other_parameters() -> None:
    assert TrainingParams.from_yaml("mu: 1\n").mu == 1.0
    assert TrainingParams.from_yaml("mu: 0.01\n").to_json()["mu"] == 0.01
    assert TrainingParams.from_yaml(None).mu == 0.0


# --- proofs of training -------------------------------------------------------------------------------------------

def test_a_repository_with_proofs_cannot_be_created_with_mu(tmp_path: Path, owner: Wallet) -> None:
    with pytest.raises(ConfigError, match=rf"^params.yaml asks for FedProx with mu=0.1, but {FEDPROX_MESSAGE}\n") \
            as caught:
        Repository.init(tmp_path / "repo", owner, name="x", framework="torch", model="logistic-regression",
                        model_args=["in_features=4"], params={**PROOF_PARAMS, "mu": 0.1},
                        proofs=ProofPolicy(scale=8))
    assert caught.value.hint == FEDPROX_HINT
    assert not (tmp_path / "repo").exists()


def test_training_with_proofs_and_mu_is_refused_before_any_data_is_read(
        tmp_path: Path, owner: Wallet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDERITY_CACHE", str(tmp_path / "cache"))
    repo, _ = Repository.init(tmp_path / "repo", owner, name="proved", framework="torch",
                              model="logistic-regression", model_args=["in_features=4"], params=PROOF_PARAMS,
                              proofs=ProofPolicy(audits=1, scale=8))
    (repo.root / PARAMS_FILE).write_text(yaml.safe_dump({**PROOF_PARAMS, "mu": 0.01}))
    create_commit(repo, owner, "weights", "FedProx locally", [repo.head()], paths=(PARAMS_FILE,))
    data = write_csv(tmp_path / "data" / "train.csv", 40, seed=1)
    before = snapshot(repo)

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr("federity.data.load_dataset", never)
    monkeypatch.setattr("federity.repo.train.prove_training", never)
    monkeypatch.setattr("federity.repo.train.train_locally", never)
    with pytest.raises(ConfigError, match=rf"^params.yaml asks for FedProx with mu=0.01, but {FEDPROX_MESSAGE}\n") \
            as caught:
        repo.train(owner, data)
    assert caught.value.hint == FEDPROX_HINT
    assert snapshot(repo) == before


def test_verifying_a_proof_against_a_base_with_mu_is_a_problem_not_an_exception() -> None:
    circuit = StepCircuit(features=4, classes=2, batch=4, lr=0.5, scale=8)
    policy = {"audits": 1, "scale": 8, "srs": {"file": "proof-srs.bin", "sha256": "0" * 64},
              "circuit": {**circuit.to_json(), "settings_sha256": "1" * 64, "compiled_sha256": "2" * 64}}
    base = {"0.weight": np.zeros((2, 4), dtype=np.float32), "0.bias": np.zeros(2, dtype=np.float32)}
    chain = json.dumps({"schema": 1, "circuit": circuit.to_json(), "compiled_circuit_sha256": "2" * 64,
                        "head": {"weight": "0.weight", "bias": "0.bias"}, "repository": "r" * 32, "base": "b" * 40,
                        "author": AUTHOR, "nonce": "n", "weights": [["w0"], ["w1"]], "batches": ["h0"],
                        "commitment": "c" * 64, "audited": [0], "proofs": {"0": "d" * 64},
                        "srs_sha256": "0" * 64}).encode()

    def no_srs() -> bytes:
        raise AssertionError("the SRS must not be read")

    inputs = ProofInputs(policy=policy, repository="r" * 32, base="b" * 40, update="u" * 40, author=AUTHOR,
                         nonce="n",
                         proof_sha256=hashlib.sha256(chain).hexdigest(), chain=chain,
                         params=TrainingParams(lr=0.5, batch_size=4, epochs=1, mu=0.5), base_tensors=base,
                         tensors=dict(base), circuit=StoredCircuit("b" * 40, b"", b"", no_srs), steps={})
    problems = verify_proof(inputs).problems
    assert problems == [f"proof: params.yaml asks for FedProx with mu=0.5, but {FEDPROX_MESSAGE}"]
    plain = dataclasses.replace(inputs, params=TrainingParams(lr=0.5, batch_size=4, epochs=1))
    # with mu 0 the same inputs get past the parameters, to the (made-up) hash chain
    assert verify_proof(plain).problems == ["proof: the chain does not start at the base commit's weights"]
