"""The data contract: a great-expectations suite stored in the repository (``contract/suite.json``) that every
contributor's dataset must pass before training.

The suite is written by the repository's owner and runs on every site's private data, and its failure report
leaves the site (an agent's error reaches the owner's Prefect server). A free-form suite would be a query
language over that data: ``mostly`` fractions, row conditions, or a ``between`` range narrowed round after
round would find a patient's value by binary search. So a contract is limited when it is read (at ``init
--contract`` and whenever ``train`` reads the suite at a commit) and reports little:

- only the expectation types of :data:`ALLOWED`, each with only its listed arguments (schema: row and column
  counts, column names and types; values: not null, in a declared set, within a declared ``[min, max]``
  range); no ``mostly``, ``row_condition``, ``result_format`` or strict bounds;
- at most :data:`MAX_EXPECTATIONS` expectations, value sets of at most :data:`MAX_VALUE_SET` scalars;
- the report says only which expectations passed and which failed: no row counts, no unexpected values, no
  percentages. What a contract can still learn is one bit per expectation per round (docs/rounds.md).

Validation runs at the site, in an ephemeral great-expectations context (nothing written to disk).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from federity.errors import DataContractError

if TYPE_CHECKING:
    import pandas as pd

CONTRACT_FILE = "contract/suite.json"
SUITE_NAME = "federity-contract"
MAX_EXPECTATIONS = 256
"""Enough for a column-by-column contract of a wide table (two expectations per column of 120 columns)."""
MAX_VALUE_SET = 1000
MAX_SUITE_BYTES = 1_000_000

_COLUMN = "column"


class _Arg:
    """The kinds of argument values a contract may give."""

    NAME = "a column name"
    NAMES = "a list of column names"
    COUNT = "a non-negative integer"
    NUMBER = "a finite number"
    SCALARS = f"a list of at most {MAX_VALUE_SET} strings, numbers or booleans"
    FLAG = "true or false"
    TYPE = "a type name"
    TYPES = "a list of type names"


ALLOWED: dict[str, tuple[dict[str, str], frozenset[str]]] = {
    # type: ({argument: kind}, required arguments)
    "expect_table_row_count_to_be_between": ({"min_value": _Arg.COUNT, "max_value": _Arg.COUNT}, frozenset()),
    "expect_table_column_count_to_equal": ({"value": _Arg.COUNT}, frozenset({"value"})),
    "expect_table_column_count_to_be_between": ({"min_value": _Arg.COUNT, "max_value": _Arg.COUNT},
                                                frozenset()),
    "expect_table_columns_to_match_set": ({"column_set": _Arg.NAMES, "exact_match": _Arg.FLAG},
                                          frozenset({"column_set"})),
    "expect_table_columns_to_match_ordered_list": ({"column_list": _Arg.NAMES}, frozenset({"column_list"})),
    "expect_column_to_exist": ({_COLUMN: _Arg.NAME}, frozenset({_COLUMN})),
    "expect_column_values_to_not_be_null": ({_COLUMN: _Arg.NAME}, frozenset({_COLUMN})),
    "expect_column_values_to_be_of_type": ({_COLUMN: _Arg.NAME, "type_": _Arg.TYPE}, frozenset({_COLUMN, "type_"})),
    "expect_column_values_to_be_in_type_list": ({_COLUMN: _Arg.NAME, "type_list": _Arg.TYPES},
                                                frozenset({_COLUMN, "type_list"})),
    "expect_column_values_to_be_in_set": ({_COLUMN: _Arg.NAME, "value_set": _Arg.SCALARS},
                                          frozenset({_COLUMN, "value_set"})),
    "expect_column_values_to_be_between": ({_COLUMN: _Arg.NAME, "min_value": _Arg.NUMBER,
                                            "max_value": _Arg.NUMBER}, frozenset({_COLUMN, "min_value", "max_value"})),
}
"""The expectations a contract may use, with the arguments each may take (the value kind) and those it must."""

_SUITE_KEYS = {"name", "expectations", "meta", "id", "notes"}
_EXPECTATION_KEYS = {"type", "kwargs", "meta", "id", "notes", "severity", "description", "rendered_content"}


def _expectation(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {}}


def default_suite(*, label: str | None, num_classes: int, columns: list[str] | None = None,
                  in_features: int | None = None) -> dict[str, Any]:
    """A contract derived from the model: at least one row; the label (``None``: an unlabeled task) present,
    never null, in ``range(num_classes)``; with ``columns``, each feature column present and never null and no
    other column; with only ``in_features``, the number of columns."""
    expectations = [_expectation("expect_table_row_count_to_be_between", min_value=1)]
    if label is not None:
        expectations += [
            _expectation("expect_column_to_exist", column=label),
            _expectation("expect_column_values_to_not_be_null", column=label),
            _expectation("expect_column_values_to_be_in_set", column=label, value_set=list(range(num_classes))),
        ]
    extra = 0 if label is None else 1
    if columns is not None:
        for column in columns:
            expectations.append(_expectation("expect_column_to_exist", column=column))
            expectations.append(_expectation("expect_column_values_to_not_be_null", column=column))
        expectations.append(_expectation("expect_table_column_count_to_equal", value=len(columns) + extra))
    elif in_features is not None:
        expectations.append(_expectation("expect_table_column_count_to_equal", value=int(in_features) + extra))
    return {"name": SUITE_NAME, "expectations": expectations, "meta": {}}


@dataclass
class ContractReport:
    """The outcome of validating a dataset: pass or fail per expectation, never counts or values."""

    ok: bool
    expectations: int
    failures: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON output carries it."""
        return {"ok": self.ok, "expectations": self.expectations, "failures": self.failures}

    def summary(self) -> str:
        """One line per failed expectation: its position in the suite, its type and its column."""
        lines = []
        for f in self.failures:
            where = f" on column {f['column']!r}" if f["column"] is not None else ""
            lines.append(f"- expectation {f['index']}: {f['expectation']}{where}")
        return "\n".join(lines)


def check_suite(suite: object, source: str = CONTRACT_FILE) -> dict[str, Any]:
    """The suite ``source`` holds, checked against :data:`ALLOWED` and the limits above and reduced to what
    great-expectations is given (``name`` and each expectation's ``type`` and ``kwargs``). Anything else is a
    :class:`DataContractError` naming the expectation and the argument."""
    hint = (f"a data contract may use only {', '.join(ALLOWED)}, with the arguments docs/rounds.md lists; "
            f"fix {source}")
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise DataContractError(f"{source} is not a great-expectations suite (no 'expectations' list)", hint)
    extra = sorted(str(k) for k in set(suite) - _SUITE_KEYS)
    if extra:
        raise DataContractError(f"{source} has unknown key(s) {', '.join(extra)}", hint)
    name = suite.get("name", SUITE_NAME)
    if not isinstance(name, str) or len(name) > 200:
        raise DataContractError(f"{source}: the suite's name must be a string of at most 200 characters", hint)
    items = suite["expectations"]
    if len(items) > MAX_EXPECTATIONS:
        raise DataContractError(f"{source} has {len(items)} expectations; a contract may have at most "
                                f"{MAX_EXPECTATIONS}", "keep the expectations the model needs")
    return {"name": name, "expectations": [_check_expectation(e, i + 1, source, hint) for i, e in enumerate(items)],
            "meta": {}}


def _check_expectation(item: object, index: int, source: str, hint: str) -> dict[str, Any]:
    where = f"{source}: expectation {index}"
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise DataContractError(f"{where} is not an object with a 'type'", hint)
    kind = item["type"]
    if kind not in ALLOWED:
        raise DataContractError(f"{where} has type {kind[:80]!r}, which a data contract may not use", hint)
    extra = sorted(str(k) for k in set(item) - _EXPECTATION_KEYS)
    if extra:
        raise DataContractError(f"{where} ({kind}) has unknown key(s) {', '.join(extra)[:200]}", hint)
    kwargs = item.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise DataContractError(f"{where} ({kind}): 'kwargs' must be an object", hint)
    arguments, required = ALLOWED[kind]
    unknown = sorted(str(k) for k in set(kwargs) - set(arguments))
    if unknown:
        raise DataContractError(f"{where} ({kind}) takes no argument {', '.join(unknown)[:200]}; it may take "
                                f"{', '.join(arguments)}", hint)
    missing = sorted(required - set(kwargs))
    if missing:
        raise DataContractError(f"{where} ({kind}) needs {', '.join(missing)}", hint)
    for argument, value in kwargs.items():
        if not _is_kind(value, arguments[argument]):
            raise DataContractError(f"{where} ({kind}): {argument} must be {arguments[argument]}", hint)
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if kind.endswith("_to_be_between") and low is None and high is None:
        raise DataContractError(f"{where} ({kind}) needs min_value or max_value", hint)
    if low is not None and high is not None and low > high:
        raise DataContractError(f"{where} ({kind}): min_value is above max_value", hint)
    return {"type": kind, "kwargs": dict(kwargs), "meta": {}}


def _is_kind(value: object, kind: str) -> bool:
    def name(v: object) -> bool:
        return isinstance(v, str) and 0 < len(v) <= 200

    def number(v: object) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        return abs(v) < 2**63 if isinstance(v, int) else math.isfinite(v)

    def scalar(v: object) -> bool:
        return (isinstance(v, str) and len(v) <= 200) or isinstance(v, bool) or number(v)

    if kind in (_Arg.NAME, _Arg.TYPE):
        return name(value)
    if kind in (_Arg.NAMES, _Arg.TYPES):
        return isinstance(value, list) and len(value) <= MAX_EXPECTATIONS and all(name(v) for v in value)
    if kind == _Arg.COUNT:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
    if kind == _Arg.NUMBER:
        return number(value)
    if kind == _Arg.SCALARS:
        return isinstance(value, list) and len(value) <= MAX_VALUE_SET and all(scalar(v) for v in value)
    return kind == _Arg.FLAG and isinstance(value, bool)


def read_suite(raw: bytes | str, source: str = CONTRACT_FILE) -> dict[str, Any]:
    """Parse a suite file's bytes (hostile: another party wrote it) and :func:`check_suite` it."""
    hint = f"restore {source} to a great-expectations suite saved as JSON"
    if len(raw) > MAX_SUITE_BYTES:
        raise DataContractError(f"{source} is larger than {MAX_SUITE_BYTES} bytes", hint)
    failed = False
    try:
        suite = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        failed = True
    if failed:
        raise DataContractError(f"{source} is not valid JSON", hint)
    return check_suite(suite, source)


def load_great_expectations() -> Any:
    """Import great-expectations with its usage analytics off (they would send events over the network)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations

    return great_expectations


@contextlib.contextmanager
def _quiet() -> Any:
    """Keep great-expectations' progress bars and logs out of the output (which may leave the site)."""
    logger = logging.getLogger("great_expectations")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def validate(table: pd.DataFrame, suite: dict[str, Any]) -> ContractReport:
    """Check ``suite`` (:func:`check_suite`), run it on ``table`` and report which expectations failed, and
    nothing else: no counts, no values."""
    checked = check_suite(suite, CONTRACT_FILE)
    with _quiet():
        gx = load_great_expectations()
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = {"globally": False}
        failed = False
        try:
            expectation_suite = gx.ExpectationSuite(
                name=checked["name"] or SUITE_NAME,
                expectations=[gx.expectations.registry.get_expectation_impl(e["type"])(
                    **e["kwargs"], meta={"federity_index": i + 1}) for i, e in enumerate(checked["expectations"])])
        except Exception:
            failed = True
        if failed:
            raise DataContractError("the data contract is not a valid great-expectations suite",
                                    "ask the repository's owner to fix contract/suite.json")
        asset = context.data_sources.add_pandas("site").add_dataframe_asset("data")
        batch = asset.add_batch_definition_whole_dataframe("all")
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name="contract", data=batch, suite=context.suites.add(expectation_suite)))
        result = definition.run(batch_parameters={"dataframe": table}, result_format="BOOLEAN_ONLY")
    failed_positions = sorted(int(outcome.expectation_config.meta["federity_index"])
                              for outcome in result.results if not outcome.success)
    failures = [{"index": i, "expectation": checked["expectations"][i - 1]["type"],
                 "column": checked["expectations"][i - 1]["kwargs"].get(_COLUMN)} for i in failed_positions]
    return ContractReport(not failures, len(result.results), failures)


def require_valid(table: pd.DataFrame, suite: dict[str, Any]) -> ContractReport:
    """:func:`validate`, raising :class:`DataContractError` (with the report) when the dataset fails."""
    report = validate(table, suite)
    if not report.ok:
        raise DataContractError(
            f"the dataset fails {len(report.failures)} of {report.expectations} expectations of the data "
            f"contract:\n{report.summary()}",
            "fix the data at your site, or ask the owner whether the contract is right (the report says only "
            "which expectations failed: no rows, counts or values)",
            report,
        )
    return report
