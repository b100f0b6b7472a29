"""DVC storage on S3, through a real S3-compatible server on localhost (moto's server mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from federity.errors import RemoteError
from federity.identity import Wallet
from federity.repo import Repository
from tests.conftest import snapshot

BUCKET = "models"


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedMotoServer]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture
def s3_endpoint(s3_server: ThreadedMotoServer) -> str:
    host, port = s3_server.get_host_and_port()
    return f"http://{host}:{port}"


def _keys(endpoint: str) -> list[str]:
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in listing.get("Contents", []))


@pytest.fixture
def s3_repo(tmp_path: Path, owner: Wallet, s3_endpoint: str) -> Repository:
    repo, _ = Repository.init(
        tmp_path / "repo", owner, name="s3", framework="torch", model="logistic-regression",
        model_args=["in_features=4"], remote=str(tmp_path / "remote.git"), storage=f"s3://{BUCKET}/weights",
        storage_endpoint=s3_endpoint,
    )
    return repo


@pytest.mark.e2e
def test_weights_round_trip_through_s3(s3_repo: Repository, owner: Wallet, s3_endpoint: str, tmp_path: Path,
                                       make_weights) -> None:
    keys = _keys(s3_endpoint)
    assert keys and all(k.startswith("weights/files/md5/") for k in keys)
    assert not (tmp_path / "remote.storage").exists()
    clone = Repository.clone(str(tmp_path / "remote.git"), tmp_path / "clone", wallet=owner)
    assert clone.weights_path.read_bytes() == s3_repo.weights_path.read_bytes()
    assert clone.verify().ok

    new = s3_repo.commit(owner, make_weights(s3_repo), "new weights")
    s3_repo.push()
    assert len(_keys(s3_endpoint)) > len(keys)
    assert clone.pull() == new.commit
    assert clone.weights_path.read_bytes() == s3_repo.weights_path.read_bytes()


@pytest.mark.e2e
def test_unreachable_s3_fails_push_and_changes_neither_side(s3_repo: Repository, owner: Wallet, tmp_path: Path,
                                                            make_weights, s3_server: ThreadedMotoServer) -> None:
    s3_repo.commit(owner, make_weights(s3_repo), "not yet published")
    remote = tmp_path / "remote.git"
    before = snapshot(s3_repo, remote)
    # DVC's git-ignored local config overrides the endpoint with a closed port: the storage is unreachable.
    (s3_repo.root / ".dvc" / "config.local").write_text("['remote \"storage\"']\n    endpointurl = http://127.0.0.1:9\n")
    with pytest.raises(RemoteError, match="DVC storage could not upload weights"):
        s3_repo.push()
    (s3_repo.root / ".dvc" / "config.local").unlink()
    assert snapshot(s3_repo, remote) == before

    s3_server.stop()
    with pytest.raises(RemoteError, match="DVC storage could not download weights"):
        Repository.clone(str(remote), tmp_path / "clone", wallet=owner)
    assert not (tmp_path / "clone").exists()
