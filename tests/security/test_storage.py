"""Storage under Federity's control: a hostile DVC manifest, tracked tree or remote gets nothing written.

Each attack is built as the attacker would: real git plumbing and objects put into the DVC cache and the storage
directory (``remote.storage`` beside the bare remote) under their correct md5, pushed with plain ``git push`` (so
no Federity check on the attacker's side helps). Every test asserts the refusal and its message, that the
victim's repository, remote and working tree are unchanged, and that nothing outside the repository was written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federity.errors import FederityError, RemoteError, UpdateError, WeightsError, WorkingTreeError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.commits import create_commit
from federity.repo.layout import (
    MANIFEST_MAX_BYTES,
    allowed_model_file,
    dvc_config_problems,
    parse_dvc_file,
    parse_manifest,
    tree_entry_problems,
)
from federity.repo.paths import write_inside
from federity.repo.storage import Tree, UnsafeCommitError, storage_problems, tree_problems
from federity.weights import read_tensors, tensors_to_bytes
from tests.conftest import git, snapshot, track_sealed, write_csv
from tests.e2e.test_s3_remote import s3_endpoint, s3_server  # noqa: F401  (fixtures)

# ---------------------------------------------------------------- the attacker's tools


def _dvc_dirs(repo: Repository) -> list[Path]:
    storage = repo.root.parent / "remote.storage"
    return [repo.root / ".dvc" / "cache" / "files" / "md5", storage / "files" / "md5"]


def put_object(repo: Repository, data: bytes, suffix: str = "") -> str:
    """Store ``data`` in ``repo``'s DVC cache and in the storage beside the remote, under its md5."""
    md5 = hashlib.md5(data).hexdigest()
    for base in _dvc_dirs(repo):
        path = base / md5[:2] / (md5[2:] + suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.chmod(0o644)
        path.write_bytes(data)
    return md5


def current_manifest(repo: Repository) -> list[dict[str, str]]:
    md5 = yaml.safe_load((repo.root / "model.dvc").read_text())["outs"][0]["md5"]
    return json.loads((_dvc_dirs(repo)[0] / md5[:2] / md5[2:]).read_bytes())


def point_model_dvc(repo: Repository, manifest: bytes, **out_fields: object) -> str:
    """Make the working tree's model.dvc name a ``.dir`` object holding ``manifest`` (bytes as given)."""
    md5 = put_object(repo, manifest, ".dir")
    dvc = yaml.safe_load((repo.root / "model.dvc").read_text())
    dvc["outs"][0].update({"md5": f"{md5}.dir", **out_fields})
    (repo.root / "model.dvc").write_text(yaml.safe_dump(dvc))
    return md5


def manifest_with(repo: Repository, relpath: str, payload: bytes) -> bytes:
    """The current manifest plus an entry ``relpath`` whose object (stored) holds ``payload``."""
    entries = [*current_manifest(repo), {"md5": put_object(repo, payload), "relpath": relpath}]
    return json.dumps(entries, sort_keys=True).encode()


def raw_push(repo: Repository, branch: str) -> None:
    git(repo.root, "push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}")


def commit_tree(repo: Repository, *entries: str, message: str = "hostile") -> str:
    """A commit of HEAD's tree plus ``entries`` (``mktree`` lines ``MODE TYPE SHA\\tPATH`` at the root)."""
    listing = git(repo.root, "ls-tree", "HEAD").splitlines()
    names = {line.split("\t", 1)[1] for line in entries}
    lines = [line for line in listing if line.split("\t", 1)[1] not in names] + list(entries)
    tree = git_input(repo.root, "\n".join(lines) + "\n", "mktree")
    return git_input(repo.root, message + "\n", "commit-tree", tree, "-p", "HEAD")


def git_input(cwd: Path, text: str, *args: str) -> str:
    identity = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
                for what, value in (("NAME", "attacker"), ("EMAIL", "attacker@example.org"))}
    return subprocess.run(["git", *args], cwd=cwd, input=text, capture_output=True, text=True, check=True,
                          env={**os.environ, **identity}).stdout.strip()


def blob(repo: Repository, data: bytes) -> str:
    path = repo.root.parent / "blob.tmp"
    path.write_bytes(data)
    return git(repo.root, "hash-object", "-w", str(path))


# ---------------------------------------------------------------- the victim's observations


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A file outside every repository that no attack may touch."""
    path = tmp_path / "outside" / "canary.txt"
    path.parent.mkdir()
    path.write_text("the victim's file\n")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    return path


def untouched(path: Path) -> bool:
    return path.read_text() == "the victim's file\n" and path.stat().st_mtime == 1_000_000_000


def local_state(repo: Repository) -> dict[str, str]:
    """Everything a refused operation must leave as it was, except what ``git fetch`` records of the remote."""
    state = snapshot(repo)
    state["refs"] = "\n".join(line for line in state["refs"].splitlines() if " " in line and
                              not line.startswith("refs/remotes/"))
    state["git_config"] = (repo.root / ".git" / "config").read_text()
    state["model"] = repr(sorted((p.relative_to(repo.root).as_posix(), p.read_bytes())
                                 for p in (repo.root / "model").rglob("*") if p.is_file()))
    return state


def fsmonitor_config(pwned: Path) -> bytes:
    return f"[core]\n\trepositoryformatversion = 0\n\tfsmonitor = touch {pwned}\n".encode()


@pytest.fixture
def member_clone(tmp_path: Path, repo: Repository, owner: Wallet, contributor: Wallet) -> Repository:
    """A contributor's clone of the owner's repository."""
    repo.add_member(owner, contributor.pubkey, "contributor")
    repo.push()
    return Repository.clone(str(tmp_path / "remote.git"), tmp_path / "site", wallet=contributor)


def hostile_update(site: Repository, contributor: Wallet, relpath: str, payload: bytes) -> str:
    """A validly signed update on ``updates/r1/…`` with new weights whose manifest also names ``relpath`` (its
    object holding ``payload``), stored under their md5s and pushed with plain git."""
    main = site.head()
    branch = f"updates/r1/{contributor.pubkey[:8]}"
    git(site.root, "checkout", "--quiet", "-b", branch)
    tensors = read_tensors(site.store.read(site.head()), "weights")
    weights = tensors_to_bytes({k: v + np.asarray(0.25, v.dtype) for k, v in tensors.items()})
    site.weights_path.chmod(0o644)
    site.weights_path.unlink()
    site.weights_path.write_bytes(weights)  # what create_commit signs
    entries = [{"md5": put_object(site, weights), "relpath": "model.safetensors"},
               {"md5": put_object(site, payload), "relpath": relpath}]
    point_model_dvc(site, json.dumps(entries, sort_keys=True).encode())
    (site.root / "update.json").write_text(json.dumps({
        "schema": "federity/update/v1", "base": main, "round": 1, "nonce": None, "n_samples": 50,
        "metrics": {"loss": 0.5, "accuracy": 0.8}, "params": {}, "contract": {"passed": True}, "proof": None}))
    record = create_commit(site, contributor, "update", "Update for round 1", [main], round=1,
                           paths=("model.dvc", "update.json"))
    raw_push(site, branch)
    return record.commit


# ---------------------------------------------------------------- path traversal through the manifest

TRAVERSALS = ["../.git/config", "../../outside/canary.txt", "proof/../../../outside/canary.txt", "proof/./chain.json",
              "proof//step-1.json", "proof\\..\\..\\x", "notes.txt", "proof/step-01.json", "../federity.yaml"]


@pytest.mark.parametrize("relpath", TRAVERSALS)
def test_clone_refuses_a_manifest_entry_outside_the_allow_list(repo: Repository, owner: Wallet, tmp_path: Path,
                                                               canary: Path, relpath: str) -> None:
    pwned = tmp_path / "pwned"
    payload = fsmonitor_config(pwned) if relpath.endswith("config") else b"overwritten\n"
    point_model_dvc(repo, manifest_with(repo, relpath, payload))
    create_commit(repo, owner, "weights", "hostile manifest", [repo.head()], paths=("model.dvc",))
    raw_push(repo, "main")
    remote = tmp_path / "remote.git"
    remote_refs = git(remote, "for-each-ref")

    with pytest.raises(WeightsError, match=r"names the path .* which (climbs out|is not a file Federity stores|"
                                           r"has an empty part|holds a backslash)"):
        Repository.clone(str(remote), tmp_path / "victim")
    assert not (tmp_path / "victim").exists()
    assert not pwned.exists() and untouched(canary)
    assert git(remote, "for-each-ref") == remote_refs


def test_clone_refuses_an_absolute_manifest_entry(repo: Repository, owner: Wallet, tmp_path: Path,
                                                  canary: Path) -> None:
    point_model_dvc(repo, manifest_with(repo, str(canary), b"overwritten\n"))
    create_commit(repo, owner, "weights", "hostile manifest", [repo.head()], paths=("model.dvc",))
    raw_push(repo, "main")
    with pytest.raises(WeightsError, match=r"names the path .* which is absolute"):
        Repository.clone(str(tmp_path / "remote.git"), tmp_path / "victim")
    assert not (tmp_path / "victim").exists() and untouched(canary)


def test_owner_checking_out_a_contributors_update_with_a_git_config_entry_is_refused(
        repo: Repository, member_clone: Repository, contributor: Wallet, tmp_path: Path, canary: Path) -> None:
    pwned = tmp_path / "pwned"
    update = hostile_update(member_clone, contributor, "../.git/config", fsmonitor_config(pwned))
    repo.pull()
    before = local_state(repo)
    remote_refs = git(tmp_path / "remote.git", "for-each-ref")

    with pytest.raises(WeightsError, match=rf"commit {update[:12]}: .*'\.\./\.git/config'.* climbs out"):
        repo.checkout(f"updates/r1/{contributor.pubkey[:8]}")
    with pytest.raises(WeightsError, match="climbs out"):
        repo.checkout(update)
    git(repo.root, "status")  # would run core.fsmonitor had .git/config been overwritten
    assert local_state(repo) == before
    assert not pwned.exists() and untouched(canary)
    assert git(tmp_path / "remote.git", "for-each-ref") == remote_refs


def test_checking_and_reviewing_an_update_with_a_hostile_manifest_rejects_it_cleanly(
        repo: Repository, owner: Wallet, member_clone: Repository, contributor: Wallet, tmp_path: Path,
        canary: Path) -> None:
    pwned = tmp_path / "pwned"
    update = hostile_update(member_clone, contributor, "../.git/config", fsmonitor_config(pwned))
    repo.pull()
    before = local_state(repo)

    [checked] = repo.check_updates(owner)
    assert checked.id == update and checked.status == "rejected"
    assert "'../.git/config'" in checked.reason and "climbs out" in checked.reason
    with pytest.raises(UpdateError, match=r"fails its checks .*'\.\./\.git/config'.* climbs out"):
        repo.review(owner, update[:10], approve=True)
    assert {u.id: u.status for u in repo.updates()} == {update: "rejected"}
    assert storage_problems(repo.store, update) and not tree_problems(repo.git, update)
    state = local_state(repo)
    notes = "refs/notes/federity-reviews"
    assert {k: v for k, v in state.items() if k != "refs"} == {k: v for k, v in before.items() if k != "refs"}
    assert [r for r in state["refs"].splitlines() if not r.startswith(notes)] == before["refs"].splitlines()
    assert not pwned.exists() and untouched(canary)


def test_pulling_a_main_with_a_hostile_manifest_is_refused_and_nothing_moves(
        repo: Repository, owner: Wallet, member_clone: Repository, tmp_path: Path, canary: Path) -> None:
    pwned = tmp_path / "pwned"
    point_model_dvc(repo, manifest_with(repo, "../.git/config", fsmonitor_config(pwned)))
    bad = create_commit(repo, owner, "weights", "hostile manifest", [repo.head()], paths=("model.dvc",)).commit
    raw_push(repo, "main")
    before = local_state(member_clone)
    with pytest.raises(WeightsError, match=rf"commit {bad[:12]}: .*'\.\./\.git/config'.* climbs out"):
        member_clone.pull()
    git(member_clone.root, "status")
    assert local_state(member_clone) == before
    assert not pwned.exists() and untouched(canary)


@pytest.mark.e2e
def test_a_hostile_manifest_in_s3_storage_is_refused_at_clone(tmp_path: Path, owner: Wallet, canary: Path,
                                                              request: pytest.FixtureRequest) -> None:
    import boto3

    endpoint = request.getfixturevalue("s3_endpoint")  # moto's S3 server on localhost (tests/e2e)
    repo, _ = Repository.init(tmp_path / "repo", owner, name="s3", framework="torch", model="logistic-regression",
                              model_args=["in_features=4"], remote=str(tmp_path / "remote.git"),
                              storage="s3://models/weights", storage_endpoint=endpoint)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    cache = repo.root / ".dvc" / "cache" / "files" / "md5"
    entries = [*current_manifest(repo), {"md5": hashlib.md5(b"overwritten").hexdigest(),
                                         "relpath": "../../outside/canary.txt"}]
    manifest = json.dumps(entries, sort_keys=True).encode()
    md5 = hashlib.md5(manifest).hexdigest()
    for key, data in ((f"{md5[:2]}/{md5[2:]}.dir", manifest), (f"{entries[-1]['md5'][:2]}/{entries[-1]['md5'][2:]}",
                                                               b"overwritten")):
        s3.put_object(Bucket="models", Key=f"weights/files/md5/{key}", Body=data)
    dvc = yaml.safe_load((repo.root / "model.dvc").read_text())
    dvc["outs"][0]["md5"] = f"{md5}.dir"
    (repo.root / "model.dvc").write_text(yaml.safe_dump(dvc))
    create_commit(repo, owner, "weights", "hostile manifest", [repo.head()], paths=("model.dvc",))
    raw_push(repo, "main")
    assert not (cache / md5[:2] / f"{md5[2:]}.dir").exists()  # the victim's clone must fetch it from S3
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"])

    with pytest.raises(WeightsError, match=r"names the path '\.\./\.\./outside/canary\.txt', which climbs out"):
        Repository.clone(str(tmp_path / "remote.git"), tmp_path / "victim")
    assert not (tmp_path / "victim").exists() and untouched(canary)
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]) == keys


# ---------------------------------------------------------------- a manifest md5 that names a path

@pytest.mark.parametrize("make_md5", [
    lambda canary: f"xx/{canary}", lambda canary: f"xx/{canary}.missing", lambda canary: "../../../../etc/passwd",
    lambda canary: "ABCDEF0123456789ABCDEF0123456789", lambda canary: "0" * 31, lambda canary: 12345,
], ids=["existing-file", "missing-file", "traversal", "uppercase", "short", "not-a-string"])
def test_a_manifest_md5_that_is_not_hex_is_refused_without_touching_the_path(
        repo: Repository, owner: Wallet, canary: Path, make_md5) -> None:
    entries = [{"md5": make_md5(canary), "relpath": "model.safetensors"}]
    point_model_dvc(repo, json.dumps(entries).encode())
    bad = create_commit(repo, owner, "weights", "probe", [repo.head()], paths=("model.dvc",)).commit
    git(repo.root, "checkout", "--quiet", "--force", "HEAD~1")
    before = local_state(repo)

    message = (f"commit {bad[:12]}: the manifest of model/ gives model.safetensors an md5 that is not 32 "
               "lowercase hex digits; Federity refuses to check out or read its weights")
    with pytest.raises(WeightsError) as caught:
        repo.store.read(bad)
    assert caught.value.message == message  # the same words whether the named file exists or not: no oracle
    assert "corrupted" not in str(caught.value) and "cannot be found" not in str(caught.value)
    assert storage_problems(repo.store, bad) == [message]
    with pytest.raises(WeightsError, match="not 32 lowercase hex"):
        repo.checkout(bad)
    assert local_state(repo) == before and untouched(canary)


@pytest.mark.parametrize("dir_md5", ["../../../outside/canary.txt.dir", "/etc/passwd.dir", "0" * 32,
                                     "ABCDEF0123456789ABCDEF0123456789.dir"])
def test_a_model_dvc_whose_manifest_md5_names_a_path_is_refused(repo: Repository, owner: Wallet, canary: Path,
                                                                dir_md5: str) -> None:
    dvc = yaml.safe_load((repo.root / "model.dvc").read_text())
    dvc["outs"][0]["md5"] = dir_md5
    (repo.root / "model.dvc").write_text(yaml.safe_dump(dvc))
    bad = create_commit(repo, owner, "weights", "probe", [repo.head()], paths=("model.dvc",)).commit
    git(repo.root, "checkout", "--quiet", "--force", "HEAD~1")
    before = local_state(repo)
    with pytest.raises(WeightsError, match=rf"commit {bad[:12]}: model.dvc does not name a directory object"):
        repo.store.read(bad)
    with pytest.raises(WeightsError, match="does not name a directory object"):
        repo.checkout(bad)
    assert local_state(repo) == before and untouched(canary)


@pytest.mark.parametrize(("extra", "match"), [
    ({"wdir": ".."}, "exactly one key, outs"),
    ({"outs": [{"path": "../outside", "hash": "md5", "md5": "0" * 32 + ".dir"}]}, "tracks '../outside'"),
    ({"outs": [{"path": "model", "hash": "md5", "md5": "0" * 32 + ".dir", "remote": "evil"}]},
     "sets remote, which Federity never writes"),
])
def test_a_model_dvc_that_moves_or_redirects_the_output_is_refused(repo: Repository, owner: Wallet,
                                                                   extra: dict, match: str) -> None:
    dvc = {**yaml.safe_load((repo.root / "model.dvc").read_text()), **extra}
    (repo.root / "model.dvc").write_text(yaml.safe_dump(dvc))
    bad = create_commit(repo, owner, "weights", "redirect", [repo.head()], paths=("model.dvc",)).commit
    git(repo.root, "checkout", "--quiet", "--force", "HEAD~1")
    before = local_state(repo)
    with pytest.raises(WeightsError, match=match):
        repo.checkout(bad)
    assert local_state(repo) == before


# ---------------------------------------------------------------- malformed manifests

@pytest.mark.parametrize(("manifest", "match"), [
    (b"\xff\xfe\x00 not utf-8", "is not JSON"),
    (b"{ not json", "is not JSON"),
    (b'{"relpath": "model.safetensors"}', "is not a list of files"),
    (b"[1, 2, 3]", "holds an entry that is not a file record"),
    (b'[["model.safetensors", "00"]]', "holds an entry that is not a file record"),
    (b'[{"relpath": 5, "md5": "' + b"0" * 32 + b'"}]', "names the path 5, which is not a path"),
    (b'[{"relpath": "model.safetensors", "md5": "' + b"0" * 32 + b'", "version_id": "x"}]', "fields DVC never"),
    (json.dumps([{"relpath": "model.safetensors", "md5": "0" * 32}] * 2).encode(), "lists model.safetensors twice"),
    (b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]", "is not JSON"),
], ids=["non-utf8", "non-json", "object", "numbers", "lists", "relpath-int", "unknown-field", "duplicate",
        "deep-nesting"])
def test_a_malformed_manifest_is_a_weights_error_naming_the_commit(repo: Repository, owner: Wallet,
                                                                   manifest: bytes, match: str) -> None:
    point_model_dvc(repo, manifest)
    bad = create_commit(repo, owner, "weights", "malformed", [repo.head()], paths=("model.dvc",)).commit
    git(repo.root, "checkout", "--quiet", "--force", "HEAD~1")
    before = local_state(repo)
    for read in (lambda: repo.store.read(bad), lambda: repo.store.files(bad), lambda: repo.checkout(bad)):
        with pytest.raises(WeightsError, match=rf"commit {bad[:12]}: .*{match}"):
            read()
    assert storage_problems(repo.store, bad)
    repo.verify()  # reports, never raises
    assert local_state(repo) == before


def test_a_huge_manifest_is_refused_before_it_is_read(repo: Repository, owner: Wallet, tmp_path: Path) -> None:
    entry = {"md5": "0" * 32, "relpath": "model.safetensors"}
    huge = json.dumps([entry] * (MANIFEST_MAX_BYTES // 40)).encode()
    assert len(huge) > MANIFEST_MAX_BYTES
    point_model_dvc(repo, huge)
    bad = create_commit(repo, owner, "weights", "huge", [repo.head()], paths=("model.dvc",)).commit
    git(repo.root, "checkout", "--quiet", "--force", "HEAD~1")
    before = local_state(repo)
    with pytest.raises(WeightsError, match=rf"the manifest of model/ object of commit {bad[:12]} is larger than "
                                           f"{MANIFEST_MAX_BYTES} bytes"):
        repo.store.read(bad)
    # the same from the DVC storage: a fresh clone has no cached copy
    shutil_rmtree(repo.root / ".dvc" / "cache")
    with pytest.raises(WeightsError, match=f"larger than {MANIFEST_MAX_BYTES} bytes"):
        repo.store.read(bad)
    assert not (repo.root / ".dvc" / "cache" / "files" / "md5" / hashlib.md5(huge).hexdigest()[:2]).exists()
    assert local_state(repo) == before


def shutil_rmtree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            p.chmod(0o644)
    shutil.rmtree(path)


def test_a_corrupted_manifest_in_the_storage_is_not_cached(repo: Repository, owner: Wallet) -> None:
    manifest = json.dumps(current_manifest(repo), sort_keys=True).encode() + b" "
    md5 = point_model_dvc(repo, manifest)
    bad = create_commit(repo, owner, "weights", "to corrupt", [repo.head()], paths=("model.dvc",)).commit
    cached, stored = (base / md5[:2] / f"{md5[2:]}.dir" for base in _dvc_dirs(repo))
    cached.unlink()
    stored.write_bytes(b"[]")
    with pytest.raises(WeightsError, match=rf"the DVC storage's copy of the manifest of model/ of commit {bad[:12]}"
                                           ".* is corrupted"):
        repo.store.read(bad)
    assert not cached.exists()


# ---------------------------------------------------------------- symlinks, gitlinks and other tracked files

def test_training_on_a_base_that_tracks_update_json_as_a_symlink_is_refused(
        repo: Repository, owner: Wallet, member_clone: Repository, contributor: Wallet, tmp_path: Path,
        canary: Path) -> None:
    os.symlink(canary, repo.root / "update.json")
    linked = create_commit(repo, owner, "weights", "a link", [repo.head()], paths=("update.json",)).commit
    raw_push(repo, "main")
    remote_refs = git(tmp_path / "remote.git", "for-each-ref")
    site = member_clone
    before = local_state(site)

    with pytest.raises(RemoteError, match=r"tree: 'update.json' is a symbolic link"):
        site.pull()
    assert local_state(site) == before
    with pytest.raises(UnsafeCommitError, match=r"'update.json' is a symbolic link"):
        site.train(contributor, write_csv(tmp_path / "data" / "train.csv", 60, seed=1), base=linked)
    assert local_state(site) == before and not (site.root / "update.json").exists()
    assert untouched(canary)
    assert git(tmp_path / "remote.git", "for-each-ref") == remote_refs
    with pytest.raises(RemoteError, match=r"tree: 'update.json' is a symbolic link"):
        Repository.clone(str(tmp_path / "remote.git"), tmp_path / "victim")
    assert not (tmp_path / "victim").exists()


def test_training_never_writes_through_an_untracked_link_in_the_working_tree(
        member_clone: Repository, contributor: Wallet, tmp_path: Path, canary: Path) -> None:
    site = member_clone
    os.symlink(canary, site.root / "update.json")  # planted beside a clean, safe checkout
    result = site.train(contributor, write_csv(tmp_path / "data" / "train.csv", 60, seed=1))
    assert untouched(canary)
    assert not (site.root / "update.json").is_symlink()
    assert json.loads(site.git.show_file(result.update, "update.json"))["n_samples"] == 60
    assert git(site.root, "ls-tree", result.update, "update.json").startswith("100644 ")


def test_writing_inside_the_repository_refuses_a_linked_directory(tmp_path: Path, canary: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(canary.parent, root / "model")
    with pytest.raises(WorkingTreeError, match="through a symbolic link"):
        write_inside(root, "model/canary.txt", b"overwritten")
    assert untouched(canary)


def test_a_gitlink_is_refused_at_clone_and_checkout(repo: Repository, owner: Wallet, tmp_path: Path,
                                                    canary: Path) -> None:
    git(repo.root, "update-index", "--add", "--cacheinfo", f"160000,{repo.head()},vendor")
    commit = create_commit(repo, owner, "weights", "a gitlink", [repo.head()]).commit  # validly signed
    git(repo.root, "push", "--quiet", "origin", f"{commit}:refs/heads/main")
    git(repo.root, "checkout", "--quiet", "--force", "HEAD~1")
    before = local_state(repo)
    assert tree_problems(repo.git, commit) == ["'vendor' is a git submodule (gitlink); Federity repositories hold "
                                               "none"]
    with pytest.raises(UnsafeCommitError, match=rf"commit {commit[:12]} .*'vendor' is a git submodule"):
        repo.checkout(commit)
    assert local_state(repo) == before
    with pytest.raises(RemoteError, match=rf"not cloned: {commit[:12]} tree: 'vendor' is a git submodule"):
        Repository.clone(str(tmp_path / "remote.git"), tmp_path / "victim")
    assert not (tmp_path / "victim").exists() and untouched(canary)


@pytest.mark.parametrize(("path", "content", "match"), [
    ("evil.dvc", b"outs:\n- path: ../outside\n", "'evil.dvc' is a DVC file"),
    ("sub/dvc.yaml", b"stages: {}\n", "'sub/dvc.yaml' is a DVC file"),
    ("model/extra.bin", b"x", "'model/extra.bin' is tracked by git, but model/ belongs to DVC"),
    (".dvc/config.local", b"[cache]\n", "'.dvc/config.local' is under .dvc/"),
    (".federity/mlflow.db", b"x", "under .federity/"),
    (".dvc/config", b"[core]\n    remote = storage\n[cache]\n    dir = /tmp/elsewhere\n", "a section 'cache'"),
    (".dvc/config", b"[core]\n    remote = storage\n    site_cache_dir = /tmp\n['remote \"storage\"']\n    url = /x\n",
     "sets 'core'.'site_cache_dir'"),
    (".dvc/config", b"['remote \"s\"']\n    url = s3://b\n    credentialpath = /home/me/.aws/credentials\n",
     "'credentialpath'"),
    (".dvc/config", b"\xff\xfe", "not a DVC configuration file"),
    (".gitattributes", b"*.dvc working-tree-encoding=UTF-16\n", "'.gitattributes' sets filter, ident or"),
    ("docs/.gitattributes", b"* ident\n", "'docs/.gitattributes' sets filter, ident or"),
], ids=["dvc-file", "dvc-yaml", "model-tracked", "dvc-local-config", "state-dir", "cache-dir", "site-cache",
        "credential-file", "non-utf8", "encoding", "ident"])
def test_a_tracked_file_that_redirects_dvc_is_refused_before_checkout(repo: Repository, tmp_path: Path,
                                                                      path: str, content: bytes, match: str) -> None:
    parts = path.split("/")
    sha = blob(repo, content)
    if len(parts) == 1:
        entry = f"100644 blob {sha}\t{path}"
    else:
        inner = git(repo.root, "ls-tree", f"HEAD:{parts[0]}").splitlines() if parts[0] == ".dvc" else []
        inner = [line for line in inner if line.split("\t", 1)[1] != parts[1]] + [f"100644 blob {sha}\t{parts[1]}"]
        entry = f"040000 tree {git_input(repo.root, chr(10).join(inner) + chr(10), 'mktree')}\t{parts[0]}"
    commit = commit_tree(repo, entry)
    before = local_state(repo)
    assert any(match in problem for problem in tree_problems(repo.git, commit))
    with pytest.raises(UnsafeCommitError, match=re.escape(match)):
        repo.checkout(commit)
    assert local_state(repo) == before


def test_a_tree_that_lists_a_path_twice_is_read_with_both_entries(repo: Repository) -> None:
    """``git mktree`` writes a tree with two entries of one name. The tree reader keeps both, as ``ls-tree`` lists
    them: a link behind a regular file of the same name is refused, and a second ``params.yaml`` beside the
    base's is a change to it (what an update may not make)."""
    listing = git(repo.root, "ls-tree", "HEAD").splitlines()

    def commit_with(entry: str) -> str:
        tree = git_input(repo.root, "\n".join([*listing, entry]) + "\n", "mktree")
        return git_input(repo.root, "hostile\n", "commit-tree", tree, "-p", "HEAD")

    second = commit_with(f"100644 blob {blob(repo, b'lr: 100.0' + bytes([10]))}\tparams.yaml")
    assert [path for path, *_ in Tree.read(repo.git, second).entries].count("params.yaml") == 2
    assert Tree.read(repo.git, "HEAD").changed_files(Tree.read(repo.git, second)) == {"params.yaml"}
    link = commit_with(f"120000 blob {blob(repo, b'/etc/passwd')}\tparams.yaml")
    assert "'params.yaml' is a symbolic link" in " ".join(tree_problems(repo.git, link))


def test_a_path_that_is_not_utf8_is_refused_once_and_never_decoded(repo: Repository) -> None:
    """A file under a directory, both named in bytes that are not UTF-8: one problem names the file's raw path
    (the directory is not reported apart), and nothing is checked out."""
    def mktree(lines: list[bytes]) -> str:
        return subprocess.run(["git", "mktree"], cwd=repo.root, check=True, capture_output=True,
                              input=b"".join(line + b"\n" for line in lines)).stdout.decode().strip()

    inner = mktree([f"100644 blob {blob(repo, b'x')}\t".encode() + b"f\xfe"])
    listing = [line.encode() for line in git(repo.root, "ls-tree", "HEAD").splitlines()]
    tree = mktree([*listing, f"040000 tree {inner}\t".encode() + b"d\xff"])
    hostile = git_input(repo.root, "hostile\n", "commit-tree", tree, "-p", "HEAD")
    assert Tree.read(repo.git, hostile).undecodable == (b"d\xff/f\xfe",)
    assert tree_problems(repo.git, hostile) == ["a tracked path is not UTF-8 (b'd\\xff/f\\xfe')"]
    before = local_state(repo)
    with pytest.raises(UnsafeCommitError, match="not UTF-8"):
        repo.checkout(hostile)
    assert local_state(repo) == before


def test_a_federity_repository_passes_the_checks(repo: Repository, member_clone: Repository) -> None:
    assert tree_problems(repo.git, repo.head()) == [] and storage_problems(repo.store, repo.head()) == []
    assert member_clone.verify().ok


def test_the_allow_list_names_the_files_federity_writes() -> None:
    from federity.proofs.policy import COMPILED_FILE, SETTINGS_FILE
    from federity.proofs.prove import CHAIN_FILE, step_file
    from federity.proofs.srs import SRS_FILE
    from federity.weights import WEIGHTS_FILE

    for name in (WEIGHTS_FILE, COMPILED_FILE, SETTINGS_FILE, CHAIN_FILE, SRS_FILE, step_file(0), step_file(417)):
        assert allowed_model_file(name), name
    for name in ("proof/step-x.json", "proof/step--1.json", "proof/other.json", "model.safetensors.bak", ""):
        assert not allowed_model_file(name), name


def test_no_traceback_escapes_for_a_missing_weights_object(repo: Repository, owner: Wallet) -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    point_model_dvc(repo, json.dumps([{"md5": md5, "relpath": "model.safetensors"}]).encode())
    bad = create_commit(repo, owner, "weights", "missing", [repo.head()], paths=("model.dvc",)).commit
    with pytest.raises(FederityError, match=f"DVC object {md5}.* cannot be found"):
        repo.store.read(bad)


# ---------------------------------------------------------------- property tests of the readers (hypothesis)

EXAMPLES = 400
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
                     lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                                   max_size=5), max_leaves=20)
_entry = st.fixed_dictionaries({"relpath": st.sampled_from(["model.safetensors", "proof/step-3.json", "../x",
                                                            "/etc/passwd", "proof//a", "a\\b"]) | st.text(),
                                "md5": st.sampled_from(["0" * 32, "x" * 32, "xx/../../etc"]) | st.text()},
                               optional={"size": _json, "isexec": _json, "other": _json})


def _mutated(data: bytes, cuts: list[int]) -> bytes:
    out = bytearray(data)
    for cut in cuts:
        if out:
            out[cut % len(out)] ^= 0xFF
    return bytes(out)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), _json.map(lambda v: json.dumps(v).encode()),
                 st.lists(_entry, max_size=6).map(lambda v: json.dumps(v).encode()),
                 st.tuples(st.lists(_entry, max_size=4).map(lambda v: json.dumps(v).encode()),
                           st.lists(st.integers(0, 10_000), max_size=3)).map(lambda t: _mutated(*t))))
def test_any_manifest_bytes_parse_or_raise_only_a_weights_error(raw: bytes) -> None:
    try:
        entries = parse_manifest(raw, "c" * 40)
    except WeightsError as exc:
        assert exc.message.startswith("commit cccccccccccc: ")
        return
    assert all(allowed_model_file(path) and len(md5) == 32 for path, md5 in entries.items())


_dvc_out = st.fixed_dictionaries({"md5": st.sampled_from(["0" * 32 + ".dir", "../x.dir"]) | st.text(max_size=40),
                                  "path": st.sampled_from(["model", "../model"]) | _json,
                                  "hash": st.sampled_from(["md5"]) | _json},
                                 optional={"size": _json, "nfiles": _json, "wdir": _json})


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.one_of(st.binary(max_size=300), _json.map(lambda v: yaml.safe_dump(v).encode()),
                 st.dictionaries(st.sampled_from(["outs", "wdir", "deps"]), st.lists(_dvc_out, max_size=2) | _json,
                                 max_size=3).map(lambda v: yaml.safe_dump(v).encode()),
                 st.tuples(st.lists(_dvc_out, min_size=1, max_size=1).map(
                     lambda v: yaml.safe_dump({"outs": v}).encode()),
                     st.lists(st.integers(0, 10_000), max_size=3)).map(lambda t: _mutated(*t))))
def test_any_model_dvc_bytes_parse_or_raise_only_a_weights_error(raw: bytes) -> None:
    try:
        out = parse_dvc_file(raw, "c" * 40)
    except WeightsError:
        return
    assert len(out.md5) == 32 and all(c in "0123456789abcdef" for c in out.md5)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode) | st.lists(st.sampled_from([
    "[core]", "    remote = storage", "['remote \"storage\"']", "    url = /x", "[cache]", "    dir = /y", "x = 1",
    "[[nested]]", "['remote \"a b\"']", "    credentialpath = /z", "[core", "= =", "    url = a, b"]), max_size=8).map(
        lambda lines: "\n".join(lines).encode()))
def test_any_dvc_config_gives_a_list_of_problems(raw: bytes) -> None:
    problems = dvc_config_problems(raw)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["100644", "100755", "120000", "160000", "040000", "100664"]),
                          st.sampled_from(["blob", "commit", "tree"]),
                          st.text(max_size=30) | st.sampled_from(["model/x", ".git/config", ".GIT/hooks/x",
                                                                  "a/.git /b", "x.dvc", "dvc.yaml", ".dvc/config"])),
                max_size=10))
def test_any_tree_listing_gives_a_list_of_problems(entries: list[tuple[str, str, str]]) -> None:
    problems = tree_entry_problems(entries)
    assert isinstance(problems, list)
    unsafe = [e for e in entries if e[0] in ("120000", "160000") or e[2].split("/")[0].lower() == "model"]
    assert len(problems) >= (1 if unsafe else 0)


def test_reviewing_an_update_that_tracks_a_symlink_rejects_it_and_verify_lists_it_apart(
        repo: Repository, owner: Wallet, member_clone: Repository, contributor: Wallet, canary: Path) -> None:
    site = member_clone
    main = site.head()
    git(site.root, "checkout", "--quiet", "-b", f"updates/r1/{contributor.pubkey[:8]}")
    tensors = read_tensors(site.store.read(site.head()), "weights")
    site.weights_path.unlink()
    site.weights_path.write_bytes(tensors_to_bytes({k: v + np.asarray(0.25, v.dtype) for k, v in tensors.items()}))
    track_sealed(site, contributor, "update")
    (site.root / "update.json").write_text(json.dumps({
        "schema": "federity/update/v1", "base": main, "round": 1, "nonce": None, "n_samples": 50,
        "metrics": {"loss": 0.5}, "params": {}, "contract": {"passed": True}, "proof": None}))
    os.symlink(canary, site.root / "notes.txt")
    update = create_commit(site, contributor, "update", "Update for round 1", [main], round=1,
                           paths=("model.dvc", "update.json", "notes.txt")).commit
    cache, storage = _dvc_dirs(site)
    shutil.copytree(cache, storage, dirs_exist_ok=True)  # the attacker uploads by hand: push refuses the link
    raw_push(site, f"updates/r1/{contributor.pubkey[:8]}")
    repo.pull()  # an update branch that fails its checks is let in: it is evidence for its review
    with pytest.raises(UpdateError, match=r"tree: .*'notes.txt' is a symbolic link"):
        repo.review(owner, update, approve=True)
    report = repo.verify()
    assert report.ok and [r["update"] for r in report.rejected] == [update]
    assert untouched(canary)
