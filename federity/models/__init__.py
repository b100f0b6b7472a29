"""The model zoo: architectures a repository can name by id, so ``federity init`` needs no user code.

A repository names its model in ``federity.yaml`` either by zoo id with arguments, or as ``module:function``,
a builder stored in the repository itself (``init`` copies ``module.py`` from the current directory into the
repository and commits it). A builder is code the repository's owner wrote, and every contributor who trains
runs it on their own machine: it is resolved only to a module file the repository tracks, never to an installed
module, and ``clone`` and ``train`` name it (:mod:`federity.builders`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from federity.builders import MODEL_BUILDER, is_code_spec, load_repository_function
from federity.config import parse_pairs
from federity.errors import ConfigError, UnknownPluginError
from federity.plugins import Registry


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: its id, framework, builder (``module:function``), arguments with their defaults, the
    objective it trains (``task.loss``, :data:`federity.config.Objective`) and the data it reads (``table``,
    ``images``, ``sequences``, ``text`` or ``graph``)."""

    id: str
    framework: str
    builder: str
    args: dict[str, int] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    description: str = ""
    objective: str = "cross_entropy"
    data: str = "table"

    def to_json(self) -> dict[str, Any]:
        """The entry as `federity models --json` lists it."""
        return {
            "id": self.id,
            "framework": self.framework,
            "args": {name: {"type": "int", "default": default, "required": name in self.required}
                     for name, default in self.args.items()},
            "description": self.description,
            "objective": self.objective,
            "data": self.data,
        }


class Zoo(Protocol):
    """One framework's zoo, a registered plugin (entry-point group ``federity.zoos``) named after its framework:
    the entries it builds. Its module must import no framework: builders import theirs when called."""

    name: str
    version: int
    models: tuple[ZooModel, ...]


ZOOS: Registry[Zoo] = Registry("model zoo", "federity.zoos", {
    "torch": "federity.models.torch_zoo:TorchZoo",
    "tensorflow": "federity.models.keras_zoo:KerasZoo",
})


def zoo() -> list[ZooModel]:
    """Every installed framework's zoo entries, framework by framework (importing no framework)."""
    return [entry for name in ZOOS.names() for entry in ZOOS.load(name).models]


def zoo_model(model_id: str, framework: str) -> ZooModel:
    """The zoo entry for ``model_id`` in ``framework``; an unknown id lists the available ones."""
    entries = zoo()
    for entry in entries:
        if entry.id == model_id and entry.framework == framework:
            return entry
    available = ", ".join(e.id for e in entries if e.framework == framework) or "none"
    raise UnknownPluginError(
        f"no model {model_id!r} for framework {framework!r} in the zoo",
        f"use one of: {available} (see `federity models`), or a builder in the repository as module:function",
    )


def is_repository_builder(model_id: str) -> bool:
    """Whether ``model_id`` names a ``module:function`` builder rather than a zoo entry."""
    return is_code_spec(model_id)


def parse_model_args(model_id: str, framework: str, pairs: list[str]) -> dict[str, Any]:
    """Turn ``k=v`` strings into builder arguments: typed and checked for zoo models, YAML scalars otherwise."""
    args = parse_pairs(pairs, "model argument", "--model-arg hidden=32")
    if is_repository_builder(model_id):
        return args
    entry = zoo_model(model_id, framework)
    unknown = sorted(set(args) - set(entry.args))
    if unknown:
        raise ConfigError(
            f"model {model_id!r} takes no argument {', '.join(unknown)}",
            f"its arguments are: {', '.join(entry.args)}",
        )
    missing = [name for name in entry.required if name not in args]
    if missing:
        raise ConfigError(
            f"model {model_id!r} needs {', '.join(missing)}",
            f"pass --model-arg {missing[0]}=N",
        )
    for name, value in args.items():
        least = 0 if entry.args[name] == 0 and name not in entry.required else 1  # e.g. EfficientNet's variant 0
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            kind = "a positive" if least else "a non-negative"
            raise ConfigError(f"model argument {name}={value!r} must be {kind} integer", "fix the value")
    return {name: args.get(name, default) for name, default in entry.args.items()}


def build_model(model_id: str, framework: str, args: dict[str, Any], repo_root: Path | None = None) -> Any:
    """Construct the model: a zoo entry, or the repository's own ``module:function`` builder, which must be a
    module the repository at ``repo_root`` tracks (:func:`federity.builders.load_repository_function`)."""
    if is_repository_builder(model_id):
        if repo_root is None:
            raise ConfigError(f"model {model_id!r} lives in a repository", "build it from inside the repository")
        builder = load_repository_function(model_id, repo_root, MODEL_BUILDER)
    else:
        module_name, _, function_name = zoo_model(model_id, framework).builder.partition(":")
        builder = getattr(importlib.import_module(module_name), function_name)
    failure = None
    try:
        return builder(**args)
    except Exception as exc:  # the repository's code: its failure is reported, not raised as a traceback
        failure = f"{type(exc).__name__}: {exc}"
    raise ConfigError(f"model builder {model_id!r} failed with its arguments ({failure})",
                      "fix the model arguments in federity.yaml, or the builder in the repository")
