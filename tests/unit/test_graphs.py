"""Graphs: a site's graph (node features, edges, node labels) in an NPZ file, read with its edges checked, and a
graph convolutional network (PyTorch Geometric) through a full round; TensorFlow, whose zoo has no graph model,
refuses a graph clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from federity.data import load_dataset
from federity.identity import Wallet
from federity.repo import Repository
from federity.training import evaluate
from federity.weights import read_tensors
from tests.conftest import train_and_push


def _communities(path: Path, site: int, nodes: int = 120) -> Path:
    """Two communities (dense inside, sparse across); a node's features say its community only weakly, its
    neighbours say it clearly: the graph, not the features alone, gives the label."""
    rng = np.random.default_rng(60 + site)
    community = rng.integers(0, 2, nodes)
    pairs = rng.integers(0, nodes, (2, 12 * nodes))
    keep = rng.random(pairs.shape[1]) < np.where(community[pairs[0]] == community[pairs[1]], 0.9, 0.05)
    edges = pairs[:, keep & (pairs[0] != pairs[1])]
    x = (community[:, None] * 2 - 1) * 0.3 + rng.normal(0, 1.0, (nodes, 4))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x.astype(np.float32), edge_index=np.concatenate([edges, edges[::-1]], axis=1), y=community)
    return path


def test_a_gcn_learns_from_the_graph_in_a_full_round(tmp_path: Path, owner: Wallet, contributor: Wallet,
                                                     site_b: Wallet) -> None:
    repo, _ = Repository.init(tmp_path / "repo", owner, name="graph", framework="torch", model="gcn",
                              model_args=["in_features=4", "hidden=16"], remote=str(tmp_path / "remote.git"),
                              params={"lr": 0.05, "epochs": 60, "batch_size": 32, "seed": 0, "optimizer": "adam"})
    for wallet in (contributor, site_b):
        repo.add_member(owner, wallet.pubkey, "contributor")
    repo.push()
    sites = [Repository.clone(str(tmp_path / "remote.git"), tmp_path / f"site-{i}", wallet=wallet)
             for i, wallet in enumerate((contributor, site_b))]
    updates = [train_and_push(site, wallet, _communities(tmp_path / f"data-{i}" / "graph.npz", i))
               for i, (site, wallet) in enumerate(zip(sites, (contributor, site_b), strict=True))]
    repo.pull()
    for update in updates:
        repo.review(owner, update, approve=True)
    result = repo.aggregate(owner)
    trained = [read_tensors(repo.store.read(u), u) for u in updates]
    aggregate = read_tensors(repo.store.read(result.commit), "aggregate")
    for name, value in aggregate.items():  # 120 nodes at each site: the plain mean
        np.testing.assert_allclose(value, (trained[0][name] + trained[1][name]) / 2, rtol=1e-5, atol=1e-6)
    assert repo.verify().ok
    held_out = load_dataset(_communities(tmp_path / "held-out" / "graph.npz", 2))
    accuracy = evaluate(repo.config(), repo.root, aggregate, held_out)["accuracy"]
    assert accuracy > 0.9  # a node's own features give about 62%; its neighbours give the rest


def test_the_contract_sees_labels_and_degrees_never_features(tmp_path: Path) -> None:
    data = load_dataset(_communities(tmp_path / "g.npz", 0))
    assert list(data.table.columns) == ["label", "degree"] and data.edges is not None
    assert data.table["degree"].sum() == 2 * data.edges.shape[1]
