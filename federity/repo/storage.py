"""Weights storage through DVC: the ``model/`` directory is tracked by ``model.dvc``.

DVC runs in-process (``dvc.repo.Repo``). Its objects are content-addressed by md5; Federity additionally
records the sha256 of ``model/model.safetensors`` in each signed commit, and :meth:`WeightsStore.read` checks
both when it reads a commit's weights back.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from federity.errors import RemoteError, WeightsError
from federity.git import Git
from federity.weights import WEIGHTS_FILE

MODEL_DIR = "model"
MODEL_DVC_FILE = "model.dvc"
REMOTE_NAME = "storage"


class WeightsObjectMissing(WeightsError):
    """A commit's weights object is in neither the local cache nor the DVC remote."""


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


class WeightsStore:
    """The DVC side of one repository's working tree."""

    def __init__(self, root: Path, git: Git) -> None:
        self.root = Path(root)
        self.git = git

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

    def track(self) -> None:
        """Record the current ``model/`` in the DVC cache and ``model.dvc``."""
        with self._repo() as repo:
            repo.add(MODEL_DIR)

    def checkout(self) -> None:
        """Make ``model/`` match ``model.dvc``, fetching from the remote when the cache lacks an object."""
        from dvc.exceptions import CheckoutError

        with self._repo() as repo:
            try:
                repo.checkout(force=True)
                return
            except CheckoutError:
                pass
        self.pull()

    def push(self, revs: list[str]) -> None:
        """Upload the weights objects of ``revs`` to the remote."""
        if not revs or self.storage_url() is None:
            return
        with self._repo() as repo:
            try:
                repo.push(revs=revs, workspace=False)
            except Exception as exc:
                raise _remote_error("upload weights", exc) from None

    def fetch(self, revs: list[str]) -> None:
        """Download the weights objects of ``revs`` into the local cache."""
        if self.storage_url() is None:
            return
        with self._repo() as repo:
            try:
                repo.fetch(revs=revs, workspace=False)
            except Exception as exc:
                raise _remote_error("download weights", exc) from None

    def pull(self) -> None:
        """Fetch the checked-out commit's weights and check them out into ``model/``."""
        with self._repo() as repo:
            try:
                repo.pull(force=True)
            except Exception as exc:
                raise _remote_error("download weights", exc) from None

    def _object_path(self, md5: str) -> Path:
        return self.root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]

    def _cached_object(self, md5: str) -> bytes | None:
        path = self._object_path(md5)
        return path.read_bytes() if path.is_file() else None

    def read(self, commit: str, relpath: str = WEIGHTS_FILE) -> bytes:
        """The bytes of ``model/<relpath>`` (default: the weights) as committed at ``commit``, integrity-checked.

        Objects absent from the local cache are fetched from the remote; an object whose content does not
        match its DVC md5 is reported as corrupted.
        """
        what = "weights" if relpath == WEIGHTS_FILE else f"model/{relpath}"
        dir_md5 = self._dir_md5(commit)
        manifest_bytes = self._fetched_object(commit, dir_md5, what)
        entries = {e["relpath"]: e["md5"] for e in json.loads(manifest_bytes)}
        if relpath not in entries:
            raise WeightsError(f"commit {commit[:12]}: model/ holds no {relpath}",
                               "commit weights with `federity commit`" if relpath == WEIGHTS_FILE
                               else "this commit does not carry that file")
        md5 = entries[relpath]
        data = self._fetched_object(commit, md5, what)
        if hashlib.md5(data, usedforsecurity=False).hexdigest() != md5:
            raise WeightsError(
                f"the {what} object of commit {commit[:12]} is corrupted: its content no longer matches DVC "
                f"hash {md5}",
                f"delete {self._object_path(md5)} and run `federity pull` to fetch an intact copy",
            )
        return data

    def files(self, commit: str) -> list[str]:
        """The paths (relative to ``model/``) that ``commit`` tracks."""
        manifest = self._fetched_object(commit, self._dir_md5(commit), "weights")
        return sorted(e["relpath"] for e in json.loads(manifest))

    def _fetched_object(self, commit: str, md5: str, what: str) -> bytes:
        data = self._cached_object(md5)
        if data is None:
            self._fetch_quietly(commit)
            data = self._cached_object(md5)
        if data is None:
            raise WeightsObjectMissing(
                f"the {what} of commit {commit[:12]} (DVC object {md5}) cannot be found in the local cache or "
                "the DVC storage",
                "run `federity pull` on a clone that has them, or ask the author to `federity push`",
            )
        return data

    def _fetch_quietly(self, commit: str) -> None:
        with contextlib.suppress(RemoteError):
            self.fetch([commit])

    def _dir_md5(self, commit: str) -> str:
        raw = self.git.show_file(commit, MODEL_DVC_FILE)
        if raw is None:
            raise WeightsError(
                f"commit {commit[:12]} has no {MODEL_DVC_FILE}", "this commit does not track weights with DVC"
            )
        try:
            md5 = yaml.safe_load(raw)["outs"][0]["md5"]
        except (yaml.YAMLError, KeyError, IndexError, TypeError):
            raise WeightsError(
                f"commit {commit[:12]}: {MODEL_DVC_FILE} is not a DVC file", "restore it from an earlier commit"
            ) from None
        if not str(md5).endswith(".dir"):
            raise WeightsError(
                f"commit {commit[:12]}: {MODEL_DVC_FILE} does not track a directory", "track model/ with DVC"
            )
        return str(md5)
