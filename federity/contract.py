"""The data contract: a great-expectations suite stored in the repository (``contract/suite.json``) that every
contributor's dataset must pass before training.

Validation runs at the site, in an ephemeral great-expectations context (nothing written to disk). Its report
says which expectations failed and on how many rows; the values great-expectations samples from the data
(``partial_unexpected_list`` and the like) are never copied out of it, so the report can leave the site.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from federity.errors import DataContractError

if TYPE_CHECKING:
    import pandas as pd

CONTRACT_FILE = "contract/suite.json"
SUITE_NAME = "federity-contract"
_COUNT_KEYS = ("unexpected_count", "element_count", "unexpected_percent")


def _expectation(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {}}


def default_suite(*, label: str, num_classes: int, columns: list[str] | None = None,
                  in_features: int | None = None) -> dict[str, Any]:
    """A contract derived from the model: at least one row; the label present, never null, in
    ``range(num_classes)``; with ``columns``, each feature column present and never null and no other column;
    with only ``in_features``, the number of columns."""
    expectations = [
        _expectation("expect_table_row_count_to_be_between", min_value=1),
        _expectation("expect_column_to_exist", column=label),
        _expectation("expect_column_values_to_not_be_null", column=label),
        _expectation("expect_column_values_to_be_in_set", column=label, value_set=list(range(num_classes))),
    ]
    if columns is not None:
        for column in columns:
            expectations.append(_expectation("expect_column_to_exist", column=column))
            expectations.append(_expectation("expect_column_values_to_not_be_null", column=column))
        expectations.append(_expectation("expect_table_column_count_to_equal", value=len(columns) + 1))
    elif in_features is not None:
        expectations.append(_expectation("expect_table_column_count_to_equal", value=int(in_features) + 1))
    return {"name": SUITE_NAME, "expectations": expectations, "meta": {}}


@dataclass
class ContractReport:
    """The outcome of validating a dataset: counts only, never values."""

    ok: bool
    expectations: int
    rows: int
    failures: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON output carries it."""
        return {"ok": self.ok, "expectations": self.expectations, "rows": self.rows, "failures": self.failures}

    def summary(self) -> str:
        """One line per failed expectation: which, on which column, on how many rows."""
        lines = []
        for f in self.failures:
            where = f" on column {f['column']!r}" if f["column"] else ""
            rows = (f": {f['unexpected_count']} of {f['element_count']} rows"
                    if f["unexpected_count"] is not None else "")
            lines.append(f"- {f['expectation']}{where}{rows}")
        return "\n".join(lines)


@contextlib.contextmanager
def _quiet() -> Any:
    """Keep great-expectations' progress bars and logs out of the output (which may leave the site)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logger = logging.getLogger("great_expectations")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def validate(table: pd.DataFrame, suite: dict[str, Any]) -> ContractReport:
    """Run ``suite`` on ``table`` and report which expectations failed, with counts only."""
    with _quiet():
        import great_expectations as gx

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = {"globally": False}
        try:
            expectation_suite = gx.ExpectationSuite(
                name=str(suite.get("name", SUITE_NAME)),
                expectations=[gx.expectations.registry.get_expectation_impl(e["type"])(**e.get("kwargs", {}))
                              for e in suite["expectations"]])
        except Exception as exc:
            raise DataContractError(f"the data contract is not a valid great-expectations suite: "
                                    f"{type(exc).__name__}", "ask the repository's owner to fix contract/suite.json"
                                    ) from None
        asset = context.data_sources.add_pandas("site").add_dataframe_asset("data")
        batch = asset.add_batch_definition_whole_dataframe("all")
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name="contract", data=batch, suite=context.suites.add(expectation_suite)))
        result = definition.run(batch_parameters={"dataframe": table}, result_format="SUMMARY")
    failures = []
    for outcome in result.results:
        if outcome.success:
            continue
        counts = outcome.result or {}
        failures.append({
            "expectation": outcome.expectation_config.type,
            "column": outcome.expectation_config.kwargs.get("column"),
            **{key: counts.get(key) if isinstance(counts.get(key), int | float) else None for key in _COUNT_KEYS},
        })
    return ContractReport(not failures, len(result.results), len(table), failures)


def require_valid(table: pd.DataFrame, suite: dict[str, Any]) -> ContractReport:
    """:func:`validate`, raising :class:`DataContractError` (with the report) when the dataset fails."""
    report = validate(table, suite)
    if not report.ok:
        raise DataContractError(
            f"the dataset fails {len(report.failures)} of {report.expectations} expectations of the data "
            f"contract ({report.rows} rows):\n{report.summary()}",
            "fix the data at your site (no values are shown here), or ask the owner whether the contract is right",
            report,
        )
    return report
