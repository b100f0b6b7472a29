"""Text tasks: a tokenizer the owner builds and commits, sites' text read through it (never the text itself in
what leaves the site), and the Transformer encoder classifier through a full round in both frameworks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from federity.errors import ConfigError, DataError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.params import site_dataset
from federity.text import load_tokenizer, token_ids, vocabulary_ids
from federity.weights import read_tensors
from tests.conftest import full_round, train_and_push

WORDS = ["fever", "cough", "rash", "pain", "fine", "well", "healthy", "normal", "patient", "reports", "no", "and"]


def _tokenizer(path: Path) -> Path:
    """A word-level tokenizer trained on the owner's own vocabulary, saved as the tokenizers library does."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator([" ".join(WORDS)], trainers.WordLevelTrainer(special_tokens=["[UNK]", "[CLS]"]))
    tokenizer.save(str(path))
    return path


def _notes(path: Path, n: int, seed: int) -> Path:
    """Clinical-note-like sentences: label 1 when a symptom word is in the note."""
    rng = np.random.default_rng(seed)
    sick, well = WORDS[:4], WORDS[4:8]
    labels = rng.integers(0, 2, n)
    texts = [f"patient reports {' and '.join(rng.choice(sick if y else well, 2))}" for y in labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


def test_token_ids_reserve_zero_for_padding_and_truncate(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(_tokenizer(tmp_path / "t.json").read_bytes(), "tokenizer.json")
    ids = token_ids(["fever and cough", "fine", "patient reports no pain and fever"], tokenizer, max_length=4)
    assert ids.shape == (3, 4) and ids.dtype == np.int64
    assert ids[1, 1:].tolist() == [0, 0, 0] and (ids[ids != 0] >= 1).all()
    assert ids[0, 0] == tokenizer.token_to_id("fever") + 1 and vocabulary_ids(tokenizer) == len(WORDS) + 3


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "is not a tokenizer the tokenizers library can read"),
    (b'{"model": {"type": "Unknown"}}', "is not a tokenizer the tokenizers library can read"),
    (b"\xff\xfe", "is not a tokenizer the tokenizers library can read"),
    (b" " * (16 * 1024 * 1024 + 1), "more than a tokenizer may be"),
])
def test_a_hostile_tokenizer_file_is_a_clear_error(raw: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_tokenizer(raw, "tokenizer.json at 1a2b3c")


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_text_classifier_goes_through_a_full_round_and_the_contract_never_sees_the_text(
        tmp_path: Path, owner: Wallet, contributor: Wallet, site_b: Wallet, framework: str) -> None:
    tokenizer = _tokenizer(tmp_path / "owner-tokenizer.json")
    repo, _ = Repository.init(tmp_path / "repo", owner, name="notes", framework=framework,
                              model="transformer-encoder", tokenizer=tokenizer, remote=str(tmp_path / "remote.git"),
                              model_args=["vocab_size=16", "max_length=8", "dim=16", "layers=1", "heads=2"],
                              params={"lr": 0.01, "epochs": 4, "batch_size": 8, "seed": 0, "optimizer": "adam"})
    assert repo.config().task["tokenizer"] == "tokenizer.json" and repo.config().task["max_length"] == 8
    for wallet in (contributor, site_b):
        repo.add_member(owner, wallet.pubkey, "contributor")
    repo.push()
    sites = [Repository.clone(str(tmp_path / "remote.git"), tmp_path / f"site-{i}") for i in range(2)]
    data = [_notes(tmp_path / f"data-{i}" / "notes.csv", 64, seed=i) for i in range(2)]
    seen = site_dataset(sites[0], sites[0].head(), sites[0].config(), data[0])
    # the contract's view holds counts, not text; "patient reports <word> and <word>" is 5 tokens
    assert list(seen.table.columns) == ["label", "tokens"] and seen.features.shape == (64, 5)
    updates = [train_and_push(site, wallet, path)
               for site, wallet, path in zip(sites, (contributor, site_b), data, strict=True)]
    repo.pull()
    for update in updates:
        repo.review(owner, update, approve=True)
    result = repo.aggregate(owner)
    trained = [read_tensors(repo.store.read(u), u) for u in updates]
    aggregate = read_tensors(repo.store.read(result.commit), "aggregate")
    for name, value in aggregate.items():  # 64 notes at each site: the plain mean
        np.testing.assert_allclose(value, (trained[0][name] + trained[1][name]) / 2, rtol=1e-5, atol=1e-6)
    assert repo.verify().ok
    metrics = [u.metrics for u in repo.updates()]
    assert all(m["accuracy"] > 0.75 for m in metrics)  # symptom words are learned from 64 notes a site


def test_init_refuses_a_tokenizer_whose_ids_the_model_cannot_embed_and_creates_nothing(tmp_path: Path,
                                                                                       owner: Wallet) -> None:
    with pytest.raises(ConfigError, match=r"the tokenizer makes 15 ids .* but the model embeds vocab_size=10"):
        Repository.init(tmp_path / "repo", owner, name="notes", framework="torch", model="transformer-encoder",
                        tokenizer=_tokenizer(tmp_path / "t.json"), model_args=["vocab_size=10"])
    assert not (tmp_path / "repo").exists()


def test_a_text_dataset_error_names_neither_the_text_nor_the_path(tmp_path: Path, owner: Wallet) -> None:
    repo, _ = Repository.init(tmp_path / "repo", owner, name="notes", framework="torch", model="transformer-encoder",
                              tokenizer=_tokenizer(tmp_path / "t.json"), model_args=["vocab_size=16"])
    secret = tmp_path / "patient-jane-doe" / "notes.csv"
    secret.parent.mkdir()
    pd.DataFrame({"text": ["jane doe has fever", None], "label": [1, 0]}).to_csv(secret, index=False)
    with pytest.raises(DataError) as caught:
        site_dataset(repo, repo.head(), repo.config(), secret)
    assert "not text" in caught.value.message and "jane" not in str(caught.value) and caught.value.__context__ is None


def _unlabeled_notes(path: Path, site: int) -> Path:
    """Notes without labels (a language model's data): the text column alone."""
    labelled = _notes(path.with_suffix(".csv"), 64, seed=site)
    pd.read_csv(labelled)[["text"]].to_csv(labelled, index=False)
    return labelled


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_language_model_learns_the_next_token_in_a_full_round(tmp_path: Path, owner: Wallet,
                                                                contributor: Wallet, site_b: Wallet,
                                                                framework: str) -> None:
    repo = full_round(tmp_path, (owner, contributor, site_b), framework, "transformer-decoder",
                      ["vocab_size=16", "max_length=8", "dim=16", "layers=1", "heads=2"], _unlabeled_notes,
                      tokenizer=_tokenizer(tmp_path / "owner-tokenizer.json"),
                      params={"lr": 0.01, "epochs": 4, "batch_size": 8, "seed": 0, "optimizer": "adam"})
    assert repo.config().task["loss"] == "next_token"
    metrics = [u.metrics for u in repo.updates()]
    # after "patient" always comes "reports", after "reports" a symptom or a wellness word, then "and"
    assert all(set(m) == {"loss", "accuracy"} and m["accuracy"] > 0.55 for m in metrics)
