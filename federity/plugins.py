"""One plugin registry for every kind of plugin: frameworks, trainers, model zoos, aggregation strategies, merge
methods, ledgers.

A :class:`Registry` maps plugin ids to import paths (``module:attribute``) and imports a plugin's module only
when that plugin is asked for, so importing Federity (or this module) imports no framework. Its entries come from
two places:

- the built-ins, given in code (so the registry works from a source checkout and in any install);
- the ``importlib.metadata`` entry points of its group (``federity.frameworks``, ``federity.trainers``,
  ``federity.zoos``, ``federity.strategies``, ``federity.merge_methods``, ``federity.ledgers``): a package that
  declares ``[project.entry-points."federity.strategies"] krum = "my_package.krum:Krum"`` adds a strategy
  ``krum``.
  A built-in name cannot be taken over by an entry point that points elsewhere (that entry point is ignored).

A plugin is a class (or factory) with two attributes: ``name``, which must equal the id it is registered under
(a plugin registered as ``fedavg`` that says it is ``fedmedian`` is refused), and ``version: int`` (1, 2, …),
which changes whenever what the plugin computes changes. Ids take the form ``name`` (the current version: the
entry registered under the plain name) or ``name@version`` (exactly that version: an entry registered as
``name@version``, or the current one if it is that version). Older versions stay registered as ``name@version``,
so that, for instance, an aggregate made by ``fedavg@1`` can still be recomputed after ``fedavg`` moves on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from federity.errors import ConfigError, UnknownPluginError

T = TypeVar("T")

_ID = re.compile(r"(?P<name>[a-z0-9][a-z0-9._-]{0,63})(?:@(?P<version>[1-9][0-9]{0,5}))?")


@dataclass(frozen=True)
class PluginId:
    """A parsed plugin id: ``name``, and ``version`` when the id pins one (``name@version``)."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


class Registry(Generic[T]):
    """The plugins of one kind (``kind`` names them in messages, e.g. ``"aggregation strategy"``), from the
    built-ins ``builtins`` (id → ``module:attribute``) and the entry points of ``group``."""

    def __init__(self, kind: str, group: str, builtins: Mapping[str, str]) -> None:
        self.kind = kind
        self.group = group
        self._builtins = dict(builtins)
        self._entries: dict[str, EntryPoint] | None = None

    def _table(self) -> dict[str, EntryPoint]:
        """Every registered id → its entry point (read once; :meth:`refresh` reads the entry points again)."""
        if self._entries is None:
            table = {plugin_id: EntryPoint(plugin_id, value, self.group)
                     for plugin_id, value in self._builtins.items()}
            for entry in entry_points(group=self.group):
                if _ID.fullmatch(entry.name) and entry.name not in table:
                    table[entry.name] = entry
            self._entries = table
        return self._entries

    def refresh(self) -> None:
        """Forget the entry points read so far (after installing a plugin package in a running process)."""
        self._entries = None

    def names(self) -> list[str]:
        """The installed plugins' names (without versions), sorted."""
        return sorted({self.parse(plugin_id).name for plugin_id in self._table()})

    def parse(self, spec: object) -> PluginId:
        """``spec`` as a :class:`PluginId`; anything that is not ``name`` or ``name@version`` is refused."""
        match = _ID.fullmatch(spec) if isinstance(spec, str) else None
        if match is None:
            raise UnknownPluginError(f"{spec!r} is not a valid {self.kind} id",
                                     f"use one of: {', '.join(self.names())} (optionally as name@version)")
        version = match.group("version")
        return PluginId(match.group("name"), int(version) if version else None)

    def versions(self, name: str) -> list[int]:
        """The versions of plugin ``name`` that are installed (loading the current one to read its version)."""
        table = self._table()
        found = {pid.version for pid in map(self.parse, table) if pid.name == name and pid.version is not None}
        if name in table:
            found.add(self._version(self._load(name), name))
        return sorted(found)

    def __contains__(self, spec: object) -> bool:
        try:
            self.load(spec)
        except UnknownPluginError:
            return False
        return True

    def load(self, spec: object) -> Callable[..., T]:
        """The plugin ``spec`` names (its class or factory, not yet called), imported now; an unknown name lists
        the installed ones, an unknown version the installed versions."""
        plugin_id = self.parse(spec)
        table = self._table()
        name, version = plugin_id.name, plugin_id.version
        if name not in table and not any(self.parse(other).name == name for other in table):
            raise UnknownPluginError(f"unknown {self.kind} {name!r}", f"use one of: {', '.join(self.names())}")
        if version is None:
            if name not in table:  # only pinned versions are installed
                raise UnknownPluginError(f"{self.kind} {name!r} has no current version installed",
                                         f"name a version: {self._version_list(name)}")
            plugin = self._load(name)
            self._version(plugin, name)
            return plugin
        if str(plugin_id) in table:
            plugin = self._load(str(plugin_id))
            if self._version(plugin, str(plugin_id)) != version:
                raise UnknownPluginError(
                    f"the {self.kind} registered as {str(plugin_id)!r} says it is version "
                    f"{self._version(plugin, str(plugin_id))}", "fix the package that registers it")
            return plugin
        if name in table:
            plugin = self._load(name)
            if self._version(plugin, name) == version:
                return plugin
        raise UnknownPluginError(f"{self.kind} {name!r} has no version {version} installed",
                                 f"installed versions: {self._version_list(name)}")

    def create(self, spec: object, *args: Any, **kwargs: Any) -> T:
        """An instance of the plugin ``spec`` names, made with ``args`` and ``kwargs``."""
        return self.load(spec)(*args, **kwargs)

    def with_parameters(self, spec: object, parameters: Mapping[str, Any] | None) -> T:
        """The plugin ``spec`` names, made with the keyword ``parameters``; a plugin that does not take them is a
        :class:`~federity.errors.ConfigError` (its own validation raises its own errors)."""
        plugin = self.load(spec)
        try:
            return plugin(**dict(parameters or {}))
        except TypeError as exc:
            raise ConfigError(f"{self.kind} {spec} cannot be made with parameters "
                              f"{', '.join(map(str, parameters or {})) or 'none'}: {exc}",
                              "pass only the parameters it documents") from None

    def _version_list(self, name: str) -> str:
        return ", ".join(f"{name}@{v}" for v in self.versions(name)) or "none"

    def _load(self, plugin_id: str) -> Callable[..., T]:
        """Import the entry registered as ``plugin_id`` and check the name it declares."""
        entry = self._table()[plugin_id]
        try:
            plugin = entry.load()
        except (ImportError, AttributeError) as exc:
            raise UnknownPluginError(f"the {self.kind} {plugin_id!r} cannot be loaded from {entry.value}: {exc}",
                                     "reinstall the package that provides it") from None
        name = plugin_id.partition("@")[0]
        declared = getattr(plugin, "name", None)
        if declared != name:
            raise UnknownPluginError(f"the {self.kind} registered as {name!r} ({entry.value}) says its name is "
                                     f"{declared!r}", "register a plugin under the name it declares")
        return plugin

    def _version(self, plugin: Callable[..., T], plugin_id: str) -> int:
        version = getattr(plugin, "version", None)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise UnknownPluginError(f"the {self.kind} registered as {plugin_id!r} declares no version "
                                     f"(version: int, 1 or more), but {version!r}",
                                     "give the plugin a class attribute version = 1")
        return version
