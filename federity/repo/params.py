"""``params.yaml``: the training hyper-parameters a commit fixes, read and validated."""

from __future__ import annotations

from typing import TYPE_CHECKING

from federity.config import PARAMS_FILE
from federity.training import TrainingParams

if TYPE_CHECKING:
    from federity.repo import Repository


def training_params(repo: Repository, commit: str, epochs: int | None = None) -> TrainingParams:
    """``params.yaml`` at ``commit``, with ``epochs`` overridden when given."""
    overrides = {"epochs": epochs} if epochs is not None else None
    return TrainingParams.from_yaml(repo.git.show_file(commit, PARAMS_FILE), f"{PARAMS_FILE} at {commit[:12]}",
                                    overrides)
