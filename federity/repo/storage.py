"""Weights storage through DVC: the ``model/`` directory is tracked by ``model.dvc``.

DVC runs in-process (``dvc.repo.Repo``). Its objects are content-addressed by md5; Federity additionally
records the sha256 of ``model/model.safetensors`` in each signed commit, and :meth:`WeightsStore.read` checks
both when it reads a commit's weights back.

DVC would check out whatever a commit's manifest lists, wherever it points. So Federity parses and checks a
commit's ``model.dvc``, its ``.dir`` manifest and its tracked tree (:mod:`federity.repo.layout`) before DVC
touches the working tree: :meth:`WeightsStore.checkout` and :meth:`WeightsStore.pull` refuse an unsafe commit,
and :meth:`WeightsStore.read` reads only entries of a validated manifest, fetching single objects by their
validated md5 (never DVC's whole-commit fetch).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from federity.errors import RemoteError, SealingError, WeightsError, listed
from federity.git import Git, GitError, is_commit_id
from federity.repo.layout import (
    MANIFEST_MAX_BYTES,
    MODEL_DIR,
    MODEL_DVC_FILE,
    OBJECT_MAX_BYTES,
    STATE_FILE,
    DvcOut,
    dvc_config_problems,
    gitattributes_problems,
    parse_dvc_file,
    parse_manifest,
    tree_entry_problems,
)
from federity.sealing.objects import (
    MAGIC,
    ObjectHeader,
    SealedReader,
    Sealing,
    header_bound,
    is_sealed,
    no_key,
    parse_header,
    seal_file,
)
from federity.weights import WEIGHTS_FILE
from federity.weights.files import Layout
from federity.weights.tensor_file import TensorFile

__all__ = [
    "MODEL_DIR",
    "MODEL_DVC_FILE",
    "REMOTE_NAME",
    "Tree",
    "UnsafeCommitError",
    "WeightsObjectMissing",
    "WeightsStore",
    "storage_problems",
    "tree_problems",
]

REMOTE_NAME = "storage"
KeyFor = Callable[[ObjectHeader], "bytes | None"]
"""What opens a sealed object's data key from its header (``None``: this reader may not)."""


class WeightsObjectMissing(WeightsError):
    """A commit's weights object is in neither the local cache nor the DVC remote."""


class UnsafeCommitError(WeightsError):
    """A commit's tracked tree holds what no Federity repository does (a symlink, a gitlink, a second DVC file…):
    git and DVC must not write it to the working tree."""


@contextlib.contextmanager
def _quiet_dvc() -> Iterator[None]:
    """Keep DVC's console chatter off stdout (where ``--json`` output goes) and its logs at warnings."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _remote_error(action: str, exc: Exception) -> RemoteError:
    return RemoteError(
        f"DVC storage could not {action}: {exc}",
        "check the storage URL and credentials (`dvc remote list`, AWS_* variables for S3) and that it is "
        "reachable, then retry",
    )


@dataclass(frozen=True)
class ObjectFacts:
    """What :meth:`WeightsStore.facts` knows of a tensors file."""

    size: int
    sha256: str
    layout: Layout
    non_finite: tuple[str, ...]


class WeightsStore:
    """The DVC side of one repository's working tree."""

    def __init__(self, root: Path, git: Git) -> None:
        self.root = Path(root)
        self.git = git
        self._manifests: dict[str, dict[str, str]] = {}
        self.keys: Callable[[str], KeyFor] | None = None
        """For a private repository: the data key opener for objects of a commit (set by the repository)."""

    @contextlib.contextmanager
    def _repo(self) -> Iterator[Any]:
        from dvc.repo import Repo

        with _quiet_dvc(), contextlib.chdir(self.root), Repo(str(self.root)) as repo:
            yield repo

    @staticmethod
    def initialise(root: Path, storage_url: str | None, endpoint_url: str | None) -> None:
        """``dvc init`` in ``root``, with ``storage_url`` as the default remote when given."""
        from dvc.repo import Repo

        with _quiet_dvc(), contextlib.chdir(root):
            repo = Repo.init(str(root))
            try:
                if storage_url:
                    with repo.config.edit() as conf:
                        conf["remote"][REMOTE_NAME] = {"url": storage_url}
                        if endpoint_url:
                            conf["remote"][REMOTE_NAME]["endpointurl"] = endpoint_url
                        conf["core"]["remote"] = REMOTE_NAME
            finally:
                repo.close()

    def storage_url(self) -> str | None:
        """The default remote's URL, if one is configured."""
        with self._repo() as repo:
            remote = repo.config["core"].get("remote")
            return repo.config["remote"].get(remote, {}).get("url") if remote else None

    def track(self, *, strategy_state: bool = False, md5s: Mapping[str, str] | None = None,
              sealing: Sealing | None = None) -> None:
        """Record the current ``model/`` in the DVC cache and ``model.dvc``. Only an aggregate carries a strategy's
        state (``strategy_state``): any other commit drops the state file an aggregate left in ``model/``.

        ``md5s``: files of ``model/`` whose md5 the caller computed as it wrote them (relative path → md5), put in
        DVC's state (keyed by the file's inode, size and modification time, as DVC keys its own) so that ``dvc
        add`` does not read them again.

        ``sealing`` (a private repository's): every file of ``model/`` not sealed yet is sealed in place first
        (:meth:`seal_model_files`), so that the DVC cache and storage only ever hold ciphertext; ``md5s`` may name
        files the caller sealed itself."""
        from dvc_data.hashfile.hash_info import HashInfo

        if not strategy_state:
            (self.root / MODEL_DIR / STATE_FILE).unlink(missing_ok=True)
        if sealing is not None:
            md5s = {**(md5s or {}), **self.seal_model_files(sealing)}
        with self._repo() as repo:
            known = [(str(self.root / MODEL_DIR / relpath), HashInfo("md5", md5), None)
                     for relpath, md5 in (md5s or {}).items()]
            repo.state.save_many(known, repo.fs)
            repo.add(MODEL_DIR)

    def seal_model_files(self, sealing: Sealing) -> dict[str, str]:
        """Seal each file of ``model/`` that is not sealed yet, in place, each under a fresh data key; the md5 of
        each sealed file (relative path → md5), computed as it was written."""
        model = self.root / MODEL_DIR
        sealed = {}
        with self.scratch() as scratch:
            for path in sorted(p for p in model.rglob("*") if p.is_file() and not p.is_symlink()):
                with path.open("rb") as plain:
                    if is_sealed(plain.read(len(MAGIC))):
                        continue
                relpath = path.relative_to(model).as_posix()
                sealed[relpath] = seal_file(path, scratch / "sealed", sealing)
                os.replace(scratch / "sealed", path)
        return sealed

    def worktree_weights_sha256(self) -> str:
        """The sha256 of the (plaintext) weights in the working tree's ``model/``, opened if they are sealed."""
        path = self.root / MODEL_DIR / WEIGHTS_FILE
        with path.open("rb") as file:
            if not is_sealed(file.read(len(MAGIC))):
                return _file_digest(path, "sha256")
        with SealedReader(path, self._key_for("HEAD") or no_key, "the checked-out weights") as weights:
            return weights.digest("sha256")

    def _key_for(self, commit: str) -> KeyFor | None:
        return self.keys(commit) if self.keys is not None else None

    @contextlib.contextmanager
    def freeing_checkout(self, scratch: Path) -> Iterator[None]:
        """Free the checked-out weights file on a second thread while the block computes what replaces it.

        Unlinking a 100 MB file took 20 to 45 ms on this project's machine (ext4 mounted with online ``discard``),
        which the ``os.replace`` that puts the new file in place would spend on the caller's thread. The file is
        moved into ``scratch`` (same file system) and unlinked there; the DVC cache keeps the committed object, so
        a failed block is rolled back by checking it out again (``Repository.transaction``)."""
        checked_out = scratch / "checked-out"
        try:
            os.rename(self.root / MODEL_DIR / WEIGHTS_FILE, checked_out)
        except FileNotFoundError:
            yield
            return
        freeing = threading.Thread(target=checked_out.unlink, name="free the checked-out weights")
        freeing.start()
        try:
            yield
        finally:
            freeing.join()

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """A scratch directory beside the DVC cache (the same file system, so results move into ``model/`` in
        place), removed afterwards."""
        parent = self.root / ".dvc" / "tmp"
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=parent, prefix="scratch-") as scratch:
            yield Path(scratch)

    def _require_safe_worktree(self) -> None:
        """Check HEAD's tree and the working tree's ``model.dvc`` (what DVC will act on) before DVC runs."""
        head = self.git.resolve("HEAD")
        self.require_safe(head)
        path = self.root / MODEL_DVC_FILE
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            raise WeightsError(f"the working tree has no readable {MODEL_DVC_FILE} (or it is a link)",
                               f"restore it with `git checkout -- {MODEL_DVC_FILE}`") from None
        with os.fdopen(fd, "rb") as stream:
            raw = stream.read(1 << 20)
        if raw != self.git.show_file(head, MODEL_DVC_FILE):
            self._manifest_of(parse_dvc_file(raw, head), head)

    def checkout(self) -> None:
        """Make ``model/`` match ``model.dvc``, fetching from the remote when the cache lacks an object. The
        checked-out commit is validated first (:meth:`require_safe`); an unsafe one raises before DVC runs."""
        from dvc.exceptions import CheckoutError

        self._require_safe_worktree()
        with self._repo() as repo:
            try:
                repo.checkout(force=True)
                return
            except CheckoutError:
                pass
        self._dvc_pull()

    def push(self, revs: list[str]) -> None:
        """Upload the weights objects of ``revs`` to the remote (each revision validated first: DVC reads the
        objects a manifest names from the cache)."""
        if not revs or self.storage_url() is None:
            return
        for rev in revs:
            self.require_safe(self.git.resolve(rev))
        with self._repo() as repo:
            try:
                repo.push(revs=revs, workspace=False)
            except Exception as exc:
                raise _remote_error("upload weights", exc) from None

    def fetch(self, revs: list[str]) -> None:
        """Download the weights objects of ``revs`` into the local cache (each revision validated first)."""
        if self.storage_url() is None:
            return
        for rev in revs:
            self.require_safe(self.git.resolve(rev))
        with self._repo() as repo:
            try:
                repo.fetch(revs=revs, workspace=False)
            except Exception as exc:
                raise _remote_error("download weights", exc) from None

    def pull(self) -> None:
        """Fetch the checked-out commit's weights and check them out into ``model/``, after validating it
        (:meth:`require_safe`)."""
        self._require_safe_worktree()
        self._dvc_pull()

    def _dvc_pull(self) -> None:
        with self._repo() as repo:
            try:
                repo.pull(force=True)
            except Exception as exc:
                raise _remote_error("download weights", exc) from None

    def _object_path(self, md5: str) -> Path:
        # md5 has passed layout.is_md5 (32 hex digits, optionally ".dir"): never a path from a manifest
        return self.root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]

    def manifest(self, commit: str) -> dict[str, str]:
        """The validated manifest of ``model/`` at ``commit`` (relpath → md5), its ``.dir`` object fetched from
        the local cache or DVC storage without checking anything out. Any fault is a :class:`WeightsError`
        naming the commit (see :mod:`federity.repo.layout`)."""
        if commit in self._manifests:
            return dict(self._manifests[commit])
        raw = self.git.show_file(commit, MODEL_DVC_FILE)
        if raw is None:
            raise WeightsError(
                f"commit {commit[:12]} has no {MODEL_DVC_FILE}", "this commit does not track weights with DVC"
            )
        manifest = self._manifest_of(parse_dvc_file(raw, commit), commit)
        if is_commit_id(commit):  # a commit id names one tree forever: its manifest is read once
            self._manifests[commit] = dict(manifest)
        return manifest

    def _manifest_of(self, out: DvcOut, commit: str) -> dict[str, str]:
        raw = self._fetched_object(commit, out.dir_md5, f"manifest of {MODEL_DIR}/", MANIFEST_MAX_BYTES)
        return parse_manifest(raw, commit)

    def require_safe(self, commit: str) -> None:
        """Raise :class:`UnsafeCommitError` unless ``commit``'s tracked tree and DVC manifest are what a Federity
        repository holds (:func:`tree_problems`, :func:`storage_problems`). Call it before git or DVC writes the
        working tree from ``commit``."""
        problems = tree_problems(self.git, commit)
        if problems:
            raise UnsafeCommitError(
                f"commit {commit[:12]} is not a Federity repository's tree: {listed(problems)}",
                "nothing was checked out; do not use this commit (check out another revision, or ask its author "
                "for one made with Federity)",
            )
        self.manifest(commit)

    def read(self, commit: str, relpath: str = WEIGHTS_FILE) -> bytes:
        """The bytes of ``model/<relpath>`` (default: the weights) as committed at ``commit``, integrity-checked.

        The manifest is validated first (:meth:`manifest`); objects absent from the local cache are fetched from
        the DVC storage one by one; an object whose content does not match its DVC md5 is reported as corrupted.
        Every failure is a :class:`WeightsError`.
        """
        md5, what = self._entry(commit, relpath)
        data = self._fetched_object(commit, md5, what, OBJECT_MAX_BYTES)
        if not is_sealed(data[:len(MAGIC)]):
            return data
        with SealedReader(self._object_path(md5), self._key_for(commit) or no_key,
                          f"the {what} of commit {commit[:12]}") as reader:
            return reader.read(0, reader.size)

    def _entry(self, commit: str, relpath: str) -> tuple[str, str]:
        """The DVC md5 of ``model/<relpath>`` at ``commit`` (from its validated manifest), and what to call it."""
        entries = self.manifest(commit)
        if relpath not in entries:
            raise WeightsError(f"commit {commit[:12]}: model/ holds no {relpath}",
                               "commit weights with `federity commit`" if relpath == WEIGHTS_FILE
                               else "this commit does not carry that file")
        return entries[relpath], "weights" if relpath == WEIGHTS_FILE else f"model/{relpath}"

    def open(self, commit: str, relpath: str = WEIGHTS_FILE) -> TensorFile:
        """``model/<relpath>`` (default: the weights) of ``commit`` as a :class:`TensorFile` over the local DVC cache
        (fetched there first when absent), after the same checks as :meth:`read`, without reading it into memory.

        An object's md5 is checked when it is first opened, and that check is remembered with the object's
        :meth:`facts`, keyed by the cache file's size, modification time and inode (as git's index and DVC's state
        trust an unchanged file): opening it again costs no pass over it while the file is unchanged."""
        path, _, what = self._checked_object(commit, relpath)
        return TensorFile(path, f"the {what} of commit {commit[:12]}", self._key_for(commit))

    def object_header(self, commit: str, relpath: str = WEIGHTS_FILE) -> ObjectHeader | None:
        """The header of ``model/<relpath>`` of ``commit`` when it is a sealed object (``None`` when it is not),
        after the same checks as :meth:`read`; no key is needed."""
        path, _, what = self._checked_object(commit, relpath)
        with path.open("rb", buffering=0) as file:
            prefix = file.read(header_bound())
        if not is_sealed(prefix):
            return None
        try:
            return parse_header(prefix)
        except SealingError as exc:
            raise WeightsError(f"the {what} of commit {commit[:12]}: {exc.message}", exc.hint) from None

    def facts(self, commit: str, relpath: str = WEIGHTS_FILE) -> ObjectFacts:
        """What the checks need to know of a tensors file of ``commit``: its size, sha256, tensor layout and the
        floating-point tensors holding a NaN or an infinity. Computed in one streaming pass over the object (after
        its header is checked, :class:`TensorFile`) and remembered like the md5 check of :meth:`open`."""
        path, md5, what = self._checked_object(commit, relpath)
        key_for = self._key_for(commit)
        with TensorFile(path, f"the {what} of commit {commit[:12]}", key_for) as tensors:
            layout = tensors.layout
            size = tensors.size
            known = self._known(path, md5) or {}
            if {"sha256", "non_finite"} <= set(known):
                return ObjectFacts(size, known["sha256"], layout, tuple(known["non_finite"]))
            non_finite = tuple(sorted(name for name, (shape, dtype) in layout.items()
                                      if np.issubdtype(np.dtype(dtype), np.floating)
                                      and not _all_finite(tensors, name, int(np.prod(shape, dtype=np.int64)))))
            sha256 = tensors.digest("sha256")
        found = ObjectFacts(size, sha256, layout, non_finite)
        self._remember(path, md5, sha256=found.sha256, non_finite=list(non_finite))
        return found

    def _checked_object(self, commit: str, relpath: str) -> tuple[Path, str, str]:
        """The cache path of ``model/<relpath>`` at ``commit``, in the cache and md5-checked (once per file), with
        its md5 and what to call it."""
        md5, what = self._entry(commit, relpath)
        path = self._object_path(md5)
        if not path.is_file():
            self._fetched_object(commit, md5, what, OBJECT_MAX_BYTES)
        elif self._known(path, md5) is None:
            if path.stat().st_size > OBJECT_MAX_BYTES:
                raise WeightsError(f"the {what} object of commit {commit[:12]} is larger than {OBJECT_MAX_BYTES} "
                                   "bytes", "Federity refuses it unread; do not use this commit")
            if _file_digest(path, "md5") != md5:
                raise WeightsError(
                    f"the {what} object of commit {commit[:12]} is corrupted: its content no longer matches DVC "
                    f"hash {md5}", f"delete {path} and run `federity pull` to fetch an intact copy")
        self._remember(path, md5)
        return path, md5, what

    def _memo_file(self) -> Path:
        return self.root / ".dvc" / "tmp" / "federity-checked.json"

    def _memo(self) -> dict[str, Any]:
        try:
            known = json.loads(self._memo_file().read_text())
        except (OSError, ValueError):
            return {}
        return known if isinstance(known, dict) else {}

    def _known(self, path: Path, md5: str, memo: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """What was checked of object ``md5`` (in ``memo``, default: the file's), if its cache file ``path`` is
        unchanged since."""
        entry = (self._memo() if memo is None else memo).get(md5)
        return entry if isinstance(entry, dict) and entry.get("stat") == _stat_key(path) else None

    def _remember(self, path: Path, md5: str, **facts: Any) -> None:
        known = self._memo()
        entry = self._known(path, md5, known) or {}
        if entry and all(entry.get(k) == v for k, v in facts.items()):
            return
        known[md5] = {**entry, **facts, "stat": _stat_key(path)}
        memo = self._memo_file()
        memo.parent.mkdir(parents=True, exist_ok=True)
        scratch = memo.with_suffix(f".{os.getpid()}")
        scratch.write_text(json.dumps(known))
        scratch.replace(memo)

    def files(self, commit: str) -> list[str]:
        """The paths (relative to ``model/``) that ``commit`` tracks, from its validated manifest."""
        return sorted(self.manifest(commit))

    def _fetched_object(self, commit: str, md5: str, what: str, limit: int) -> bytes:
        """The object ``md5`` (already validated), from the cache or else the DVC storage, md5-checked."""
        path = self._object_path(md5)
        if path.is_file():
            data = _bounded_read(path.open("rb"), path.stat().st_size, limit, commit, what)
            if _md5(data) != md5.removesuffix(".dir"):
                raise WeightsError(
                    f"the {what} object of commit {commit[:12]} is corrupted: its content no longer matches DVC "
                    f"hash {md5}",
                    f"delete {path} and run `federity pull` to fetch an intact copy",
                )
            return data
        data = self._download(commit, md5, what, limit)
        if data is None:
            raise WeightsObjectMissing(
                f"the {what} of commit {commit[:12]} (DVC object {md5}) cannot be found in the local cache or "
                "the DVC storage",
                "run `federity pull` on a clone that has them, or ask the author to `federity push`",
            )
        return data

    def _download(self, commit: str, md5: str, what: str, limit: int) -> bytes | None:
        """Fetch one object from the default DVC remote into the local cache; ``None`` when there is no remote
        or it lacks the object."""
        with self._repo() as repo:
            if not repo.config["core"].get("remote"):
                return None
            try:
                odb = repo.cloud.get_remote_odb(command="fetch")
                remote_path = odb.oid_to_path(md5)
                if not odb.fs.exists(remote_path):
                    return None
                with odb.fs.open(remote_path, "rb") as stream:
                    data = _bounded_read(stream, odb.fs.size(remote_path), limit, commit, what)
            except WeightsError:
                raise
            except Exception as exc:
                raise _remote_error("download weights", exc) from None
            if _md5(data) != md5.removesuffix(".dir"):
                raise WeightsError(
                    f"the DVC storage's copy of the {what} of commit {commit[:12]} (object {md5}) is corrupted: "
                    "its content does not match its hash",
                    "ask the commit's author to `federity push` it again; nothing was written",
                )
            repo.cache.local.add_bytes(md5, data)
            return data


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of the file at ``path``, read in blocks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    buffer = bytearray(4 << 20)
    with open(path, "rb", buffering=0) as file:
        while count := file.readinto(buffer):
            digest.update(memoryview(buffer)[:count])
    return digest.hexdigest()


def _all_finite(tensors: TensorFile, name: str, size: int) -> bool:
    """Whether tensor ``name`` (of ``size`` elements) holds no NaN or infinity, read block by block."""
    return all(np.isfinite(tensors.read(name, start, min(start + _FINITE_BLOCK, size))).all()
               for start in range(0, size, _FINITE_BLOCK))


_FINITE_BLOCK = 1 << 20


def _stat_key(path: Path) -> list[int]:
    """What identifies an unchanged file: size, modification time (ns), inode."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _bounded_read(stream: BinaryIO, size: int | None, limit: int, commit: str, what: str) -> bytes:
    """All of ``stream``, refused before reading when ``size`` (or what arrives) exceeds ``limit``."""
    too_large = WeightsError(f"the {what} object of commit {commit[:12]} is larger than {limit} bytes",
                             "Federity refuses it unread; do not use this commit")
    with stream:
        if size is not None and size > limit:
            raise too_large
        chunks, total = [], 0
        while chunk := stream.read(1 << 20):
            total += len(chunk)
            if total > limit:
                raise too_large
            chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class Tree:
    """A commit's tracked tree, as ``git ls-tree -r -t`` lists it: ``(path, mode, type, object id)`` for every
    entry, subtrees included, in git's order (a hostile tree may list a path twice: both are kept), and apart, the
    paths of files that are not UTF-8 (never decoded loosely)."""

    entries: tuple[tuple[str, str, str, str], ...]
    undecodable: tuple[bytes, ...] = ()

    @classmethod
    def read(cls, git: Git, commit: str) -> Tree:
        """``commit``'s tree, in one git call."""
        listing = git.run_bytes("ls-tree", "-r", "-t", "-z", "--full-tree", "--end-of-options", f"{commit}^{{tree}}")
        entries, undecodable = [], []
        for item in listing.split(b"\0"):
            if not item:
                continue
            header, _, raw_path = item.partition(b"\t")
            mode, kind, oid = header.decode().split(" ", 2)
            try:
                entries.append((raw_path.decode("utf-8"), mode, kind, oid))
            except UnicodeDecodeError:
                if kind != "tree":  # a directory's name is reported with each file under it
                    undecodable.append(raw_path)
        return cls(tuple(entries), tuple(undecodable))

    def object_id(self, path: str) -> str | None:
        """The id of the object (file or subtree) at ``path``, or ``None`` when there is none."""
        return next((oid for entry_path, _, _, oid in self.entries if entry_path == path), None)

    def files(self) -> list[tuple[str, str, str, str]]:
        """The entries that are not subtrees."""
        return [entry for entry in self.entries if entry[2] != "tree"]

    def changed_files(self, other: Tree) -> set[str]:
        """The paths whose file (content, mode or type) differs between this tree and ``other``, or that only one
        of them holds (what ``git diff-tree -r --name-only`` lists)."""
        return {entry[0] for entry in set(self.files()) ^ set(other.files())}


def tree_problems(git: Git, commit: str, tree: Tree | None = None) -> list[str]:
    """Why ``commit``'s tracked files are not what a Federity repository holds (empty when they are): symlinks,
    gitlinks, files git tracks under ``model/`` or ``.git``-like paths, DVC files other than ``model.dvc``, a
    ``.dvc/config`` that sets more than the storage, a ``.gitattributes`` that rewrites files on checkout
    (:mod:`federity.repo.layout`). Reads git objects only; ``tree``: ``commit``'s, when the caller has read it."""
    tree = tree or Tree.read(git, commit)
    files = tree.files()
    problems = [f"a tracked path is not UTF-8 ({raw_path[:40]!r})" for raw_path in tree.undecodable]
    problems += tree_entry_problems([(mode, kind, path) for path, mode, kind, _ in files])
    for path, _, kind, oid in files:
        if kind != "blob":
            continue
        if path == ".dvc/config":
            problems += _blob_problems(git, oid, path, lambda _, raw: dvc_config_problems(raw))
        elif path.rsplit("/", 1)[-1] == ".gitattributes":
            problems += _blob_problems(git, oid, path, gitattributes_problems)
    return problems


_BLOB_PROBLEMS: dict[tuple[str, str], list[str]] = {}
"""(path, blob id) → what :func:`tree_problems` found in that file: a blob id names its content, so each file is
read and judged once however many commits track it (a round's updates all share the base's ``.dvc/config``)."""


def _blob_problems(git: Git, oid: str, path: str, judge: Callable[[str, bytes], list[str]]) -> list[str]:
    if (path, oid) not in _BLOB_PROBLEMS:
        if len(_BLOB_PROBLEMS) > 4096:
            _BLOB_PROBLEMS.clear()
        try:
            raw = git.run_bytes("cat-file", "blob", oid)
        except GitError:  # judged as an empty file, as when it cannot be shown; not remembered
            return judge(path, b"")
        _BLOB_PROBLEMS[path, oid] = judge(path, raw)
    return list(_BLOB_PROBLEMS[path, oid])


def storage_problems(store: WeightsStore, commit: str) -> list[str]:
    """Why ``commit``'s DVC manifest of ``model/`` may not be checked out or read (empty when it may): see
    :meth:`WeightsStore.manifest`. Fetches the manifest object when the cache lacks it; checks no weights."""
    try:
        store.manifest(commit)
    except WeightsError as exc:
        return [exc.message]
    return []
