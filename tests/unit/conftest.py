"""Unit-test fixtures: a migrated MLflow database to copy, since a fresh one migrates in seconds."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from federity.tracking import DEFAULT_DB, Tracker


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite database with every migration applied, made once per session."""
    root = tmp_path_factory.mktemp("mlflow-template")
    Tracker(root).check()
    return root / DEFAULT_DB


@pytest.fixture
def seed_mlflow_db(mlflow_template_db: Path) -> Callable[[Path], Path]:
    """Copy the migrated template to ``<repo_root>/.federity/mlflow.db`` (milliseconds instead of seconds)."""

    def seed(repo_root: Path) -> Path:
        db = Path(repo_root) / DEFAULT_DB
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mlflow_template_db, db)
        return db

    return seed
