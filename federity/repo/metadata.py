"""Commit metadata and the signed payload.

Federity metadata lives in git trailers at the end of each commit message, so a commit is self-describing and
any git host keeps it::

    Fine-tuned on public data

    Federity-Kind: weights
    Federity-Round: 0
    Federity-Author: 7xKX...base58 pubkey
    Federity-Weights-Sha256: 3b5f...
    Federity-Signature: 4vJ9...base58 ed25519 signature

The signature is the author's ed25519 signature over the canonical payload (:func:`signing_payload`): UTF-8
JSON with sorted keys and no whitespace. It binds the repository id, the kind, the round, the author, the
message, the git tree (so ``federity.yaml`` — the membership — and ``model.dvc`` are covered), the weights
sha256, the proof digest, an aggregate's strategy or a merge's method, and every parent's commit id *and*
weights sha256.
``docs/repository-format.md`` documents it for independent verifiers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PAYLOAD_SCHEMA = "federity/commit/v1"

_TRAILER_PREFIX = "Federity-"
_FIELDS = {
    "Kind": "kind",
    "Round": "round",
    "Author": "author",
    "Weights-Sha256": "weights_sha256",
    "Proof-Sha256": "proof_sha256",
    "Reverts": "reverts",
    "Strategy": "strategy",
    "Strategy-Params": "strategy_params",
    "Signature": "signature",
}


@dataclass
class CommitMeta:
    """The Federity metadata of one commit."""

    kind: str
    author: str
    weights_sha256: str
    round: int = 0
    proof_sha256: str | None = None
    reverts: str | None = None
    strategy: str | None = None
    strategy_params: str | None = None
    """The strategy's (or merge method's) parameters as canonical JSON (:func:`canonical_params`), on aggregate and
    merge commits that have any."""
    signature: str | None = None

    def trailers(self) -> str:
        """The trailer block appended to the commit message."""
        lines = []
        for trailer, attr in _FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                lines.append(f"{_TRAILER_PREFIX}{trailer}: {value}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ParentRef:
    """A parent commit as the payload names it."""

    commit: str
    weights_sha256: str | None


@dataclass
class ParsedMessage:
    """A commit message split into the human message and the Federity metadata (``None`` when absent)."""

    message: str
    meta: CommitMeta | None
    problems: list[str] = field(default_factory=list)


def format_message(message: str, meta: CommitMeta) -> str:
    """The full git commit message: the human message, a blank line, the trailers."""
    return f"{message.strip()}\n\n{meta.trailers()}\n"


def parse_message(raw: str) -> ParsedMessage:
    """Split a commit message; a missing or malformed trailer block is reported, never guessed."""
    body, sep, last = raw.rstrip("\n").rpartition("\n\n")
    if not sep:
        body, last = "", raw.rstrip("\n")
    lines = last.splitlines()
    if not lines or not all(line.startswith(_TRAILER_PREFIX) for line in lines):
        return ParsedMessage(raw.strip(), None, ["the commit carries no Federity metadata"])
    values: dict[str, Any] = {}
    problems = []
    for line in lines:
        key, _, value = line[len(_TRAILER_PREFIX):].partition(": ")
        if key not in _FIELDS or _FIELDS[key] in values:
            problems.append(f"unexpected or repeated trailer {_TRAILER_PREFIX}{key}")
            continue
        values[_FIELDS[key]] = value.strip()
    for required in ("kind", "author", "weights_sha256"):
        if required not in values:
            problems.append(f"missing trailer for {required}")
    if problems:
        return ParsedMessage(body.strip(), None, problems)
    try:
        values["round"] = int(values.get("round", 0))
    except ValueError:
        return ParsedMessage(body.strip(), None, [f"round {values['round']!r} is not an integer"])
    return ParsedMessage(body.strip(), CommitMeta(**values))


def canonical_params(parameters: dict[str, Any]) -> str:
    """A strategy's parameters as the ``Federity-Strategy-Params`` trailer holds them: JSON, sorted keys, no
    whitespace."""
    return json.dumps(parameters, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def signed_params(meta: CommitMeta) -> dict[str, Any]:
    """The parameters a commit's ``Federity-Strategy-Params`` trailer signed (``{}`` when it has none). The text is
    another party's: anything but a JSON object is a :class:`ValueError` saying so."""
    if meta.strategy_params is None:
        return {}
    try:
        parameters = json.loads(meta.strategy_params)
    except (ValueError, RecursionError):
        raise ValueError("its Federity-Strategy-Params trailer is not JSON") from None
    if not isinstance(parameters, dict):
        raise ValueError("its Federity-Strategy-Params trailer is not a JSON object")
    return parameters


def signing_payload(
    repository_id: str, meta: CommitMeta, message: str, tree: str, parents: list[ParentRef]
) -> bytes:
    """The canonical bytes an author signs for a commit (everything but the signature itself)."""
    document = {
        "schema": PAYLOAD_SCHEMA,
        "repository": repository_id,
        "kind": meta.kind,
        "round": meta.round,
        "author": meta.author,
        "message": message.strip(),
        "tree": tree,
        "weights_sha256": meta.weights_sha256,
        "proof_sha256": meta.proof_sha256,
        "reverts": meta.reverts,
        "parents": [{"commit": p.commit, "weights_sha256": p.weights_sha256} for p in parents],
    }
    if meta.strategy is not None:  # only aggregate and merge commits name one; others keep their v1 shape
        document["strategy"] = meta.strategy
    if meta.strategy_params is not None:
        document["strategy_params"] = meta.strategy_params
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
