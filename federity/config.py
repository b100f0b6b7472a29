"""``federity.yaml``: a repository's identity, model, members and policies.

The file is part of every commit, so membership is versioned with the weights: the role a wallet held "at a
commit" is read from the ``federity.yaml`` of that commit's first parent.

Every commit's ``federity.yaml`` was written by whoever made the commit, so it is parsed as hostile input
(:meth:`RepoConfig.from_yaml`): YAML's safe loader only, at most :data:`MAX_YAML_BYTES`, nesting at most
:data:`MAX_YAML_DEPTH` deep, no aliases (``*name``: an alias bomb expands to billions of nodes), and every field
checked against a schema. **Unknown keys are refused**, at the top level and in every section: a misspelt policy
(``max_stalenes: 3``) would otherwise silently mean its default, and a key this version does not know may be a
policy it would not enforce. A new key comes with a new ``federity`` format version.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
)

from federity.errors import ConfigError
from federity.identity import is_pubkey

CONFIG_FILE = "federity.yaml"
PARAMS_FILE = "params.yaml"
FORMAT_VERSION = 1
MAX_YAML_BYTES = 1 << 20
"""The largest ``federity.yaml`` or ``params.yaml`` Federity reads (1 MiB; a real one is a few KiB)."""
MAX_YAML_DEPTH = 16
"""The deepest nesting of mappings and lists Federity reads in a YAML file (``federity.yaml`` needs 4)."""

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Role(IntEnum):
    """Member roles, ordered: each role may do everything the roles below it may."""

    READER = 0
    CONTRIBUTOR = 1
    MAINTAINER = 2
    OWNER = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named ``text`` (case-insensitive)."""
        try:
            return cls[text.upper()]
        except KeyError:
            raise ConfigError(
                f"unknown role {text!r}", f"use one of: {', '.join(r.label for r in cls)}"
            ) from None

    @property
    def label(self) -> str:
        """The role's name as written in federity.yaml."""
        return self.name.lower()


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about input someone else wrote."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_yaml(raw: str | bytes, source: str, hint: str) -> Any:
    """Parse YAML someone else wrote, bounded: at most :data:`MAX_YAML_BYTES`, UTF-8, nested at most
    :data:`MAX_YAML_DEPTH` deep, without aliases, with the safe loader (plain data only: no Python objects).
    Every problem is a :class:`ConfigError` naming ``source``; ``hint`` says what to do."""
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(f"{source} is larger than {MAX_YAML_BYTES} bytes", hint)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{source} is not UTF-8 text", hint) from None
    try:
        depth = 0
        for event in yaml.parse(raw, Loader=_SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(f"{source} uses a YAML alias (*name), which Federity does not read",
                                  f"write the values out in full; {hint}")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise ConfigError(f"{source} is nested more than {MAX_YAML_DEPTH} levels deep", hint)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(raw, Loader=_SafeLoader)  # the C or Python *safe* loader
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{source} is not valid YAML{where}: {_short(str(problem), 120)}", hint) from None
    except (ValueError, OverflowError, RecursionError, TypeError):  # e.g. a timestamp like 2020-13-45
        raise ConfigError(f"{source} is not valid YAML: a value cannot be read", hint) from None


def parse_pairs(pairs: list[str], what: str, example: str) -> dict[str, Any]:
    """``key=value`` strings (command-line options) as a mapping, each value read as a YAML scalar (``0.2`` is a
    number, ``abc`` a string); ``what`` and ``example`` name the option in the error."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {pair!r} is not key=value", f"write it like {example}")
        parsed[key] = load_yaml(value, f"{what} {key}", f"write it like {example}")
    return parsed


class PluginParameters(BaseModel):
    """What every plugin's parameters model derives from: strict types, unknown names refused, immutable. With no
    fields of its own, the parameters of a plugin that takes none."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


ParamsModel = TypeVar("ParamsModel", bound=BaseModel)


def validated_parameters(model: type[ParamsModel], parameters: dict[str, Any], plugin: str,
                         fields: Iterable[tuple[str, Any]] | None = None) -> ParamsModel:
    """A plugin's ``parameters`` validated by its pydantic ``model``; invalid ones are a :class:`ConfigError`
    naming ``plugin`` (e.g. ``"merge method ties@1"``), each problem, and the parameters it takes (``fields``:
    name and pydantic field pairs, default the model's)."""
    try:
        return model(**parameters)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}" for e in exc.errors())
        takes = ", ".join(f"{name} ({field.description or field.annotation})"
                          for name, field in (model.model_fields.items() if fields is None else fields)) or "none"
        raise ConfigError(f"invalid parameters for {plugin}: {problems}", f"{plugin} takes: {takes}") from None


def validation_problem(exc: ValidationError, source: str) -> str:
    """The first problem pydantic found, as one sentence naming ``source`` and the key (values are not echoed:
    they come from someone else and can be huge)."""
    error = exc.errors(include_url=False, include_input=False)[0]
    key = ".".join(str(part) if len(str(part)) <= 60 else str(part)[:59] + "…" for part in error["loc"])
    more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    if error["type"] == "extra_forbidden":
        return f"{source}: unknown key {key!r}{more}"
    if error["type"] == "missing":
        return f"{source}: {key!r} is missing{more}"
    where = f"{key!r}: " if key else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] in ("model_type", "dict_type"):
        message = "must be a mapping"
    return f"{source}: {where}{message}{more}"


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _pubkey(value: str) -> str:
    if not is_pubkey(value):
        raise ValueError("is not a wallet public key (base58, 32 bytes)")
    return value


def _module_function(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError("must be module:function")
    return value


def _repository_file(value: str) -> str:
    parts = value.split("/")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./-]*", value) or any(p in ("", ".", "..") for p in parts):
        raise ValueError("must be a plain relative path of a file in the repository, e.g. tokenizer.json")
    return value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
FiniteFloat = Annotated[float, AfterValidator(_finite)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Pubkey = Annotated[str, AfterValidator(_pubkey)]


def _scalar(value: object) -> object:
    if value is None or isinstance(value, bool) or (isinstance(value, int) and abs(value) < 2**63):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and len(value) <= 1000:
        return value
    raise ValueError("must be a number, a string of at most 1000 characters, true, false or null")


Scalar = Annotated[Any, PlainValidator(_scalar)]


Objective = Literal["cross_entropy", "reconstruction", "next_token", "adversarial"]
"""What local training minimises, ``task.loss``: ``cross_entropy`` of class scores against labels (classifiers;
metrics loss and accuracy), ``reconstruction``, the mean squared error of the model's output against its input
(autoencoders; metric loss), and ``next_token``, the cross-entropy of each position's scores against the next
token id, padding never a target (language models; metrics loss and next-token accuracy), and ``adversarial``,
a GAN's two parameter groups each trained on its own loss (metrics generator_loss and discriminator_loss). The
last three read unlabeled data."""


class TaskSection(BaseModel):
    """``task``: what the model learns and how a site's data is read."""

    model_config = _STRICT
    loss: Objective = "cross_entropy"
    metrics: Annotated[list[Name], Field(max_length=32)] = ["accuracy"]
    label: Text = "label"
    loader: Annotated[str, StringConstraints(max_length=200), AfterValidator(_module_function)] | None = None
    # a text task: the column holding the text, the committed tokenizer file and the longest sequence it makes
    text: Text = "text"
    tokenizer: Annotated[str, StringConstraints(max_length=200), AfterValidator(_repository_file)] | None = None
    max_length: Annotated[int, Field(ge=1, le=8192)] = 128


class ModelSection(BaseModel):
    """``model``: a zoo id or ``module:function`` builder, and its arguments."""

    model_config = _STRICT
    id: Text
    args: Annotated[dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")], Scalar],
                    Field(max_length=64)] | None = None


class ReviewSection(BaseModel):
    """``review``: the review policy, and the largest update weights file a reviewer accepts."""

    model_config = _STRICT
    policy: Literal["manual", "auto"] = "manual"
    max_update_bytes: Annotated[int, Field(ge=1, le=2**40)] | None = None


class PrivacySection(BaseModel):
    """``privacy``: the repository is private (its weights sealed to its members, :mod:`federity.sealing`), and
    who besides its author and the owners and maintainers reads a contributor's update: nobody (``reviewers``,
    the default), every contributor too (``contributors``), or every member, readers included (``members``: an
    auditor who is a reader can then recompute every aggregate)."""

    model_config = _STRICT
    updates: Literal["reviewers", "contributors", "members"] = "reviewers"


class AggregationSection(BaseModel):
    """``aggregation``: the strategy (``name`` or ``name@version``) and its parameters, and how many rounds stale
    an accepted update may be. The strategy checks its own parameters when it is made."""

    model_config = _STRICT
    strategy: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}(@[1-9][0-9]{0,5})?$")] = (
        "fedavg")
    params: Annotated[dict[Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,63}$")],
                           bool | int | FiniteFloat | Annotated[str, Field(max_length=200)]],
                      Field(max_length=32)] = {}
    max_staleness: Annotated[int, Field(ge=0, le=1000)] = 0
    max_memory_bytes: Annotated[int, Field(ge=1 << 20, le=1 << 50)] | None = None


class SrsSection(BaseModel):
    """``proofs.srs``: the structured reference string the repository's proofs use."""

    model_config = _STRICT
    file: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")]
    sha256: Hex64
    logrows: Annotated[int, Field(ge=1, le=32)]
    source: Literal["generated-offline", "imported"]


class CircuitSection(BaseModel):
    """``proofs.circuit``: the proved SGD step's shape and constants, and the compiled circuit's hashes."""

    model_config = _STRICT
    schema_: Annotated[int, Field(ge=1, le=1000)] = Field(alias="schema")
    features: Annotated[int, Field(ge=1, le=2**20)]
    classes: Annotated[int, Field(ge=1, le=2**20)]
    batch: Annotated[int, Field(ge=1, le=2**20)]
    lr: Annotated[FiniteFloat, Field(gt=0)]
    scale: Annotated[int, Field(ge=1, le=32)]
    settings_sha256: Hex64
    compiled_sha256: Hex64


class HeadSection(BaseModel):
    """``proofs.head``: the layer proofs of training prove, and its weight's layout."""

    model_config = _STRICT
    weight: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.]{1,200}$")]
    bias: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.]{1,200}$")]
    layout: Literal["out_in", "in_out"]


class ProofsSection(BaseModel):
    """``proofs``: the proof-of-training policy (:mod:`federity.proofs.policy`)."""

    model_config = _STRICT
    audits: Annotated[int, Field(ge=1, le=10_000)]
    scale: Annotated[int, Field(ge=6, le=16)]
    srs: SrsSection
    circuit: CircuitSection
    head: HeadSection | None = None


class ConfigFile(BaseModel):
    """The schema of ``federity.yaml``."""

    model_config = _STRICT
    federity: int
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    name: Text
    framework: Name
    model: ModelSection
    members: Annotated[dict[Pubkey, Annotated[Literal["owner", "maintainer", "contributor", "reader"],
                                              BeforeValidator(_lower)]], Field(min_length=1, max_length=10_000)]
    task: TaskSection = TaskSection()
    review: ReviewSection = ReviewSection()
    aggregation: AggregationSection = AggregationSection()
    ledger: Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^[^\s\x00-\x1f\x7f]+$")] = (
        "embedded")
    proofs: ProofsSection | None = None
    privacy: PrivacySection | None = None


_HINTS = {
    "name": "a repository's name is 1 to 200 characters, without control characters (newlines, tabs)",
    "id": "the repository id is fixed at genesis (1 to 64 letters, digits, _ or -): restore it from the genesis "
          "commit",
    "framework": "framework names an installed framework adapter, e.g. torch",
    "ledger": "ledger is `embedded`, a cluster name or an RPC URL (no spaces)",
    "model": "write model: {id: mlp, args: {in_features: 4}}: args maps names to numbers or strings",
    "task": "write task: {loss: cross_entropy, metrics: [accuracy], label: label} (loader: module:function, "
            "optional)",
    "members": "members maps wallet public keys to owner, maintainer, contributor or reader",
    "aggregation": "write aggregation: {strategy: fedavg, params: {}, max_staleness: 0} (params: names to numbers "
                   "or strings, e.g. {fraction: 0.2} for trimmed-mean)",
    "review": "write review: {policy: manual} (max_update_bytes: a positive integer, optional)",
    "proofs": "the proofs section is written by `federity init --proofs`; restore it from the genesis commit",
    "privacy": "write privacy: {updates: reviewers} (or contributors, or members); it is fixed at genesis: restore "
               "it from the genesis commit",
}


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # never write anchors: the reader refuses aliases
        return True


@dataclass
class RepoConfig:
    """The parsed content of ``federity.yaml``."""

    name: str
    framework: str
    model: dict[str, Any]
    members: dict[str, Role]
    id: str = field(default_factory=lambda: secrets.token_hex(16))
    task: dict[str, Any] = field(
        default_factory=lambda: {"loss": "cross_entropy", "metrics": ["accuracy"], "label": "label"}
    )
    review: dict[str, Any] = field(default_factory=lambda: {"policy": "manual"})
    aggregation: dict[str, Any] = field(default_factory=lambda: {"strategy": "fedavg"})
    ledger: str = "embedded"
    proofs: dict[str, Any] | None = None
    """Proof-of-training policy (:mod:`federity.proofs`): ``audits``, ``scale`` and the ``srs`` record; ``None``:
    updates carry no proof."""
    privacy: dict[str, Any] | None = None
    """Who reads the weights (:class:`PrivacySection`); ``None``: a public repository, whose weights anyone who
    reads its storage reads."""

    def role_of(self, pubkey: str) -> Role | None:
        """The role ``pubkey`` holds, or ``None`` for a non-member."""
        return self.members.get(pubkey)

    @property
    def private(self) -> bool:
        """Whether the weights are sealed to the members."""
        return self.privacy is not None

    def version_readers(self) -> list[str]:
        """Who reads a private repository's versions: every member."""
        return sorted(self.members)

    def update_readers(self, author: str) -> list[str]:
        """Who reads an update ``author`` makes in a private repository: itself, the owners and maintainers who
        review it, and the contributors or every member when the policy says so."""
        lowest = {"contributors": Role.CONTRIBUTOR, "members": Role.READER}.get(
            (self.privacy or {}).get("updates", ""), Role.MAINTAINER)
        return [author, *sorted(p for p, role in self.members.items() if role >= lowest and p != author)]

    def to_yaml(self) -> str:
        """Serialise with a stable key order, so equal configs are equal files."""
        data = {
            "federity": FORMAT_VERSION,
            "id": self.id,
            "name": self.name,
            "framework": self.framework,
            "model": self.model,
            "task": self.task,
            "members": {pubkey: role.label for pubkey, role in sorted(self.members.items())},
            "review": self.review,
            "aggregation": self.aggregation,
            "ledger": self.ledger,
        }
        if self.proofs is not None:
            data["proofs"] = self.proofs
        if self.privacy is not None:
            data["privacy"] = self.privacy
        text = yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False)
        RepoConfig.from_yaml(text)  # never write a file that Federity would refuse to read
        return text

    @classmethod
    def from_yaml(cls, text: str | bytes, source: str = CONFIG_FILE) -> RepoConfig:
        """Parse and validate ``federity.yaml`` (text or the bytes of a commit's file); every problem is a
        :class:`ConfigError` that names ``source`` (the file, and the commit it was read at) and the key."""
        restore = f"fix {CONFIG_FILE}, or restore it from git (`git checkout <good commit> -- {CONFIG_FILE}`)"
        data = load_yaml(text, source, restore)
        if not isinstance(data, dict):
            raise ConfigError(f"{source} is not a mapping", restore)
        if data.get("federity") != FORMAT_VERSION or isinstance(data.get("federity"), bool):
            raise ConfigError(
                f"{source} has format version {_short(data.get('federity'))}, this Federity reads {FORMAT_VERSION}",
                "upgrade Federity, or restore the file from git",
            )
        try:
            parsed = ConfigFile.model_validate(data)
        except ValidationError as exc:
            top = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else ""
            raise ConfigError(validation_problem(exc, source), _HINTS.get(top, restore)) from None
        fields = parsed.model_fields_set
        defaults = cls(name="", framework="", model={}, members={})
        return cls(
            id=parsed.id,
            name=parsed.name,
            framework=parsed.framework,
            model={"id": parsed.model.id, "args": dict(parsed.model.args or {})},
            members={pubkey: Role.parse(role) for pubkey, role in parsed.members.items()},
            task=data["task"] if "task" in fields else defaults.task,
            review=data["review"] if "review" in fields else defaults.review,
            aggregation=data["aggregation"] if "aggregation" in fields else defaults.aggregation,
            ledger=parsed.ledger,
            proofs=data.get("proofs"),
            privacy=parsed.privacy.model_dump() if parsed.privacy is not None else None,
        )


TOKENIZER_FILE = "tokenizer.json"
"""Where ``init --tokenizer`` commits a text task's tokenizer."""

DEFAULT_PARAMS = {"lr": 0.1, "epochs": 5, "batch_size": 32, "seed": 0}
"""Local training hyper-parameters written to a new repository's params.yaml."""
