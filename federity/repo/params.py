"""What a commit fixes for training and scoring on a site's data: the hyper-parameters of ``params.yaml`` and how
``federity.yaml``'s task reads a dataset (its label, loader, and for text its committed tokenizer), read and
validated."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from federity.config import PARAMS_FILE, RepoConfig
from federity.errors import ConfigError
from federity.training import TrainingParams

if TYPE_CHECKING:
    from federity.data import Dataset
    from federity.repo import Repository


def training_params(repo: Repository, commit: str, epochs: int | None = None) -> TrainingParams:
    """``params.yaml`` at ``commit``, with ``epochs`` overridden when given."""
    overrides = {"epochs": epochs} if epochs is not None else None
    return TrainingParams.from_yaml(repo.git.show_file(commit, PARAMS_FILE), f"{PARAMS_FILE} at {commit[:12]}",
                                    overrides)


def site_dataset(repo: Repository, commit: str, config: RepoConfig, data: Path) -> Dataset:
    """The dataset at ``data`` as ``commit``'s task reads it (``config`` is its ``federity.yaml``): labelled for a
    classifier, unlabeled for the other objectives; a text task's tokenizer is the file ``task.tokenizer`` names,
    as that commit holds it."""
    from federity.data import TextColumn, load_dataset
    from federity.text import load_tokenizer

    text = None
    tokenizer_path = config.task.get("tokenizer")
    if tokenizer_path:
        raw = repo.git.show_file(commit, tokenizer_path)
        if raw is None:
            raise ConfigError(f"commit {commit[:12]} has no tokenizer file {tokenizer_path}, which federity.yaml's "
                              "task names", "ask the owner to commit it")
        text = TextColumn(str(config.task.get("text", "text")),
                          load_tokenizer(raw, f"{tokenizer_path} at {commit[:12]}"),
                          int(config.task.get("max_length", 128)))
    labelled = config.task.get("loss", "cross_entropy") == "cross_entropy"  # the others learn from data alone
    return load_dataset(Path(data), label=str(config.task.get("label", "label")) if labelled else None,
                        loader=config.task.get("loader"), repo_root=repo.root, text=text)
