"""Code a repository runs: its model builder and its dataset loader, each named ``module:function``.

``federity.yaml`` may name a model builder (``model.id``) and a dataset loader (``task.loader``) as
``module:function``. Such a function is Python code that the repository's owner or a maintainer wrote and
committed, and that every contributor who trains (and everyone who evaluates) runs on their own machine, with
their own permissions: ``federity clone`` and ``federity train`` say which modules a repository runs, so that
they can be read first. Federity therefore runs such a name only if it is code stored in the repository:

- the module is a dotted path of ASCII identifiers ``a.b.c`` naming the file ``a/b/c.py`` of the repository;
- no part of that path is a symlink, and the file is a regular file inside the repository's root;
- the file is tracked by git at the checked-out commit (``HEAD``; in a repository being created, which has no
  commit yet, the index) as a regular file, and the working tree holds exactly the committed bytes;
- its top-level name is not that of an installed or already imported module (``os``, ``json``, ``torch``,
  ``federity``…), so nobody reading ``federity.yaml`` mistakes which code runs;
- the function is an identifier that is not a dunder name, and the module defines it as a callable.

The module is executed from the committed bytes under a private module name (``spec_from_file_location``): a
module of the same name that is installed or already in ``sys.modules`` is never used, and nothing is added to
``sys.path``. It may import installed packages, but not other modules of the repository.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import keyword
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from federity.errors import ConfigError, FederityError
from federity.git import Git

if TYPE_CHECKING:
    from federity.config import RepoConfig

MODEL_BUILDER = "model builder"
DATASET_LOADER = "dataset loader"
_WHERE = {MODEL_BUILDER: "model.id in federity.yaml", DATASET_LOADER: "task.loader in federity.yaml"}
_REGULAR_MODES = ("100644", "100755")
_LITERAL = {"GIT_LITERAL_PATHSPECS": "1"}  # the module path is a path, never a pathspec pattern
_LOADED: dict[tuple[str, str], ModuleType] = {}


@dataclass(frozen=True)
class CodeSpec:
    """A parsed ``module:function`` name: the module, its file relative to the repository root, the function."""

    spec: str
    module: str
    path: str
    function: str


@dataclass(frozen=True)
class RepositoryCode:
    """One piece of code a repository's configuration runs: its role, the name as written, and the module file
    (relative to the repository root), or why Federity refuses to run it."""

    role: str
    spec: str
    path: str | None
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON document carries it."""
        return {"role": self.role, "spec": self.spec, "path": self.path, "problem": self.problem}


def is_code_spec(name: str) -> bool:
    """Whether ``name`` is written as ``module:function`` (rather than, for a model, a zoo id)."""
    return ":" in name


def parse_code_spec(spec: object, role: str) -> CodeSpec:
    """Check the form of a ``module:function`` name for ``role`` (:data:`MODEL_BUILDER`, :data:`DATASET_LOADER`)
    and return its parts; anything else is a :class:`ConfigError` saying what is wrong."""
    where = _WHERE.get(role, "federity.yaml")
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ConfigError(f"the {role} {spec!r} is not written module:function",
                          f"set {where} to a module stored in the repository and its function, e.g. models.net:build")
    module, _, function = spec.partition(":")
    parts = module.split(".")
    if not all(_is_name(part) for part in parts):
        raise ConfigError(
            f"the {role} {spec!r} does not name a module stored in the repository",
            f"write the module as dotted identifiers (a.b.c for the file a/b/c.py in the repository); "
            f"paths, '..', dunder names and installed modules are refused ({where})")
    if not _is_name(function):
        raise ConfigError(f"the {role} {spec!r} names the function {function!r}, which is not a plain identifier",
                          f"name a function defined in the module, not a dunder name ({where})")
    return CodeSpec(spec, module, "/".join(parts) + ".py", function)


def _is_name(text: str) -> bool:
    return (text.isascii() and text.isidentifier() and not keyword.iskeyword(text)
            and not (text.startswith("__") and text.endswith("__")))


def load_repository_function(spec: str, repo_root: Path, role: str) -> Callable[..., Any]:
    """The function ``spec`` (``module:function``) names in the repository at ``repo_root``, loaded from the
    module file the repository tracks (see the module docstring for every condition); a :class:`ConfigError`
    says which condition failed and what to do. Importing the module runs its code."""
    parsed = parse_code_spec(spec, role)
    where = _WHERE.get(role, "federity.yaml")
    _refuse_shadowing(parsed, role, where)
    root = Path(repo_root).resolve()
    file = _regular_file_inside(root, parsed, role)
    git = Git(root)
    try:
        top = Path(git.run("rev-parse", "--show-toplevel")).resolve()
    except FederityError:
        top = None
    if top != root:
        raise ConfigError(f"the {role} {spec!r} must be stored in a git repository, and its directory is not the "
                          "top of a git working tree", "run the command from the repository's working tree")
    head = git.try_resolve("HEAD")
    listing = (git.run_bytes("ls-tree", "-z", "--full-tree", head, "--", parsed.path, env=_LITERAL) if head
               else git.run_bytes("ls-files", "--stage", "-z", "--", parsed.path, env=_LITERAL))
    entry = _tracked_entry(listing, parsed.path, head is not None)
    if entry is None:
        raise ConfigError(
            f"the {role} {spec!r} needs {parsed.path}, which is not a file tracked by git at the checked-out commit",
            "only code committed to the repository runs: commit the module (a regular file, not a symlink), or "
            "check out a commit that has it")
    try:
        source = file.read_bytes()
    except OSError:
        source = None
    if source is None:
        raise ConfigError(f"{parsed.path} (the {role}) cannot be read", f"check the permissions of {parsed.path}")
    if source != git.run_bytes("cat-file", "blob", entry):
        raise ConfigError(f"{parsed.path} (the {role}) differs from its committed version",
                          f"commit the change, or restore it with `git checkout -- {parsed.path}`")
    module = _LOADED.get((str(file), entry)) or _execute(file, entry, source, parsed, role)
    function = getattr(module, parsed.function, None)
    if not callable(function):
        raise ConfigError(f"{parsed.path} defines no function {parsed.function!r} (the {role} {spec!r})",
                          f"define it in {parsed.path}, or fix {where}")
    return function  # type: ignore[no-any-return]


def _refuse_shadowing(parsed: CodeSpec, role: str, where: str) -> None:
    top = parsed.module.split(".")[0]
    if top in _installed_names() or top in {name.split(".")[0] for name in list(sys.modules)}:
        raise ConfigError(
            f"the {role} {parsed.spec!r} is named like the installed module {top!r}",
            f"rename the repository's module (e.g. models/{top}_net.py) and {where}: Federity runs only modules "
            "stored in the repository, and one named like an installed module would mislead its readers")


@functools.lru_cache(maxsize=1)
def _installed_names() -> frozenset[str]:
    """Top-level names of the standard library, built-in modules and installed distributions."""
    names = set(sys.stdlib_module_names) | set(sys.builtin_module_names) | {"federity"}
    with contextlib.suppress(Exception):  # broken metadata must not hide the other names
        names |= set(importlib.metadata.packages_distributions())
    return frozenset(names)


def _regular_file_inside(root: Path, parsed: CodeSpec, role: str) -> Path:
    current = root
    for part in parsed.path.split("/"):
        current = current / part
        try:
            mode = current.lstat().st_mode
        except OSError:
            raise ConfigError(f"the {role} {parsed.spec!r} needs {parsed.path}, which is not in the repository",
                              "commit the module to the repository, or fix federity.yaml") from None
        if stat.S_ISLNK(mode):
            raise ConfigError(f"{parsed.path} (the {role}) passes through a symlink",
                              "store the module itself in the repository: Federity never runs code through a link")
    if not stat.S_ISREG(mode) or not current.resolve().is_relative_to(root):
        raise ConfigError(f"{parsed.path} (the {role}) is not a regular file inside the repository",
                          "store the module as a plain file in the repository")
    return current


def _tracked_entry(listing: bytes, path: str, from_tree: bool) -> str | None:
    """The blob id of ``path`` in ``ls-tree -z`` (or ``ls-files --stage -z``) output, if a regular file."""
    for record in listing.split(b"\0"):
        meta, tab, name = record.decode(errors="replace").partition("\t")
        fields = meta.split()
        if not tab or name != path or len(fields) != 3:
            continue
        mode, kind_or_oid, oid_or_stage = fields
        if from_tree and mode in _REGULAR_MODES and kind_or_oid == "blob":
            return oid_or_stage
        if not from_tree and mode in _REGULAR_MODES and oid_or_stage == "0":
            return kind_or_oid
    return None


def _execute(file: Path, blob: str, source: bytes, parsed: CodeSpec, role: str) -> ModuleType:
    name = f"_federity_repository_code_{blob[:16]}_{parsed.module.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{parsed.path} (the {role}) cannot be loaded as a Python module",
                          "store the module as a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # classes defined in it (dataclasses, torch modules) look their module up here
    failure = None
    try:
        code = spec.loader.source_to_code(source, str(file))  # type: ignore[attr-defined]
        exec(code, module.__dict__)  # the committed bytes checked above, not a second read of the file
    except (Exception, SystemExit) as exc:
        failure = type(exc).__name__
    if failure is not None:
        sys.modules.pop(name, None)
        raise ConfigError(f"importing {parsed.path} (the {role}) failed: {failure}",
                          f"fix {parsed.path} in the repository, or install what it imports")
    _LOADED[(str(file), blob)] = module
    return module


def repository_code(config: RepoConfig) -> list[RepositoryCode]:
    """The repository code ``config`` runs when a model is built or a dataset read: the ``module:function``
    model builder and dataset loader it names, each with its module file, or why Federity refuses to run it."""
    named: list[tuple[str, object]] = []
    model_id = config.model.get("id") if isinstance(config.model, dict) else None
    if isinstance(model_id, str) and is_code_spec(model_id):
        named.append((MODEL_BUILDER, model_id))
    loader = config.task.get("loader") if isinstance(config.task, dict) else None
    if loader is not None:
        named.append((DATASET_LOADER, loader))
    entries = []
    for role, spec in named:
        try:
            parsed = parse_code_spec(spec, role)
            _refuse_shadowing(parsed, role, _WHERE[role])
        except ConfigError as exc:
            entries.append(RepositoryCode(role, str(spec), None, exc.message))
        else:
            entries.append(RepositoryCode(role, parsed.spec, parsed.path))
    return entries


def code_notice(entries: list[RepositoryCode]) -> str | None:
    """The notice ``clone`` and ``train`` print on stderr about ``entries`` (``None`` when there are none)."""
    runs = [f"{e.path} ({e.role})" for e in entries if e.path is not None]
    refused = [f"{e.spec!r} ({e.role}: {e.problem})" for e in entries if e.path is None]
    lines = []
    if runs:
        lines.append(f"this repository runs its own code: {', '.join(runs)}; its maintainers wrote it and it runs "
                     "with your permissions when you train or evaluate: read it first")
    if refused:
        lines.append(f"federity.yaml names code Federity refuses to run: {'; '.join(refused)}")
    return "\n".join(lines) or None
