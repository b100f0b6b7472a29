"""Federity: version control and collaborative training for machine-learning models on private data.

The library is importable without Prefect, MLflow or a ledger; the front object is
:class:`federity.repo.Repository`.
"""

__version__ = "0.1.0"
