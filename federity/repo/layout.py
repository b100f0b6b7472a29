"""What a Federity repository may hold, checked before git or DVC writes anything from a commit.

Everything here is pure: bytes (or a git tree listing) in, parsed values or a list of problems out. Two
halves:

- the **tracked tree** (:func:`tree_entry_problems`, :func:`dvc_config_problems`,
  :func:`gitattributes_problems`): no symlinks or gitlinks
  anywhere, nothing git-tracked under ``model/`` (DVC owns it), no ``.git``-like path component, no DVC file but
  ``model.dvc`` (DVC checks out every ``*.dvc``, ``dvc.yaml`` and ``dvc.lock`` it finds), ``.dvc/`` holding only
  ``config`` and ``.gitignore``, and a ``.dvc/config`` that sets only the default remote and its URL (no cache
  location, link type or credential file a hostile repository could point elsewhere), and no ``.gitattributes``
  that makes git rewrite files as it checks them out;
- the **DVC manifest** of ``model/`` (:func:`parse_dvc_file`, :func:`parse_manifest`): ``model.dvc`` tracks
  exactly one directory, ``model``, whose ``.dir`` object is a JSON list of ``{"relpath", "md5"}`` objects,
  each md5 32 lowercase hex digits and each relpath a plain relative POSIX path from :func:`allowed_model_file`
  (the files Federity itself writes into ``model/``).

Object paths are only ever built from an md5 that passed :func:`is_md5`, so no manifest can name a file on the
reader's machine.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import yaml

from federity.errors import WeightsError
from federity.weights import WEIGHTS_FILE

MODEL_DIR = "model"
MODEL_DVC_FILE = "model.dvc"

MANIFEST_MAX_BYTES = 1 << 20
"""A ``.dir`` manifest larger than this is refused before it is read (Federity's hold a handful of entries)."""
MANIFEST_MAX_ENTRIES = 4096
DVC_FILE_MAX_BYTES = 64 << 10
DVC_CONFIG_MAX_BYTES = 64 << 10
OBJECT_MAX_BYTES = 16 << 30
"""Any other DVC object larger than this is refused before it is read."""

# The files Federity writes into model/: the weights (federity.weights.WEIGHTS_FILE), the proof-policy files
# stored at genesis (federity.proofs.policy.SETTINGS_FILE / COMPILED_FILE, federity.proofs.srs.SRS_FILE) and an
# update's proof of training (federity.proofs.prove.CHAIN_FILE and step_file(i)), and an aggregate's server state
# (STATE_FILE, for strategies such as FedAdam). tests/security/test_storage.py checks that these names are the
# ones those modules write.
STATE_FILE = "strategy-state.safetensors"
MODEL_FILES = frozenset({WEIGHTS_FILE, STATE_FILE, "proof-srs.bin", "proof-settings.json", "proof-circuit.ezkl",
                         "proof/chain.json"})
_STEP_FILE = re.compile(r"proof/step-(0|[1-9][0-9]{0,8})\.json")
_MD5 = re.compile(r"[0-9a-f]{32}")
_DIR_MD5 = re.compile(r"[0-9a-f]{32}\.dir")

BLOB_MODES = frozenset({"100644", "100755"})
DVC_DIR_FILES = frozenset({".dvc/config", ".dvc/.gitignore"})
_DVC_CORE_KEYS = frozenset({"remote", "autostage", "analytics", "check_update"})
_DVC_REMOTE_KEYS = frozenset({"url", "endpointurl", "region"})
_DVC_REMOTE_SECTION = re.compile(r'remote "([A-Za-z0-9_.-]{1,64})"')
_STATE_DIRS = frozenset({".federity"})


def is_md5(value: object) -> bool:
    """Whether ``value`` is an md5 as DVC names objects: exactly 32 lowercase hex digits."""
    return isinstance(value, str) and _MD5.fullmatch(value) is not None


def allowed_model_file(relpath: str) -> bool:
    """Whether ``relpath`` (relative to ``model/``) is a file Federity writes there."""
    return relpath in MODEL_FILES or _STEP_FILE.fullmatch(relpath) is not None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _refused(commit: str, what: str) -> WeightsError:
    return WeightsError(
        f"commit {commit[:12]}: {what}; Federity refuses to check out or read its weights",
        "do not use this commit: check out another revision (`federity log --all`) and ask its author for one "
        "made with Federity",
    )


@dataclass(frozen=True)
class DvcOut:
    """The one output ``model.dvc`` tracks: the ``.dir`` object of ``model/``."""

    dir_md5: str  # "<32 hex>.dir"

    @property
    def md5(self) -> str:
        """The manifest object's md5 (without ``.dir``)."""
        return self.dir_md5.removesuffix(".dir")


def parse_dvc_file(raw: bytes, commit: str) -> DvcOut:
    """``model.dvc`` of ``commit``: YAML with exactly one out, path ``model``, md5 ``<32 hex>.dir``, hash ``md5``."""
    if len(raw) > DVC_FILE_MAX_BYTES:
        raise _refused(commit, f"{MODEL_DVC_FILE} is {len(raw)} bytes, more than a DVC file holds")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        raise _refused(commit, f"{MODEL_DVC_FILE} is not a DVC file (not YAML)") from None
    if not isinstance(data, dict) or set(data) != {"outs"}:
        raise _refused(commit, f"{MODEL_DVC_FILE} must hold exactly one key, outs")
    outs = data["outs"]
    if not isinstance(outs, list) or len(outs) != 1 or not isinstance(outs[0], dict):
        raise _refused(commit, f"{MODEL_DVC_FILE} must track exactly one output")
    out = outs[0]
    extra = set(out) - {"md5", "size", "nfiles", "hash", "path"}
    if extra:
        raise _refused(commit, f"{MODEL_DVC_FILE} sets {', '.join(sorted(map(str, extra)))[:80]}, which Federity "
                               "never writes")
    if out.get("path") != MODEL_DIR:
        raise _refused(commit, f"{MODEL_DVC_FILE} tracks {_shown(out.get('path'))}, not {MODEL_DIR}")
    if out.get("hash") != "md5":
        raise _refused(commit, f"{MODEL_DVC_FILE} does not use DVC 3's md5 hashes (hash: md5)")
    md5 = out.get("md5")
    if not isinstance(md5, str) or _DIR_MD5.fullmatch(md5) is None:
        raise _refused(commit, f"{MODEL_DVC_FILE} does not name a directory object (<32 hex digits>.dir)")
    for key in ("size", "nfiles"):
        if key in out and (not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < 0):
            raise _refused(commit, f"{MODEL_DVC_FILE}: {key} is not a count")
    return DvcOut(md5)


def parse_manifest(raw: bytes, commit: str) -> dict[str, str]:
    """The ``.dir`` manifest of ``model/`` at ``commit``: relpath → md5, every entry checked.

    A manifest is a JSON list of objects with a string ``relpath`` (a file of :func:`allowed_model_file`: plain,
    relative, POSIX, no ``..``, no empty part, no duplicate) and an ``md5`` (:func:`is_md5`); DVC's optional
    ``size`` and ``isexec`` are allowed, nothing else.
    """
    if len(raw) > MANIFEST_MAX_BYTES:
        raise _refused(commit, f"the manifest of {MODEL_DIR}/ is larger than {MANIFEST_MAX_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _refused(commit, f"the manifest of {MODEL_DIR}/ is not JSON") from None
    if not isinstance(data, list):
        raise _refused(commit, f"the manifest of {MODEL_DIR}/ is not a list of files")
    if len(data) > MANIFEST_MAX_ENTRIES:
        raise _refused(commit, f"the manifest of {MODEL_DIR}/ lists more than {MANIFEST_MAX_ENTRIES} files")
    entries: dict[str, str] = {}
    for entry in data:
        if not isinstance(entry, dict) or not {"relpath", "md5"} <= set(entry):
            raise _refused(commit, f"the manifest of {MODEL_DIR}/ holds an entry that is not a file record")
        if set(entry) - {"relpath", "md5", "size", "isexec"}:
            raise _refused(commit, f"the manifest of {MODEL_DIR}/ holds an entry with fields DVC never writes")
        relpath, md5 = entry["relpath"], entry["md5"]
        problem = path_problem(relpath)
        if problem is None and not allowed_model_file(relpath):
            problem = "is not a file Federity stores in model/"
        if problem is not None:
            raise _refused(commit, f"the manifest of {MODEL_DIR}/ names the path {_shown(relpath)}, which "
                                   f"{problem}")
        if relpath in entries:
            raise _refused(commit, f"the manifest of {MODEL_DIR}/ lists {relpath} twice")
        if not is_md5(md5):
            raise _refused(commit, f"the manifest of {MODEL_DIR}/ gives {relpath} an md5 that is not 32 lowercase "
                                   "hex digits")
        size = entry.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise _refused(commit, f"the manifest of {MODEL_DIR}/ gives {relpath} a size that is not a count")
        if not isinstance(entry.get("isexec", False), bool):
            raise _refused(commit, f"the manifest of {MODEL_DIR}/ gives {relpath} a malformed isexec")
        entries[relpath] = md5
    return entries


def path_problem(path: object) -> str | None:
    """Why ``path`` is not a plain relative POSIX path (``None`` when it is one)."""
    if not isinstance(path, str) or not path:
        return "is not a path"
    if path.startswith("/"):
        return "is absolute"
    if "\\" in path or any(ord(c) < 0x20 or c == "\x7f" for c in path):
        return "holds a backslash or a control character"
    parts = path.split("/")
    if any(part == "" for part in parts):
        return "has an empty part"
    if any(part in (".", "..") for part in parts):
        return "climbs out of its directory ('.' or '..')"
    return None


def _is_git_name(part: str) -> bool:
    # ".git" as git, Windows (".GIT", ".git." , ".git ") and the 8.3 short name ("GIT~1") would read it
    folded = part.lower().rstrip(". ")
    return folded == ".git" or folded.startswith("git~")


def tree_entry_problems(entries: list[tuple[str, str, str]]) -> list[str]:
    """Why a commit's tracked files are not what a Federity repository holds. ``entries``: ``(mode, type, path)``
    for every tracked file, as ``git ls-tree -r`` lists them (paths relative to the root)."""
    problems: list[str] = []
    for mode, kind, path in entries:
        shown = _shown(path)
        problem = path_problem(path)
        parts = path.split("/")
        if problem is not None:
            problems.append(f"the tracked path {shown} {problem}")
        elif mode == "120000":
            problems.append(f"{shown} is a symbolic link (Federity repositories track none: a link makes writes "
                            "land outside the repository)")
        elif mode == "160000" or kind == "commit":
            problems.append(f"{shown} is a git submodule (gitlink); Federity repositories hold none")
        elif mode not in BLOB_MODES or kind != "blob":
            problems.append(f"{shown} has git mode {mode}, not a regular file's")
        elif any(_is_git_name(part) for part in parts) or path == ".gitmodules":
            problems.append(f"{shown} is a git control path")
        elif parts[0].lower() == MODEL_DIR:
            problems.append(f"{shown} is tracked by git, but {MODEL_DIR}/ belongs to DVC (model.dvc)")
        elif parts[0].lower() in _STATE_DIRS:
            problems.append(f"{shown} is under {parts[0]}/, local state that is never tracked")
        elif parts[0].lower() == ".dvc" and path not in DVC_DIR_FILES:
            problems.append(f"{shown} is under .dvc/, which tracks only config and .gitignore")
        elif path.lower() != MODEL_DVC_FILE and (parts[-1].lower().endswith(".dvc")
                                                 or parts[-1].lower() in ("dvc.yaml", "dvc.lock")):
            problems.append(f"{shown} is a DVC file; Federity's only one is {MODEL_DVC_FILE}")
    return problems


_REWRITING_ATTRIBUTES = re.compile(rb"(^|\s)[-!]?(filter|ident|working-tree-encoding)(=|\s|$)", re.MULTILINE)


def gitattributes_problems(path: str, raw: bytes) -> list[str]:
    """Why a tracked ``.gitattributes`` would make git write a file other than the blob Federity checked
    (``filter``, ``ident`` and ``working-tree-encoding`` rewrite content on checkout)."""
    if _REWRITING_ATTRIBUTES.search(raw):
        return [f"{_shown(path)} sets filter, ident or working-tree-encoding, which rewrite files as git checks "
                "them out"]
    return []


def dvc_config_problems(raw: bytes) -> list[str]:
    """Why a tracked ``.dvc/config`` sets more than the default remote and its location."""
    from configobj import ConfigObj, ConfigObjError

    if len(raw) > DVC_CONFIG_MAX_BYTES:
        return [".dvc/config is larger than a DVC configuration"]
    try:
        config = ConfigObj(raw.decode("utf-8").splitlines(), list_values=False, interpolation=False)
    except (UnicodeDecodeError, ConfigObjError, SyntaxError):
        return [".dvc/config is not a DVC configuration file"]
    problems = []
    remotes = set()
    for section, values in config.items():
        if not isinstance(values, dict):
            problems.append(f".dvc/config sets {_shown(section)} outside a section")
            continue
        if section == "core":
            allowed = _DVC_CORE_KEYS
        elif (match := _DVC_REMOTE_SECTION.fullmatch(section)) is not None:
            allowed = _DVC_REMOTE_KEYS
            remotes.add(match.group(1))
        else:
            problems.append(f".dvc/config has a section {_shown(section)}; a tracked DVC configuration names only "
                            "the storage (core.remote and remote URLs)")
            continue
        for key, value in values.items():
            if key not in allowed or not isinstance(value, str):
                problems.append(f".dvc/config sets {_shown(section)}.{_shown(key)}, which a tracked DVC "
                                "configuration may not (set it in .dvc/config.local on your machine)")
    remote = config.get("core", {}).get("remote") if isinstance(config.get("core"), dict) else None
    if remote is not None and remote not in remotes:
        problems.append(f".dvc/config names the default remote {_shown(remote)} but does not define it")
    return problems
