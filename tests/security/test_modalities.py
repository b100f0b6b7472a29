"""Hostile files of the newer data modalities: a text task's tokenizer (the owner's file, read from a commit) and
a site's graph. Each is refused with a clear error naming no value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federity.data import load_dataset
from federity.errors import ConfigError, DataError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.params import site_dataset
from federity.text import load_tokenizer
from tests.conftest import snapshot
from tests.unit.test_graphs import _communities
from tests.unit.test_text import _tokenizer


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "is not a tokenizer the tokenizers library can read"),
    (b'{"model": {"type": "Unknown"}}', "is not a tokenizer the tokenizers library can read"),
    (b"\xff\xfe", "is not a tokenizer the tokenizers library can read"),
    (b" " * (16 * 1024 * 1024 + 1), "more than a tokenizer may be"),
])
def test_a_hostile_tokenizer_file_is_a_clear_error(raw: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_tokenizer(raw, "tokenizer.json at 1a2b3c")


@pytest.mark.parametrize(("edges", "message"), [
    (np.array([[0, 1], [1, 7]]), "edge_index names nodes outside the graph's 5"),
    (np.array([[0, -1], [1, 2]]), "edge_index names nodes outside the graph's 5"),
    (np.array([[0.0, 1.0], [1.0, 2.0]]), r"edge_index has shape \(2, 2\) and dtype kind 'f'"),
    (np.array([0, 1, 2]), r"edge_index has shape \(3,\)"),
])
def test_a_graph_whose_edges_name_no_node_is_refused_without_values(tmp_path: Path, edges: np.ndarray,
                                                                    message: str) -> None:
    np.savez(tmp_path / "g.npz", x=np.zeros((5, 3), np.float32), edge_index=edges, y=np.zeros(5, np.int64))
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "g.npz")


def test_a_text_dataset_error_names_neither_the_text_nor_the_path(tmp_path: Path, owner: Wallet) -> None:
    repo, _ = Repository.init(tmp_path / "repo", owner, name="notes", framework="torch", model="transformer-encoder",
                              tokenizer=_tokenizer(tmp_path / "t.json"), model_args=["vocab_size=16"])
    secret = tmp_path / "patient-jane-doe" / "notes.csv"
    secret.parent.mkdir()
    pd.DataFrame({"text": ["jane doe has fever", None], "label": [1, 0]}).to_csv(secret, index=False)
    with pytest.raises(DataError) as caught:
        site_dataset(repo, repo.head(), repo.config(), secret)
    assert "not text" in caught.value.message and "jane" not in str(caught.value) and caught.value.__context__ is None


def test_a_tensorflow_repository_refuses_a_graph_and_changes_nothing(tmp_path: Path, owner: Wallet) -> None:
    repo, _ = Repository.init(tmp_path / "repo", owner, name="x", framework="tensorflow", model="cnn",
                              model_args=["in_channels=1", "num_classes=2"])  # its contract counts no columns
    before = snapshot(repo)
    with pytest.raises(DataError, match=r"the dataset is a graph .* the TensorFlow zoo has no graph model"):
        repo.train(owner, _communities(tmp_path / "g.npz", 0))
    assert snapshot(repo) == before
