"""``params.yaml``: the training hyper-parameters a commit fixes, read and validated."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

from federity.config import PARAMS_FILE
from federity.errors import ConfigError
from federity.training import TrainingParams

if TYPE_CHECKING:
    from federity.repo import Repository


def training_params(repo: Repository, commit: str, epochs: int | None = None) -> TrainingParams:
    """``params.yaml`` at ``commit``, with ``epochs`` overridden when given."""
    raw = repo.git.show_file(commit, PARAMS_FILE)
    data = yaml.safe_load(raw) if raw else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{PARAMS_FILE} at {commit[:12]} is not a mapping", f"fix {PARAMS_FILE} on main")
    if epochs is not None:
        data = {**data, "epochs": epochs}
    return TrainingParams.from_mapping(data, f"{PARAMS_FILE} at {commit[:12]}")
