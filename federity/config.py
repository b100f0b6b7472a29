"""``federity.yaml``: a repository's identity, model, members and policies.

The file is part of every commit, so membership is versioned with the weights: the role a wallet held "at a
commit" is read from the ``federity.yaml`` of that commit's first parent.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import yaml

from federity.errors import ConfigError
from federity.identity import is_pubkey

CONFIG_FILE = "federity.yaml"
PARAMS_FILE = "params.yaml"
FORMAT_VERSION = 1


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

    def role_of(self, pubkey: str) -> Role | None:
        """The role ``pubkey`` holds, or ``None`` for a non-member."""
        return self.members.get(pubkey)

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
        return yaml.safe_dump(data, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, source: str = CONFIG_FILE) -> RepoConfig:
        """Parse and validate; every problem names the file and the key."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}", f"fix {source}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source} is not a mapping", f"restore {source} from git")
        if data.get("federity") != FORMAT_VERSION:
            raise ConfigError(
                f"{source} has format version {data.get('federity')!r}, this Federity reads {FORMAT_VERSION}",
                "upgrade Federity, or restore the file from git",
            )
        for key in ("id", "name", "framework", "model", "members"):
            if key not in data:
                raise ConfigError(f"{source} has no {key!r}", f"restore {source} from git")
        model = data["model"]
        if not isinstance(model, dict) or not isinstance(model.get("id"), str):
            raise ConfigError(f"{source}: 'model' needs an 'id'", "write model: {id: mlp, args: {...}}")
        members_raw = data["members"]
        if not isinstance(members_raw, dict):
            raise ConfigError(f"{source}: 'members' must map pubkeys to roles", f"fix {source}")
        members: dict[str, Role] = {}
        for pubkey, role in members_raw.items():
            if not is_pubkey(str(pubkey)):
                raise ConfigError(f"{source}: member {pubkey!r} is not a wallet public key", f"fix {source}")
            members[str(pubkey)] = Role.parse(str(role))
        defaults = cls(name="", framework="", model={}, members={})
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            framework=str(data["framework"]),
            model={"id": model["id"], "args": dict(model.get("args") or {})},
            members=members,
            task=data.get("task", defaults.task),
            review=data.get("review", defaults.review),
            aggregation=data.get("aggregation", defaults.aggregation),
            ledger=str(data.get("ledger", defaults.ledger)),
            proofs=data.get("proofs"),
        )


DEFAULT_PARAMS = {"lr": 0.1, "epochs": 5, "batch_size": 32, "seed": 0}
"""Local training hyper-parameters written to a new repository's params.yaml."""
