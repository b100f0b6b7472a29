"""Typed readers of the JSON documents other parties write: an update's ``update.json``, review notes, NFT and
MLflow notes, and an update's ``proof/chain.json``.

Each document is hostile input until it has passed its schema here: bounded in size, UTF-8 JSON without
duplicate keys, ``NaN`` or ``Infinity``, exact types (``"n_samples": "many"`` is refused, not converted), bounded
numbers (``n_samples`` at most 10**12, so a sample-weighted mean cannot overflow), bounded strings and counts, and
no key the schema does not know. What a malformed document means depends on who relies on it:

- ``update.json`` (:func:`parse_update_record`): the update cannot be checked, so it is an :class:`UpdateError`
  naming the commit; a reviewer rejects the update with that reason.
- review notes (:func:`parse_review_note`): a note is a list of signed reviews of one update; every malformed
  entry is skipped on its own, so one bad entry never erases the valid ones. A note that is not a review note at
  all has no reviews.
- NFT and MLflow notes (:func:`parse_nft_note`, :func:`parse_mlflow_note`): unsigned bookkeeping; a malformed
  note reads as ``None``, which callers treat as absent (the NFT is queued again; the run is not shown).
- ``proof/chain.json`` (:func:`parse_proof_chain`): a :class:`ProofError`, which the proof check reports as the
  update's problem.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from federity.config import Scalar, validation_problem
from federity.errors import FederityError, ProofError, UpdateError
from federity.identity import is_pubkey

M = TypeVar("M", bound=BaseModel)
UPDATE_FILE = "update.json"
UPDATE_SCHEMA = "federity/update/v1"
REVIEWS_SCHEMA = "federity/reviews/v2"
"""The schema of a review note: ``{"schema": REVIEWS_SCHEMA, "reviews": [review, …]}``."""
REVIEW_PAYLOAD_SCHEMA = "federity/review/v2"
"""The schema of the canonical bytes a reviewer signs (:meth:`Review.payload`)."""
REVIEW_STATUSES = ("verified", "approved", "rejected")
"""What a signed review may say (``pending`` and ``aggregated`` are derived, never reviewed)."""

MAX_UPDATE_BYTES = 1 << 20
"""The largest ``update.json`` read (1 MiB; a real one is about 1 KiB)."""
MAX_REVIEW_NOTE_BYTES = 4 << 20
"""The largest review note read (4 MiB: about ten thousand reviews)."""
MAX_NOTE_BYTES = 64 << 10
"""The largest NFT or MLflow note read."""
MAX_CHAIN_BYTES = 64 << 20
"""The largest ``proof/chain.json`` read."""
MAX_SAMPLES = 10**12
MAX_METRICS = 64

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_REJECT_HINT = ("reject the update (`federity review reject <update> --reason ...`); its author must train and push "
                "a new one with a released Federity")


class _Malformed(ValueError):
    """Internal: a document is not well-formed JSON of the expected size."""


def _no_constant(name: str) -> float:
    raise _Malformed(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise _Malformed("a key appears twice in one object")
    return data


def load_json(raw: bytes | str, limit: int) -> Any:
    """Decode JSON someone else wrote: at most ``limit`` bytes, UTF-8, no duplicate keys, no ``NaN``/``Infinity``;
    any problem (also nesting deep enough to exhaust the stack, or an integer of thousands of digits) raises
    ``ValueError`` with a short reason."""
    if len(raw) > limit:
        raise _Malformed(f"it is larger than {limit} bytes")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except _Malformed:
        raise
    except UnicodeError:
        raise _Malformed("it is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _Malformed(f"it is not JSON ({exc.msg} at line {exc.lineno})") from None
    except (ValueError, RecursionError, OverflowError, TypeError):
        raise _Malformed("it is not JSON Federity reads (too deeply nested, or a number too large)") from None


def _document(raw: bytes | str | Mapping[str, Any], limit: int) -> Any:
    return dict(raw) if isinstance(raw, Mapping) else load_json(raw, limit)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return float(value)


def _pubkey(value: str) -> str:
    if not is_pubkey(value):
        raise ValueError("is not a wallet public key (base58, 32 bytes)")
    return value


_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
Hex40 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40}$")]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Pubkey = Annotated[str, StringConstraints(max_length=64), AfterValidator(_pubkey)]
Signature = Annotated[str, StringConstraints(pattern=rf"^[{_BASE58}]{{64,90}}$")]
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:/ -]{0,63}$")]
Text = Annotated[str, StringConstraints(max_length=4000)]
Line = Annotated[str, StringConstraints(max_length=2048, pattern=r"^[^\x00-\x1f\x7f]*$")]
FiniteFloat = Annotated[float, AfterValidator(_finite)]
MAIN_BRANCH = "main"
UPDATE_BRANCH_PREFIX = "updates/"
_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}){0,3}")


def is_model_branch(name: str) -> bool:
    """Whether ``name`` can be a branch a model lives on (main, or a variant such as ``pediatric`` or
    ``site/lab-2``): at most four ``/``-separated parts of letters, digits, ``_``, ``.`` and ``-``, none ending in
    ``.`` or ``.lock`` and none holding ``..``, and not an ``updates/…`` branch, where updates wait for review."""
    parts = name.split("/")
    return (_BRANCH.fullmatch(name) is not None and parts[0] != UPDATE_BRANCH_PREFIX.rstrip("/")
            and not any(part.endswith((".", ".lock")) or ".." in part for part in parts))


def _model_branch(value: str) -> str:
    if not is_model_branch(value):
        raise ValueError("is not a model branch name (main or a variant: letters, digits, '_', '.', '-', "
                         "up to four '/'-separated parts, not updates/…)")
    return value


BranchName = Annotated[str, StringConstraints(max_length=259), AfterValidator(_model_branch)]


class UpdateRecord(BaseModel):
    """An update's ``update.json``, as ``federity train`` writes it."""

    model_config = _STRICT
    schema_: Literal["federity/update/v1"] = Field(alias="schema")
    base: Hex40
    round: Annotated[int, Field(ge=1, le=10**9)]
    nonce: Line | None
    n_samples: Annotated[int, Field(ge=1, le=MAX_SAMPLES)]
    metrics: Annotated[dict[Key, FiniteFloat], Field(max_length=MAX_METRICS)]
    params: Annotated[dict[Key, Scalar], Field(max_length=64)]
    contract: Annotated[dict[Key, Scalar], Field(max_length=64)]
    proof: dict[str, Any] | None = None
    branch: BranchName | None = None
    """The branch the update was trained for and may only be aggregated on; absent means main."""

    @property
    def target(self) -> str:
        """The branch the update may be aggregated on."""
        return self.branch or MAIN_BRANCH

    def to_json(self) -> dict[str, Any]:
        """The record as a plain mapping (``schema`` under its JSON name; ``branch`` only when it is not main)."""
        return self.model_dump(by_alias=True, exclude={"branch"} if self.branch is None else None)


def parse_update_record(raw: bytes | str | Mapping[str, Any] | None, source: str) -> UpdateRecord:
    """Validate an update's ``update.json`` (its bytes, or an already decoded object). ``source`` names it, e.g.
    ``"update.json of update 1a2b3c4d5e6f"``. Raises :class:`UpdateError` saying what is wrong."""
    if raw is None:
        raise UpdateError(f"{source} is missing", _REJECT_HINT)
    return _validated(UpdateRecord, raw, MAX_UPDATE_BYTES, source, UpdateError, _REJECT_HINT)


def _validated(model: type[M], raw: bytes | str | Mapping[str, Any], limit: int, source: str,
               error: type[FederityError], hint: str) -> M:
    """``raw`` decoded (at most ``limit`` bytes) and validated as ``model``; any problem raises ``error`` naming
    ``source``."""
    try:
        data = _document(raw, limit)
    except _Malformed as exc:
        raise error(f"{source} is malformed: {exc}", hint) from None
    if not isinstance(data, dict):
        raise error(f"{source} is malformed: it is not a JSON object", hint)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"malformed {validation_problem(exc, source)}", hint) from None


class Review(BaseModel):
    """One signed review of an update. ``seq`` orders one reviewer's reviews of one update: the reviewer's latest
    review is the one with the highest ``seq``."""

    model_config = _STRICT
    update: Hex40
    status: Literal["verified", "approved", "rejected"]
    reason: Text | None
    reviewer: Pubkey
    seq: Annotated[int, Field(ge=0, le=2**53)]
    signature: Signature

    def payload(self, repository_id: str) -> bytes:
        """The canonical bytes the reviewer signs: everything in the review but the signature, and the
        repository's id (a review cannot be replayed in another repository)."""
        return signed_review_payload(repository_id, self.update, self.status, self.reason, self.reviewer, self.seq)

    def to_json(self) -> dict[str, Any]:
        """The review as an entry of a review note."""
        return self.model_dump()


def signed_review_payload(repository_id: str, update: str, status: str, reason: str | None, reviewer: str,
                          seq: int) -> bytes:
    """The canonical bytes of a review (v2: with ``seq``) that its reviewer signs."""
    document = {"schema": REVIEW_PAYLOAD_SCHEMA, "repository": repository_id, "update": update, "status": status,
                "reason": reason, "reviewer": reviewer, "seq": seq}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def review_note(reviews: list[Review]) -> dict[str, Any]:
    """The review note holding ``reviews`` (one update's), ready for ``write_note``."""
    return {"schema": REVIEWS_SCHEMA, "reviews": [review.to_json() for review in reviews]}


def parse_review_note(raw: bytes | str | Mapping[str, Any] | None, update: str | None = None) -> list[Review]:
    """The well-formed reviews in a review note, in the note's order. Each malformed entry (or, when ``update``
    is given, one about another update) is skipped on its own; a note that is not a v2 review note has no reviews.
    Signatures and roles are *not* checked here: the caller verifies :meth:`Review.payload` against
    ``reviewer`` and the reviewer's role."""
    if raw is None:
        return []
    try:
        data = _document(raw, MAX_REVIEW_NOTE_BYTES)
    except _Malformed:
        return []
    if not isinstance(data, dict) or data.get("schema") != REVIEWS_SCHEMA or not isinstance(data.get("reviews"),
                                                                                             list):
        return []
    reviews = []
    for entry in data["reviews"]:
        try:
            review = Review.model_validate(entry)
        except ValidationError:
            continue
        if update is None or review.update == update:
            reviews.append(review)
    return reviews


class NftNote(BaseModel):
    """``refs/notes/federity-nft`` on a commit: where its NFT was minted, by whom, to whom, at what cost."""

    model_config = _STRICT
    mint: Pubkey
    ledger: Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^[^\s\x00-\x1f\x7f]+$")]
    minter: Pubkey
    recipient: Pubkey
    lamports_spent: Annotated[int, Field(ge=0, le=2**64)] | None = None
    signatures: Annotated[list[Signature], Field(max_length=64)] = []

    def to_json(self) -> dict[str, Any]:
        """The note as ``nft sync`` writes it."""
        return self.model_dump()


def parse_nft_note(raw: bytes | str | Mapping[str, Any] | None) -> NftNote | None:
    """A commit's NFT note, or ``None`` when it is absent or malformed (then the commit's NFT counts as not
    minted: ``nft sync`` mints it again, idempotently)."""
    if raw is None:
        return None
    try:
        data = _document(raw, MAX_NOTE_BYTES)
        return NftNote.model_validate(data)
    except (_Malformed, ValidationError):
        return None


class MlflowNote(BaseModel):
    """``refs/notes/federity-mlflow`` on a commit: its MLflow run, and the tracking server's URI (without its
    password) when the run is on a server, else ``None``."""

    model_config = _STRICT
    run_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    tracking_uri: Annotated[str, StringConstraints(max_length=2048,
                                                   pattern=r"^[a-z][a-z0-9+.-]*://[^\s\x00-\x1f\x7f]*$")] | None = None

    def to_json(self) -> dict[str, Any]:
        """The note as ``federity track`` writes it."""
        return self.model_dump()


def parse_mlflow_note(raw: bytes | str | Mapping[str, Any] | None) -> MlflowNote | None:
    """A commit's MLflow note, or ``None`` when it is absent or malformed (then the commit has no recorded run)."""
    if raw is None:
        return None
    try:
        return MlflowNote.model_validate(_document(raw, MAX_NOTE_BYTES))
    except (_Malformed, ValidationError):
        return None


_ChainHash = Annotated[str, StringConstraints(max_length=100, pattern=r"^[0-9A-Za-z]+$")]


class _ChainCircuit(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    schema_: Annotated[int, Field(ge=1, le=1000)] = Field(alias="schema")
    features: Annotated[int, Field(ge=1, le=2**20)]
    classes: Annotated[int, Field(ge=1, le=2**20)]
    batch: Annotated[int, Field(ge=1, le=2**20)]
    lr: FiniteFloat
    scale: Annotated[int, Field(ge=1, le=32)]


class _ChainHead(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    weight: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    bias: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ProofChain(BaseModel):
    """An update's ``proof/chain.json``: the committed hash chain of its proved training (unknown keys are
    ignored: the proof check compares what it needs against values it rebuilds itself)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    schema_: Annotated[int, Field(ge=1, le=1000)] = Field(alias="schema")
    circuit: _ChainCircuit
    compiled_circuit_sha256: Hex64
    head: _ChainHead
    repository: Annotated[str, StringConstraints(max_length=64)]
    base: Hex40
    author: Pubkey
    nonce: Line | None = None
    weights: Annotated[list[Annotated[list[_ChainHash], Field(max_length=16)]], Field(min_length=2,
                                                                                           max_length=10**6 + 1)]
    batches: Annotated[list[_ChainHash], Field(min_length=1, max_length=10**6)]
    commitment: Hex64
    audited: Annotated[list[Annotated[int, Field(ge=0, lt=10**6)]], Field(max_length=10_000)]
    proofs: Annotated[dict[Annotated[str, StringConstraints(pattern=r"^[0-9]{1,7}$")], Hex64],
                      Field(max_length=10_000)]
    srs_sha256: Hex64 | None = None


def parse_proof_chain(raw: bytes | str, source: str) -> dict[str, Any]:
    """Validate ``proof/chain.json`` and return it as a plain mapping (the keys ``federity train`` writes).
    Raises :class:`ProofError` saying what is wrong; ``source`` names the file and its update."""
    hint = "the update's proof cannot be checked: reject the update; its author must train and prove again"
    chain = _validated(ProofChain, raw, MAX_CHAIN_BYTES, source, ProofError, hint)
    if len(chain.weights) != len(chain.batches) + 1:
        raise ProofError(f"{source} is malformed: the hash chain has {len(chain.weights)} weights for "
                         f"{len(chain.batches)} batches", hint)
    return chain.model_dump(by_alias=True)
