"""Text tasks: a tokenizer the owner builds and commits, sites' text read through it (never the text itself in
what leaves the site), and the Transformer encoder classifier through a full round in both frameworks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from federity.errors import ConfigError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.params import site_dataset
from federity.text import load_tokenizer, token_ids, vocabulary_ids
from tests.conftest import full_round

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


def _site_notes(path: Path, site: int) -> Path:
    """A site's 64 labelled notes, as a CSV file beside ``path``."""
    return _notes(path.with_suffix(".csv"), 64, seed=site)


def test_token_ids_reserve_zero_for_padding_and_truncate(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(_tokenizer(tmp_path / "t.json").read_bytes(), "tokenizer.json")
    ids = token_ids(["fever and cough", "fine", "patient reports no pain and fever"], tokenizer, max_length=4)
    assert ids.shape == (3, 4) and ids.dtype == np.int64
    assert ids[1, 1:].tolist() == [0, 0, 0] and (ids[ids != 0] >= 1).all()
    assert ids[0, 0] == tokenizer.token_to_id("fever") + 1 and vocabulary_ids(tokenizer) == len(WORDS) + 3


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_text_classifier_goes_through_a_full_round_and_the_contract_never_sees_the_text(
        tmp_path: Path, owner: Wallet, contributor: Wallet, site_b: Wallet, framework: str) -> None:
    repo = full_round(tmp_path, (owner, contributor, site_b), framework, "transformer-encoder",
                      ["vocab_size=16", "max_length=8", "dim=16", "layers=1", "heads=2"], _site_notes,
                      tokenizer=_tokenizer(tmp_path / "owner-tokenizer.json"),
                      params={"lr": 0.01, "epochs": 8, "batch_size": 8, "seed": 0, "optimizer": "adam"})
    assert repo.config().task["tokenizer"] == "tokenizer.json" and repo.config().task["max_length"] == 8
    seen = site_dataset(repo, repo.head(), repo.config(), _site_notes(tmp_path / "seen" / "notes", 0))
    # the contract's view holds counts, not text; "patient reports <word> and <word>" is 5 tokens
    assert list(seen.table.columns) == ["label", "tokens"] and seen.features.shape == (64, 5)
    metrics = [u.metrics for u in repo.updates()]
    assert all(m["accuracy"] > 0.75 for m in metrics)  # symptom words are learned from 64 notes a site


def test_init_refuses_a_tokenizer_whose_ids_the_model_cannot_embed_and_creates_nothing(tmp_path: Path,
                                                                                       owner: Wallet) -> None:
    with pytest.raises(ConfigError, match=r"the tokenizer makes 15 ids .* but the model embeds vocab_size=10"):
        Repository.init(tmp_path / "repo", owner, name="notes", framework="torch", model="transformer-encoder",
                        tokenizer=_tokenizer(tmp_path / "t.json"), model_args=["vocab_size=10"])
    assert not (tmp_path / "repo").exists()


def _unlabeled_notes(path: Path, site: int) -> Path:
    """Notes without labels (a language model's data): the text column alone."""
    labelled = _site_notes(path, site)
    pd.read_csv(labelled)[["text"]].to_csv(labelled, index=False)
    return labelled


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_language_model_learns_the_next_token_in_a_full_round(tmp_path: Path, owner: Wallet,
                                                                contributor: Wallet, site_b: Wallet,
                                                                framework: str) -> None:
    repo = full_round(tmp_path, (owner, contributor, site_b), framework, "transformer-decoder",
                      ["vocab_size=16", "max_length=8", "dim=16", "layers=1", "heads=2"], _unlabeled_notes,
                      tokenizer=_tokenizer(tmp_path / "owner-tokenizer.json"),
                      params={"lr": 0.01, "epochs": 8, "batch_size": 8, "seed": 0, "optimizer": "adam"})
    assert repo.config().task["loss"] == "next_token"
    metrics = [u.metrics for u in repo.updates()]
    # after "patient" always comes "reports", after "reports" a symptom or a wellness word, then "and"
    assert all(set(m) == {"loss", "accuracy"} and m["accuracy"] > 0.55 for m in metrics)
