"""Commit metadata trailers and the canonical signing payload."""

from __future__ import annotations

import json

from federity.repo.metadata import CommitMeta, ParentRef, format_message, parse_message, signing_payload


def test_trailers_round_trip_through_a_commit_message() -> None:
    meta = CommitMeta(kind="update", author="A" * 44, weights_sha256="ab" * 32, round=3, signature="sig")
    parsed = parse_message(format_message("Trained at site 1\n\nwith two paragraphs", meta))
    assert parsed.meta == meta
    assert parsed.message == "Trained at site 1\n\nwith two paragraphs"


def test_message_without_trailers_is_reported_not_guessed() -> None:
    parsed = parse_message("just a git commit\n")
    assert parsed.meta is None
    assert parsed.problems == ["the commit carries no Federity metadata"]


def test_message_missing_a_required_trailer_is_reported() -> None:
    parsed = parse_message("msg\n\nFederity-Kind: update\nFederity-Author: x\n")
    assert parsed.meta is None
    assert "missing trailer for weights_sha256" in parsed.problems


def test_payload_is_canonical_json_binding_parents_weights() -> None:
    meta = CommitMeta(kind="weights", author="me", weights_sha256="new", round=1)
    payload = signing_payload("repo-id", meta, "msg", "tree", [ParentRef("c1", "old")])
    assert payload == json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()
    assert json.loads(payload)["parents"] == [{"commit": "c1", "weights_sha256": "old"}]
    other = signing_payload("repo-id", meta, "msg", "tree", [ParentRef("c1", "tampered")])
    assert other != payload


def test_an_aggregates_strategy_is_signed_and_other_payloads_keep_their_shape() -> None:
    meta = CommitMeta(kind="aggregate", author="me", weights_sha256="new", round=1, strategy="fedavg")
    assert parse_message(format_message("Round 1", meta)).meta == meta
    payload = json.loads(signing_payload("repo-id", meta, "msg", "tree", [ParentRef("c1", "old")]))
    assert payload["strategy"] == "fedavg"
    meta.strategy = "fedmedian"
    assert json.loads(signing_payload("repo-id", meta, "msg", "tree", [ParentRef("c1", "old")])) != payload
    plain = CommitMeta(kind="weights", author="me", weights_sha256="new", round=1)
    assert "strategy" not in json.loads(signing_payload("repo-id", plain, "msg", "tree", []))
