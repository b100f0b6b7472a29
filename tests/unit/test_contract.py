"""The data contract: great-expectations suites run on a site's table; reports say pass/fail, never counts or values."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from federity.contract import default_suite, require_valid, validate
from federity.errors import DataContractError

CANARY = "CANARY-7f3a9"
CANARY_NUMBER = 987654.321


def _table(**overrides: list) -> pd.DataFrame:
    data = {"age": [50.0, 61.0, 47.0, 55.0], "size": [1.2, 3.4, 2.2, 0.9], "label": [0, 1, 1, 0]}
    return pd.DataFrame({**data, **overrides})


SUITE = default_suite(label="label", num_classes=2, columns=["age", "size"])


def test_a_table_meeting_the_contract_passes() -> None:
    report = validate(_table(), SUITE)
    assert report.ok and report.failures == []
    assert report.expectations == len(SUITE["expectations"])


def test_failures_name_the_expectation_and_column_only() -> None:
    report = validate(_table(age=[50.0, None, None, 55.0], label=[0, 1, 5, 0]), SUITE)
    assert not report.ok
    assert {(f["expectation"], f["column"]) for f in report.failures} == {
        ("expect_column_values_to_not_be_null", "age"), ("expect_column_values_to_be_in_set", "label")}
    assert all(set(f) == {"index", "expectation", "column"} for f in report.failures)
    assert "expect_column_values_to_not_be_null on column 'age'" in report.summary()
    assert "2 of 4" not in report.summary()


def test_a_missing_or_extra_column_fails_the_contract() -> None:
    report = validate(_table().drop(columns=["size"]).assign(extra=1.0), SUITE)
    kinds = {(f["expectation"], f["column"]) for f in report.failures}
    assert ("expect_column_to_exist", "size") in kinds


def test_a_column_count_contract_from_in_features_alone() -> None:
    suite = default_suite(label="label", num_classes=2, in_features=3)
    assert not validate(_table(), suite).ok
    assert validate(_table(extra=[1.0] * 4), suite).ok


def test_the_report_and_error_never_carry_the_datas_values(capfd: pytest.CaptureFixture[str],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    table = _table(age=[CANARY_NUMBER, None, 3.0, 4.0], label=[0, 1, CANARY, 0])
    with pytest.raises(DataContractError, match="fails 2 of") as info:
        require_valid(table, SUITE)
    report = info.value.report
    captured = capfd.readouterr()
    for text in (json.dumps(report.to_json()), report.summary(), str(info.value), captured.out, captured.err,
                 caplog.text):
        assert CANARY not in text and str(CANARY_NUMBER) not in text


def test_an_invalid_suite_is_a_clear_error() -> None:
    with pytest.raises(DataContractError, match="type 'expect_the_impossible', which a data contract may not use"):
        validate(_table(), {"expectations": [{"type": "expect_the_impossible", "kwargs": {}}]})
