"""A data contract used as a query over a site's data: probing suites are refused when the suite is read (at
``init --contract`` and when ``train`` reads ``contract/suite.json`` at a commit), and a failing report says
only which expectations failed — no counts, no values, no percentages."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federity.contract import ALLOWED, MAX_EXPECTATIONS, check_suite, default_suite, read_suite, require_valid
from federity.errors import DataContractError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.commits import create_commit
from tests.conftest import snapshot, write_csv

CANARY_AGE = 61.37


def _between(**kwargs: object) -> dict:
    return {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", **kwargs}}


def _suite(*expectations: dict) -> dict:
    return {"name": "probe", "expectations": list(expectations)}


@pytest.mark.parametrize(("expectation", "match"), [
    (_between(min_value=61.0, max_value=62.0, mostly=0.5), "takes no argument mostly"),
    (_between(min_value=0, max_value=120, row_condition='label==1', condition_parser="pandas"),
     "takes no argument condition_parser, row_condition"),
    (_between(min_value=61.0), "needs max_value"),
    (_between(min_value=0, max_value=120, strict_min=True), "takes no argument strict_min"),
    (_between(min_value=0, max_value=120, result_format="COMPLETE"), "takes no argument result_format"),
    (_between(min_value="61", max_value=62), "min_value must be a finite number"),
    (_between(min_value=10**400, max_value=10**401), "min_value must be a finite number"),
    (_between(min_value=62, max_value=61), "min_value is above max_value"),
    ({"type": "expect_column_mean_to_be_between", "kwargs": {"column": "age", "min_value": 61, "max_value": 62}},
     "type 'expect_column_mean_to_be_between', which a data contract may not use"),
    ({"type": "expect_column_values_to_match_regex", "kwargs": {"column": "name", "regex": "^Jane"}},
     "may not use"),
    ({"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "age", "value_set": list(range(1001))}},
     "value_set must be a list of at most 1000"),
    ({"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "age", "value_set": [{"$gt": 1}]}},
     "value_set must be a list"),
    ({"type": "expect_column_to_exist", "kwargs": {"column": "age"}, "evaluation_parameters": {}},
     "unknown key"),
    ({"type": "expect_column_to_exist"}, "needs column"),
    ("expect_column_to_exist", "is not an object"),
])
def test_a_probing_expectation_is_refused_with_what_is_allowed(expectation: object, match: str) -> None:
    with pytest.raises(DataContractError, match=match) as info:
        check_suite(_suite(expectation), "contract/suite.json at abc")
    assert "a data contract may use only" in info.value.hint or "keep the expectations" in info.value.hint


def test_too_many_expectations_are_refused() -> None:
    many = [{"type": "expect_column_to_exist", "kwargs": {"column": f"c{i}"}} for i in range(MAX_EXPECTATIONS + 1)]
    with pytest.raises(DataContractError, match=f"has {MAX_EXPECTATIONS + 1} expectations; a contract may have "
                                                f"at most {MAX_EXPECTATIONS}"):
        check_suite(_suite(*many))


@pytest.mark.parametrize("raw", [b"\xff\xfe not utf-8", b"[1, 2", b"[]", b'{"expectations": 5}',
                                 b'{"expectations": [], "evaluation_parameters": {}}', b"1" * 5000])
def test_a_broken_suite_file_is_a_clear_error(raw: bytes) -> None:
    with pytest.raises(DataContractError, match=r"contract/suite\.json at abc"):
        read_suite(raw, "contract/suite.json at abc")


def test_the_default_suite_and_a_saved_great_expectations_suite_are_accepted() -> None:
    suite = default_suite(label="label", num_classes=3, columns=["age", "size"])
    assert check_suite(suite)["expectations"] == [{**e, "meta": {}} for e in suite["expectations"]]
    saved = {"name": "x", "id": None, "notes": None, "meta": {"great_expectations_version": "1.24.1"},
             "expectations": [{"type": "expect_column_values_to_be_between", "meta": {}, "severity": "critical",
                               "kwargs": {"column": "age", "min_value": 0.0, "max_value": 120.0}}]}
    assert check_suite(saved)["expectations"][0]["kwargs"] == {"column": "age", "min_value": 0.0, "max_value": 120.0}


def test_a_failing_report_carries_no_counts_values_or_percentages() -> None:
    table = pd.DataFrame({"age": [CANARY_AGE, None, 40.0, 50.0, 45.0], "label": [0, 1, 7, 0, 1]})
    suite = _suite(_between(min_value=0, max_value=60),
                   {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
                   {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "label", "value_set": [0, 1]}},
                   {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}})
    with pytest.raises(DataContractError, match="fails 3 of 4 expectations") as info:
        require_valid(table, suite)
    report = info.value.report
    assert report.to_json() == {"ok": False, "expectations": 4, "failures": [
        {"index": 1, "expectation": "expect_column_values_to_be_between", "column": "age"},
        {"index": 2, "expectation": "expect_column_values_to_not_be_null", "column": "age"},
        {"index": 3, "expectation": "expect_column_values_to_be_in_set", "column": "label"}]}
    text = str(info.value) + json.dumps(report.to_json())
    for leaked in (str(CANARY_AGE), "7", "5 rows", "1 of", "20", "%", "unexpected"):
        assert leaked not in text, leaked


def test_init_refuses_a_probing_contract_file_and_creates_nothing(tmp_path: Path, owner: Wallet) -> None:
    contract = tmp_path / "contract.json"
    contract.write_text(json.dumps(_suite(_between(min_value=61.0, max_value=62.0, mostly=0.5))))
    with pytest.raises(DataContractError, match="takes no argument mostly"):
        Repository.init(tmp_path / "r", owner, name="n", framework="torch", model="logistic-regression",
                        model_args=["in_features=4"], contract=contract, remote=str(tmp_path / "remote.git"))
    assert not (tmp_path / "r").exists() and not (tmp_path / "remote.git").exists()


def test_train_refuses_a_probing_suite_committed_on_main_before_reading_the_data(
        repo: Repository, owner: Wallet, tmp_path: Path) -> None:
    suite = _suite({"type": "expect_column_values_to_be_between",
                    "kwargs": {"column": "f0", "min_value": -0.1, "max_value": 0.1, "mostly": 0.5}})
    (repo.root / "contract" / "suite.json").write_text(json.dumps(suite))
    create_commit(repo, owner, "weights", "a probing contract", [repo.head()], paths=("contract/suite.json",))
    before = snapshot(repo)
    with pytest.raises(DataContractError, match=r"contract/suite.json at [0-9a-f]{12}: expectation 1 .* takes no "
                                                "argument mostly"):
        repo.train(owner, write_csv(tmp_path / "site" / "d.csv", 20, seed=0))
    assert snapshot(repo) == before


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children,
                                                                                       max_size=4), max_leaves=20)
_KINDS = st.sampled_from([*ALLOWED, "expect_column_mean_to_be_between", ""])
_ARGS = st.sampled_from(["column", "min_value", "max_value", "value", "value_set", "column_set", "mostly",
                         "type_", "type_list", "exact_match", "column_list", "row_condition"])
_EXPECTATION = st.fixed_dictionaries({"type": _KINDS, "kwargs": st.dictionaries(_ARGS, _JSON, max_size=4)})


@settings(max_examples=300, deadline=None)
@given(st.one_of(_JSON, st.fixed_dictionaries({"expectations": st.lists(_EXPECTATION | _JSON, max_size=5)})))
def test_any_suite_is_accepted_or_refused_with_a_contract_error_only(suite: object) -> None:
    try:
        checked = check_suite(suite)
    except DataContractError:
        return
    for expectation in checked["expectations"]:  # what is accepted is within the allow-list
        arguments, required = ALLOWED[expectation["type"]]
        assert set(expectation["kwargs"]) <= set(arguments) and required <= set(expectation["kwargs"])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_suite_file_bytes_are_accepted_or_refused_with_a_contract_error_only(raw: bytes) -> None:
    with contextlib.suppress(DataContractError):
        read_suite(raw, "contract/suite.json")
