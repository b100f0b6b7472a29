"""The demo's data: scikit-learn's bundled breast-cancer dataset, split non-IID across hospitals.

Each hospital's shard is written only into that hospital's own directory. The owner keeps a held-out test set
for evaluating the global model. Features are standardised with constants the consortium publishes (the mean
and standard deviation of the owner's held-out set), as sites would agree on a preprocessing recipe; no site's
data is used to compute them. The centralised baseline trains the same model, with the same optimiser and the
same number of passes over the data, on the union of all shards — the accuracy federated training should reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

LABEL = "label"


@dataclass
class DemoSplit:
    """The held-out test set and one training shard per hospital, as DataFrames with a ``label`` column."""

    columns: list[str]
    test: pd.DataFrame
    shards: list[pd.DataFrame]


def _column_name(name: str) -> str:
    return name.replace(" ", "_")


def split_breast_cancer(hospitals: int, seed: int = 0, test_fraction: float = 0.2,
                        label_skew: float = 0.7) -> DemoSplit:
    """Split the dataset: a stratified held-out test set, then shards whose label mix differs by hospital
    (hospital ``i`` draws a ``label_skew`` share of its examples from class ``i % 2``) and whose sizes differ."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    columns = [_column_name(n) for n in bunch.feature_names]
    x, y = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: round(test_fraction * (y == c).sum())]
                               for c in (0, 1)])
    train_mask = np.ones(len(y), bool)
    train_mask[test_idx] = False
    mean, std = x[test_idx].mean(axis=0), x[test_idx].std(axis=0) + 1e-8  # the published constants
    x = (x - mean) / std

    pools = {c: list(rng.permutation(np.flatnonzero(train_mask & (y == c)))) for c in (0, 1)}
    sizes = rng.dirichlet(np.full(hospitals, 4.0)) * train_mask.sum()
    shards_idx: list[list[int]] = [[] for _ in range(hospitals)]
    for h in range(hospitals):
        for _ in range(int(sizes[h])):
            wanted = h % 2 if rng.random() < label_skew else 1 - h % 2
            source = pools[wanted] or pools[1 - wanted]
            if source:
                shards_idx[h].append(source.pop())
    for c in (0, 1):  # whatever is left goes round-robin, so every training example is in exactly one shard
        for i, idx in enumerate(pools[c]):
            shards_idx[i % hospitals].append(idx)

    def frame(idx: np.ndarray | list[int]) -> pd.DataFrame:
        table = pd.DataFrame(x[idx], columns=columns)
        table[LABEL] = y[idx]
        return table

    return DemoSplit(columns, frame(test_idx), [frame(sorted(s)) for s in shards_idx])


def write_split(split: DemoSplit, owner_dir: Path, hospital_dirs: list[Path]) -> tuple[Path, list[Path]]:
    """Write the test set into the owner's directory and each shard into its hospital's ``data/`` only."""
    owner_dir.mkdir(parents=True, exist_ok=True)
    test_path = owner_dir / "heldout.csv"
    split.test.to_csv(test_path, index=False)
    paths = []
    for shard, directory in zip(split.shards, hospital_dirs, strict=True):
        (directory / "data").mkdir(parents=True, exist_ok=True)
        path = directory / "data" / "train.csv"
        shard.to_csv(path, index=False)
        paths.append(path)
    return test_path, paths
