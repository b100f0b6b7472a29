"""Readers of input another party wrote, attacked with random and mutated documents (hypothesis): federity.yaml,
params.yaml, update.json, review, NFT and MLflow notes, safetensors files and proof/chain.json. Nothing but a
FederityError escapes (or a clean ``None`` / an empty list where that is the reader's contract), and what is
accepted is within the schema's bounds. Then one plain test per malformed example the attacks started from."""

from __future__ import annotations

import json
import math
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solders.keypair import Keypair

from federity.config import MAX_YAML_BYTES, RepoConfig, Role
from federity.errors import ConfigError, PickleRefusedError, ProofError, UpdateError, WeightsError
from federity.identity import Wallet
from federity.records import (
    MAX_SAMPLES,
    MlflowNote,
    NftNote,
    Review,
    UpdateRecord,
    parse_mlflow_note,
    parse_nft_note,
    parse_proof_chain,
    parse_review_note,
    parse_update_record,
    review_note,
    signed_review_payload,
)
from federity.repo import Repository
from federity.training import TrainingParams
from federity.weights import read_tensors, tensors_to_bytes
from federity.weights.tensor_file import TensorFile
from tests.conftest import git

_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
             "database": None}
OWNER = str(Keypair().pubkey())
MEMBER = str(Keypair().pubkey())
REVIEWER = Keypair()
UPDATE = "ab" * 20
BASE = "cd" * 20

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """``data`` with a few random byte edits: replace, insert, delete, truncate, duplicate a slice."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "duplicate"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "replace" and out:
            out[at] = draw(st.integers(0, 255))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and out:
            del out[at:at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del out[at:]
        elif op == "duplicate":
            out[at:at] = out[at:at + draw(st.integers(1, 64))]
    return bytes(out)


def _replace_path(document: Any, draw: st.DrawFn, value: Any) -> Any:
    """``document`` (nested dicts and lists) with one randomly chosen key's value replaced by ``value``, or a
    random key added or removed."""
    document = json.loads(json.dumps(document))
    node = document
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            return document
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
            continue
        action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        if action == "remove":
            del node[key]
        elif action == "add" and isinstance(node, dict):
            node[draw(st.text(max_size=12))] = value
        else:
            node[key] = value
        return document


# --- federity.yaml ------------------------------------------------------------------------------------------------

def _config() -> RepoConfig:
    return RepoConfig(name="attacked", framework="torch", model={"id": "mlp", "args": {"in_features": 4}},
                      members={OWNER: Role.OWNER, MEMBER: Role.CONTRIBUTOR},
                      aggregation={"strategy": "fedavg", "max_staleness": 1}, review={"policy": "manual"})


VALID_CONFIG = _config().to_yaml()
VALID_CONFIG_DATA = yaml.safe_load(VALID_CONFIG)


def _accepts_config(raw: str | bytes) -> None:
    try:
        config = RepoConfig.from_yaml(raw, "federity.yaml at 0123456789ab")
    except ConfigError as exc:
        assert exc.message.startswith("federity.yaml at 0123456789ab") and exc.hint
        assert len(exc.message) < 600 and "\n" not in exc.message  # no text of the file's can forge a line
        return
    # whatever is accepted is within the schema and survives a round trip through the writer
    assert isinstance(config.model["args"], dict) and all(isinstance(k, str) for k in config.model["args"])
    assert all(isinstance(role, Role) for role in config.members.values())
    assert RepoConfig.from_yaml(config.to_yaml()) == config


@settings(max_examples=400, **_SETTINGS)
@given(st.data())
def test_mutated_federity_yaml_is_read_or_refused_with_a_config_error(data: st.DataObject) -> None:
    _accepts_config(_mutate(VALID_CONFIG.encode(), data.draw))


@settings(max_examples=400, **_SETTINGS)
@given(st.data(), json_values)
def test_federity_yaml_with_any_value_at_any_key_is_read_or_refused(data: st.DataObject, value: Any) -> None:
    document = _replace_path(VALID_CONFIG_DATA, data.draw, value)
    _accepts_config(yaml.safe_dump(document, allow_unicode=data.draw(st.booleans())))


@settings(max_examples=300, **_SETTINGS)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_random_text_as_federity_yaml_is_refused_with_a_config_error(raw: str | bytes) -> None:
    _accepts_config(raw)


def test_a_yaml_alias_bomb_is_refused_before_it_expands() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(9)]
    with pytest.raises(ConfigError, match="uses a YAML alias"):
        RepoConfig.from_yaml(VALID_CONFIG + "\n".join(lines), "federity.yaml at 0123456789ab")


def test_deep_nesting_and_oversized_federity_yaml_are_refused() -> None:
    with pytest.raises(ConfigError, match="nested more than 16 levels deep"):
        RepoConfig.from_yaml("x: " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match=f"larger than {MAX_YAML_BYTES} bytes"):
        RepoConfig.from_yaml(VALID_CONFIG + "#" * MAX_YAML_BYTES)
    with pytest.raises(ConfigError, match="not UTF-8"):
        RepoConfig.from_yaml(b"\xff\xfe" + VALID_CONFIG.encode())


def test_python_object_tags_are_never_constructed() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        RepoConfig.from_yaml(VALID_CONFIG + "x: !!python/object/apply:os.system ['touch /tmp/owned']\n")


def test_federity_yaml_whose_model_args_is_a_list_names_the_key() -> None:
    text = VALID_CONFIG.replace("  args:\n    in_features: 4\n", "  args: [4]\n")
    with pytest.raises(ConfigError, match=r"^federity.yaml at 0123456789ab: 'model.args': must be a mapping\n") as e:
        RepoConfig.from_yaml(text, "federity.yaml at 0123456789ab")
    assert "args maps names to numbers or strings" in e.value.hint


def test_federity_yaml_whose_task_is_a_number_names_the_key() -> None:
    document = {**VALID_CONFIG_DATA, "task": 5}
    with pytest.raises(ConfigError, match=r"^federity.yaml at 0123456789ab: 'task': must be a mapping\n") as e:
        RepoConfig.from_yaml(yaml.safe_dump(document), "federity.yaml at 0123456789ab")
    assert "metrics: [accuracy]" in e.value.hint


@pytest.mark.parametrize("path", ["../../.ssh/id_rsa", "/etc/passwd", "a/../../x", "./tokenizer.json", "a//b",
                                  "tokenizer.json/", "~/.config/solana/id.json", "x y.json"])
def test_a_tokenizer_path_outside_the_repository_or_not_plain_is_refused(path: str) -> None:
    """The tokenizer is read only as a file of the commit (git show), and only by a plain relative path."""
    document = {**VALID_CONFIG_DATA, "task": {"tokenizer": path}}
    with pytest.raises(ConfigError, match=r"'task.tokenizer': must be a plain relative path of a file in the "
                                          r"repository"):
        RepoConfig.from_yaml(yaml.safe_dump(document), "federity.yaml at 0123456789ab")


def test_federity_yaml_with_an_unknown_key_or_a_negative_staleness_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'aggregation\.max_stalenes'"):
        RepoConfig.from_yaml(VALID_CONFIG.replace("max_staleness", "max_stalenes"))
    with pytest.raises(ConfigError, match="unknown key 'extra'"):
        RepoConfig.from_yaml(VALID_CONFIG + "extra: 1\n")
    with pytest.raises(ConfigError, match=r"'aggregation.max_staleness': Input should be greater than or equal"):
        RepoConfig.from_yaml(VALID_CONFIG.replace("max_staleness: 1", "max_staleness: -1"))
    with pytest.raises(ConfigError, match=r"'task.loader': must be module:function"):
        RepoConfig.from_yaml(VALID_CONFIG.replace("  label: label\n", "  label: label\n  loader: rm -rf\n"))


def test_a_commit_whose_federity_yaml_is_malformed_is_named_by_the_error(repo: Repository, owner: Wallet) -> None:
    document = yaml.safe_load((repo.root / "federity.yaml").read_text())
    document["model"]["args"] = [4]
    (repo.root / "federity.yaml").write_text(yaml.safe_dump(document))
    (repo.root / "params.yaml").write_text("lr: 0.1\nbatch_size: 0.5\n")
    git(repo.root, "-c", "user.name=attacker", "-c", "user.email=a@example.org", "commit", "-qam", "hostile")
    commit = git(repo.root, "rev-parse", "HEAD")
    with pytest.raises(ConfigError, match=rf"^federity.yaml at {commit[:12]}: 'model.args': must be a mapping\n"):
        repo.config(commit)
    from federity.repo.train import training_params

    with pytest.raises(ConfigError, match=rf"^params.yaml at {commit[:12]}: 'batch_size': Input should be a valid "
                                          "integer"):
        training_params(repo, commit)


# --- params.yaml --------------------------------------------------------------------------------------------------

VALID_PARAMS = yaml.safe_dump({"lr": 0.1, "epochs": 5, "batch_size": 32, "seed": 0, "optimizer": "sgd",
                               "momentum": 0.0, "weight_decay": 0.0, "mu": 0.0}, sort_keys=False)


def _accepts_params(raw: str | bytes) -> None:
    try:
        params = TrainingParams.from_yaml(raw, "params.yaml at 0123456789ab")
    except ConfigError as exc:
        assert exc.message.startswith("params.yaml at 0123456789ab") and exc.hint and "\n" not in exc.message
        return
    assert math.isfinite(params.lr) and params.lr > 0 and math.isfinite(params.momentum)
    assert isinstance(params.mu, float) and math.isfinite(params.mu) and 0 <= params.mu <= 1e6
    assert isinstance(params.epochs, int) and params.epochs >= 1 and not isinstance(params.epochs, bool)
    assert isinstance(params.batch_size, int) and params.batch_size >= 1 and isinstance(params.seed, int)


@settings(max_examples=400, **_SETTINGS)
@given(st.data())
def test_mutated_params_yaml_is_read_or_refused_with_a_config_error(data: st.DataObject) -> None:
    _accepts_params(_mutate(VALID_PARAMS.encode(), data.draw))


@settings(max_examples=400, **_SETTINGS)
@given(st.sampled_from(["lr", "epochs", "batch_size", "seed", "optimizer", "momentum", "weight_decay", "mu",
                       "other"]),
       json_values | st.sampled_from([".nan", ".inf", "-.inf", "abc", "0.5", "1e400", "!!binary aGk=", "2020-13-45"]))
def test_params_yaml_with_any_value_for_any_parameter_is_read_or_refused(key: str, value: Any) -> None:
    text = VALID_PARAMS + f"{key}: {value}\n" if isinstance(value, str) else yaml.safe_dump(
        {**yaml.safe_load(VALID_PARAMS), key: value})
    _accepts_params(text)


@pytest.mark.parametrize(("text", "message"), [
    ("batch_size: 0.5\n", r"'batch_size': Input should be a valid integer"),
    ("seed: abc\n", r"'seed': Input should be a valid integer"),
    ("epochs: -1\n", r"'epochs': Input should be greater than or equal to 1"),
    ("lr: .nan\n", r"'lr': must be a finite number"),
    ("lr: 1.0e+400\n", r"'lr': must be a finite number"),
    ("optimizer: rmsprop\n", r"'optimizer': Input should be 'sgd' or 'adam'"),
    ("lr: [0.1\n", r"is not valid YAML \(line 2, column 1\)"),
    ("- 1\n- 2\n", r"is not a mapping"),
])
def test_params_yaml_examples_are_refused_naming_the_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^params.yaml at 0123456789ab:? {message}"):
        TrainingParams.from_yaml(text, "params.yaml at 0123456789ab")


# --- update.json --------------------------------------------------------------------------------------------------

VALID_UPDATE = {
    "schema": "federity/update/v1", "base": BASE, "round": 3, "nonce": "r3-abc", "n_samples": 120,
    "metrics": {"loss": 0.25, "accuracy": 0.9}, "params": {"lr": 0.1, "epochs": 5, "batch_size": 32, "seed": 7},
    "contract": {"expectations": 6, "passed": True}, "proof": None, "branch": "site/pediatric",
}
VALID_UPDATE_BYTES = json.dumps(VALID_UPDATE, indent=1).encode()


def _accepts_update(raw: Any) -> None:
    try:
        record = parse_update_record(raw, "update.json of update 0123456789ab")
    except UpdateError as exc:
        assert "update.json of update 0123456789ab" in exc.message and len(exc.message) < 600
        assert "\n" not in exc.message
        return
    assert isinstance(record, UpdateRecord)
    assert 1 <= record.n_samples <= MAX_SAMPLES and not isinstance(record.n_samples, bool)
    assert all(math.isfinite(v) for v in record.metrics.values()) and len(record.base) == 40
    float(record.n_samples) * 10**6  # the weight of a sample-weighted mean never overflows


@settings(max_examples=400, **_SETTINGS)
@given(st.data())
def test_mutated_update_json_is_read_or_refused_with_an_update_error(data: st.DataObject) -> None:
    _accepts_update(_mutate(VALID_UPDATE_BYTES, data.draw))


@settings(max_examples=400, **_SETTINGS)
@given(st.data(), json_values | st.integers() | st.sampled_from([10**400, -1, 0, True, "many", float("nan")]))
def test_update_json_with_any_value_at_any_key_is_read_or_refused(data: st.DataObject, value: Any) -> None:
    document = _replace_path(VALID_UPDATE, data.draw, value)
    _accepts_update(document)
    _accepts_update(json.dumps(document).encode())


@settings(max_examples=200, **_SETTINGS)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_bytes_as_update_json_are_refused_with_an_update_error(raw: bytes | str) -> None:
    _accepts_update(raw)


@pytest.mark.parametrize(("change", "message"), [
    ({"metrics": [1, 2]}, r"'metrics': must be a mapping"),
    ({"n_samples": "many"}, r"'n_samples': Input should be a valid integer"),
    ({"n_samples": 10**400}, r"'n_samples': Input should be less than or equal to 1000000000000"),
    ({"n_samples": 0}, r"'n_samples': Input should be greater than or equal to 1"),
    ({"metrics": {"loss": float("inf")}}, r"'metrics.loss': must be a finite number"),
    ({"base": "HEAD"}, r"'base': String should match pattern"),
    ({"extra": 1}, r"unknown key 'extra'"),
    ({"branch": "../../.git/config"}, r"'branch': .*is not a model branch name"),
    ({"branch": "updates/r1/someone"}, r"'branch': .*is not a model branch name"),
    ({"branch": "main\n"}, r"'branch': .*is not a model branch name"),
    ({"branch": "a/b/c/d/e"}, r"'branch': .*is not a model branch name"),
    ({"branch": "x.lock"}, r"'branch': .*is not a model branch name"),
    ({"branch": "a" * 300}, r"'branch': String should have at most 259 characters"),
    ({"branch": 7}, r"'branch': Input should be a valid string"),
])
def test_update_json_examples_are_refused_naming_the_update_and_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(UpdateError, match=rf"^malformed update.json of update 0123456789ab: {message}") as e:
        parse_update_record({**VALID_UPDATE, **change}, "update.json of update 0123456789ab")
    assert "reject the update" in e.value.hint


def test_update_json_with_a_huge_integer_or_nan_text_is_refused() -> None:
    with pytest.raises(UpdateError, match="less than or equal to 1000000000000"):
        parse_update_record(VALID_UPDATE_BYTES.replace(b'"n_samples": 120', b'"n_samples": 1' + b"0" * 400), "u")
    with pytest.raises(UpdateError, match="too deeply nested, or a number too large"):
        parse_update_record(VALID_UPDATE_BYTES.replace(b'"n_samples": 120', b'"n_samples": 1' + b"0" * 5000), "u")
    with pytest.raises(UpdateError, match="NaN is not a JSON number"):
        parse_update_record(VALID_UPDATE_BYTES.replace(b'"loss": 0.25', b'"loss": NaN'), "u")
    with pytest.raises(UpdateError, match="a key appears twice"):
        parse_update_record(VALID_UPDATE_BYTES.replace(b'"round": 3', b'"round": 3, "round": 4'), "u")
    with pytest.raises(UpdateError, match="too deeply nested"):
        parse_update_record(b"[" * 100_000 + b"]" * 100_000, "u")


# --- review notes -------------------------------------------------------------------------------------------------

def _review(seq: int, status: str = "approved", update: str = UPDATE) -> dict[str, Any]:
    reviewer = str(REVIEWER.pubkey())
    payload = signed_review_payload("repo-id", update, status, None, reviewer, seq)
    return {"update": update, "status": status, "reason": None, "reviewer": reviewer, "seq": seq,
            "signature": str(REVIEWER.sign_message(payload))}


VALID_REVIEWS = [_review(0, "verified"), _review(1, "approved"), _review(2, "rejected")]
VALID_NOTE = {"schema": "federity/reviews/v2", "reviews": VALID_REVIEWS}


def test_review_payloads_verify_and_the_note_round_trips() -> None:
    from federity.identity import verify_signature

    reviews = parse_review_note(json.dumps(VALID_NOTE).encode(), UPDATE)
    assert [r.seq for r in reviews] == [0, 1, 2]
    assert all(verify_signature(r.reviewer, r.payload("repo-id"), r.signature) for r in reviews)
    assert not verify_signature(reviews[1].reviewer, reviews[1].payload("other-repo"), reviews[1].signature)
    assert parse_review_note(review_note(reviews)) == reviews
    assert parse_review_note(VALID_NOTE, "ef" * 20) == []


@settings(max_examples=400, **_SETTINGS)
@given(st.data(), json_values)
def test_one_malformed_review_entry_never_erases_the_valid_ones(data: st.DataObject, value: Any) -> None:
    index = data.draw(st.integers(0, len(VALID_REVIEWS) - 1))
    entries = [dict(r) for r in VALID_REVIEWS]
    if data.draw(st.booleans()):
        entries[index] = value  # the entry replaced by anything
    else:
        entries[index] = _replace_path(entries[index], data.draw, value)  # one field of it changed
    reviews = parse_review_note({"schema": "federity/reviews/v2", "reviews": entries}, UPDATE)
    others = [Review.model_validate(r) for i, r in enumerate(VALID_REVIEWS) if i != index]
    assert all(review in reviews for review in others)
    assert len(reviews) in (len(others), len(others) + 1)


@settings(max_examples=400, **_SETTINGS)
@given(st.data())
def test_a_mutated_review_note_yields_only_well_formed_reviews(data: st.DataObject) -> None:
    raw = _mutate(json.dumps(VALID_NOTE).encode(), data.draw)
    reviews = parse_review_note(raw)
    assert isinstance(reviews, list) and all(isinstance(r, Review) for r in reviews)


@settings(max_examples=200, **_SETTINGS)
@given(st.binary(max_size=200) | st.text(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_bytes_as_a_review_note_have_no_reviews(raw: bytes | str) -> None:
    assert parse_review_note(raw) == []


def test_a_review_whose_reviewer_is_an_object_is_skipped_and_the_others_kept() -> None:
    entries = [*VALID_REVIEWS[:2], {**VALID_REVIEWS[2], "reviewer": {"pubkey": str(REVIEWER.pubkey())}}]
    reviews = parse_review_note({"schema": "federity/reviews/v2", "reviews": entries}, UPDATE)
    assert [r.seq for r in reviews] == [0, 1]
    missing_seq = {k: v for k, v in VALID_REVIEWS[0].items() if k != "seq"}
    assert parse_review_note({"schema": "federity/reviews/v2", "reviews": [missing_seq]}) == []


# --- NFT and MLflow notes -----------------------------------------------------------------------------------------

VALID_NFT = {"mint": str(Keypair().pubkey()), "ledger": "embedded", "minter": OWNER, "recipient": MEMBER,
             "lamports_spent": 4_000_000, "signatures": [str(REVIEWER.sign_message(b"x"))]}
VALID_MLFLOW = {"run_id": "0123456789abcdef0123456789abcdef", "tracking_uri": "http://127.0.0.1:5000"}


@settings(max_examples=250, **_SETTINGS)
@given(st.data(), json_values)
def test_nft_notes_are_read_or_absent(data: st.DataObject, value: Any) -> None:
    assert parse_nft_note(VALID_NFT) == NftNote.model_validate(VALID_NFT)
    for raw in (_mutate(json.dumps(VALID_NFT).encode(), data.draw), _replace_path(VALID_NFT, data.draw, value)):
        note = parse_nft_note(raw)
        assert note is None or isinstance(note, NftNote)


@settings(max_examples=250, **_SETTINGS)
@given(st.data(), json_values)
def test_mlflow_notes_are_read_or_absent(data: st.DataObject, value: Any) -> None:
    assert parse_mlflow_note(json.dumps(VALID_MLFLOW)) == MlflowNote.model_validate(VALID_MLFLOW)
    for raw in (_mutate(json.dumps(VALID_MLFLOW).encode(), data.draw),
                _replace_path(VALID_MLFLOW, data.draw, value)):
        note = parse_mlflow_note(raw)
        assert note is None or isinstance(note, MlflowNote)


def test_malformed_nft_and_mlflow_notes_read_as_absent() -> None:
    assert parse_nft_note({**VALID_NFT, "mint": {"address": "x"}}) is None
    assert parse_nft_note(b"[" * 100_000) is None
    assert parse_mlflow_note({"run_id": "../../etc", "tracking_uri": None}) is None
    assert parse_mlflow_note({"run_id": "abc", "tracking_uri": "http://host/\n"}) is None


# --- safetensors --------------------------------------------------------------------------------------------------

VALID_WEIGHTS = tensors_to_bytes({"0.weight": np.arange(8, dtype=np.float32).reshape(2, 4),
                                  "0.bias": np.ones(2, dtype=np.float64), "steps": np.array([3], dtype=np.int64)})
HEADER_LEN = struct.unpack("<Q", VALID_WEIGHTS[:8])[0]
VALID_HEADER = json.loads(VALID_WEIGHTS[8:8 + HEADER_LEN])


def _accepts_weights(data: bytes) -> None:
    """``data`` is read or refused with a short WeightsError naming it, by read_tensors and, the same way, by the
    piecewise reader the aggregation engine uses (TensorFile)."""
    source = "the weights of update 0123456789ab"
    try:
        tensors = read_tensors(data, source)
    except WeightsError as exc:
        assert exc.message.startswith(source) and len(exc.message) < 600
        assert "\n" not in exc.message
        if "damaged safetensors file" not in exc.message:  # a header refusal: the piecewise reader refuses alike
            with pytest.raises(WeightsError) as piecewise:
                _tensor_file(data, source)
            assert piecewise.value.message == exc.message
        return
    assert sum(t.nbytes for t in tensors.values()) <= len(data)
    read = _tensor_file(data, source)
    assert read.keys() == tensors.keys()
    assert all(read[name].tobytes() == tensors[name].tobytes() for name in tensors)


def _tensor_file(data: bytes, source: str) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "weights.safetensors"
        path.write_bytes(data)
        with TensorFile(path, source) as file:
            return {name: file.tensor(name) for name in file.layout}


def _with_header(header: Any, data: bytes = VALID_WEIGHTS[8 + HEADER_LEN:]) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@settings(max_examples=500, **_SETTINGS)
@given(st.data())
def test_mutated_safetensors_bytes_are_read_or_refused_with_a_weights_error(data: st.DataObject) -> None:
    _accepts_weights(_mutate(VALID_WEIGHTS, data.draw))


@settings(max_examples=500, **_SETTINGS)
@given(st.data(), json_values | st.integers() | st.sampled_from(["BF16", "F8_E4M3", "Q32", [-1], [2**40, 2**40],
                                                                 [0, 2**62], "../x", "a" * 100_000]))
def test_a_safetensors_header_with_any_value_at_any_key_is_read_or_refused(data: st.DataObject, value: Any) -> None:
    _accepts_weights(_with_header(_replace_path(VALID_HEADER, data.draw, value)))


@pytest.mark.parametrize(("header", "message"), [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, "overlaps or leaves a gap"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 800]}}, "do not fit its shape and the file"),
    ({"a": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}, "a dtype Federity does not read"),
    ({"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, "too many elements"),
    ({"a": {"dtype": "F32", "shape": [0, 2**62], "data_offsets": [0, 0]}}, "invalid shape"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, "invalid shape"),
    ({"../../.git/config": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, "is not a plain name"),
    ({"x" * 100_000: {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, "is not a plain name"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, "does not cover the file"),
    ([1, 2], "header is not a table"),
])
def test_hostile_safetensors_headers_are_refused(header: Any, message: str) -> None:
    with pytest.raises(WeightsError, match=message) as e:
        read_tensors(_with_header(header, b"\0" * 8), "the weights of update 0123456789ab")
    assert len(e.value.message) < 300


def test_duplicate_names_deep_headers_and_huge_lengths_are_refused() -> None:
    raw = (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
           b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}')
    with pytest.raises(WeightsError, match="a tensor name appears twice"):
        read_tensors(struct.pack("<Q", len(raw)) + raw + b"\0" * 8, "w")
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(WeightsError, match="header is not JSON"):
        read_tensors(struct.pack("<Q", len(deep)) + deep, "w")
    with pytest.raises(WeightsError, match="bad header length"):
        read_tensors(struct.pack("<Q", 2**63) + b"{}", "w")
    with pytest.raises(PickleRefusedError):
        read_tensors(b"\x80\x04\x95" + b"\0" * 16, "w")


# --- proof/chain.json ---------------------------------------------------------------------------------------------

VALID_CHAIN = {
    "schema": 1, "circuit": {"schema": 2, "features": 4, "classes": 2, "batch": 8, "lr": 0.1, "scale": 10},
    "compiled_circuit_sha256": "1" * 64, "head": {"weight": "0.weight", "bias": "0.bias"}, "repository": "repo-id",
    "base": BASE, "author": OWNER, "nonce": None, "weights": [["0x1a", "0x2b"], ["0x3c", "0x4d"], ["0x5e", "0x6f"]],
    "batches": ["0x77", "0x88"], "commitment": "2" * 64, "audited": [1], "proofs": {"1": "3" * 64},
    "srs_sha256": "4" * 64,
}


def _accepts_chain(raw: bytes) -> None:
    try:
        chain = parse_proof_chain(raw, "proof/chain.json of update 0123456789ab")
    except ProofError as exc:
        assert "proof/chain.json of update 0123456789ab" in exc.message and "\n" not in exc.message
        return
    assert len(chain["weights"]) == len(chain["batches"]) + 1
    assert math.isfinite(chain["circuit"]["lr"])


@settings(max_examples=400, **_SETTINGS)
@given(st.data())
def test_a_mutated_chain_json_is_read_or_refused_with_a_proof_error(data: st.DataObject) -> None:
    assert parse_proof_chain(json.dumps(VALID_CHAIN).encode(), "c")["audited"] == [1]
    _accepts_chain(_mutate(json.dumps(VALID_CHAIN, indent=1).encode(), data.draw))


@settings(max_examples=400, **_SETTINGS)
@given(st.data(), json_values | st.sampled_from([10**400, 1e308, [], {}, "x" * 1000]))
def test_a_chain_json_with_any_value_at_any_key_is_read_or_refused(data: st.DataObject, value: Any) -> None:
    try:
        raw = json.dumps(_replace_path(VALID_CHAIN, data.draw, value)).encode()
    except ValueError:
        return
    _accepts_chain(raw)


def test_a_chain_json_with_a_huge_lr_or_a_list_head_is_a_proof_error() -> None:
    with pytest.raises(ProofError, match=r"'circuit.lr'"):
        parse_proof_chain(json.dumps({**VALID_CHAIN, "circuit": {**VALID_CHAIN["circuit"], "lr": 10**400}}), "c")
    with pytest.raises(ProofError, match=r"'head': must be a mapping"):
        parse_proof_chain(json.dumps({**VALID_CHAIN, "head": ["0.weight", "0.bias"]}), "c")
    with pytest.raises(ProofError, match="too deeply nested"):
        parse_proof_chain(b"[" * 100_000 + b"]" * 100_000, "c")

