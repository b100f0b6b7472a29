"""Attacks on sealed objects and keyrings (federity.sealing), as someone who can write the storage or the git
remote would make them: every altered byte, moved chunk, cut or grown file, forged entry and foreign or forged
keyring fails with a SealingError, and never opens to other plaintext."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federity.errors import SealingError
from federity.identity import Wallet
from federity.sealing.keyring import Keyring
from federity.sealing.keys import key_commitment, new_key, seal
from federity.sealing.objects import (
    MIN_CHUNK_SIZE,
    ObjectHeader,
    SealedReader,
    SealedWriter,
    build_header,
    parse_header,
)

CHUNK = MIN_CHUNK_SIZE
DATA = bytes(range(256)) * (3 * CHUNK // 256) + b"tail"


@pytest.fixture(scope="module")
def wallets(tmp_path_factory: pytest.TempPathFactory) -> list[Wallet]:
    directory = tmp_path_factory.mktemp("wallets")
    return [Wallet.create(directory / f"wallet-{i}.json") for i in range(3)]


def _sealed(path: Path, wallet: Wallet, data: bytes = DATA) -> ObjectHeader:
    key = new_key()
    header = build_header(len(data), key, {}, [wallet.pubkey], chunk_size=CHUNK)
    with path.open("wb") as file:
        writer = SealedWriter(file, header, key)
        writer.write(data)
        writer.finish()
    return header


def _read_all(path: Path, wallet: Wallet) -> bytes:
    with SealedReader(path, lambda header: header.data_key({}, wallet), "the object") as reader:
        return reader.read(0, reader.size)


def test_every_flipped_byte_is_caught(tmp_path: Path, wallets: list[Wallet]) -> None:
    header = _sealed(tmp_path / "object", wallets[0])
    original = (tmp_path / "object").read_bytes()
    chunk_starts = [len(header.raw) + i * (CHUNK + 16) for i in range(4)]
    # a byte of each header field, of each entry, and the first, a middle and the tag byte of every chunk
    positions = [0, 9, 13, 25, 60, len(header.raw) - 1,
                 *chunk_starts, *(p + CHUNK // 2 for p in chunk_starts[:3]), len(original) - 1]
    for position in positions:
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        (tmp_path / "object").write_bytes(damaged)
        with pytest.raises(SealingError):
            _read_all(tmp_path / "object", wallets[0])


@pytest.mark.parametrize("change", ["truncated", "grown", "chunks swapped", "last chunk dropped"])
def test_a_cut_grown_or_reordered_object_is_caught(tmp_path: Path, wallets: list[Wallet], change: str) -> None:
    header = _sealed(tmp_path / "object", wallets[0])
    raw = (tmp_path / "object").read_bytes()
    body, sealed_chunk = raw[len(header.raw):], CHUNK + 16
    chunks = [body[i:i + sealed_chunk] for i in range(0, len(body), sealed_chunk)]
    altered = {
        "truncated": raw[:-1],
        "grown": raw + b"\0",
        "chunks swapped": header.raw + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "last chunk dropped": header.raw + b"".join(chunks[:-1]),
    }[change]
    (tmp_path / "object").write_bytes(altered)
    with pytest.raises(SealingError):
        _read_all(tmp_path / "object", wallets[0])


def test_a_header_spliced_onto_another_objects_chunks_is_caught(tmp_path: Path, wallets: list[Wallet]) -> None:
    first = _sealed(tmp_path / "first", wallets[0])
    second = _sealed(tmp_path / "second", wallets[0])
    spliced = first.raw + (tmp_path / "second").read_bytes()[len(second.raw):]
    (tmp_path / "object").write_bytes(spliced)
    with pytest.raises(SealingError):
        _read_all(tmp_path / "object", wallets[0])


def test_an_entry_that_opens_to_another_key_than_committed_is_caught(tmp_path: Path, wallets: list[Wallet]) -> None:
    """An author who gives the reviewers one data key and itself another (so each would see other weights):
    the commitment in the header names one key, and an entry opening to any other is refused."""
    honest = _sealed(tmp_path / "object", wallets[0])
    other = seal(new_key(), [wallets[0].pubkey], honest.wrapping_context)
    forged = honest.raw[:-(len(other.ephemeral) + len(other.entries))] + other.ephemeral + other.entries
    raw = (tmp_path / "object").read_bytes()
    (tmp_path / "object").write_bytes(forged + raw[len(honest.raw):])
    with pytest.raises(SealingError, match="another data key"):
        _read_all(tmp_path / "object", wallets[0])


def test_a_wallet_not_sealed_to_learns_nothing(tmp_path: Path, wallets: list[Wallet]) -> None:
    _sealed(tmp_path / "object", wallets[0])
    with pytest.raises(SealingError, match=r"private(.|\n)*members add"):
        _read_all(tmp_path / "object", wallets[1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_as_a_header_are_refused_or_parsed_within_bounds(raw: bytes) -> None:
    for data in (raw, b"FEDSEAL1" + raw):
        try:
            header = parse_header(data)
        except SealingError:
            continue
        assert len(header.raw) <= len(data)
        assert len(header.groups) + len(header.wallets) >= 1


def test_a_keyring_sealed_for_another_repository_does_not_open(wallets: list[Wallet]) -> None:
    foreign = Keyring.created("other-repo", {"versions": [wallets[0].pubkey]})
    moved = Keyring.parsed("this-repo", foreign.files())
    with pytest.raises(SealingError, match="does not open"):
        moved.keys(wallets[0])


def test_a_member_given_another_key_than_the_epoch_commits_to_is_told(wallets: list[Wallet]) -> None:
    """A maintainer who seals a key of its own to a newcomer (to read what the newcomer will encrypt) under the
    epoch's id: the newcomer's wallet checks the key against the id and refuses it."""
    owner, newcomer = wallets[:2]
    keyring = Keyring.created("repo", {"versions": [owner.pubkey]})
    epoch = keyring.current("versions")
    context = b"federity-keyring|repo|versions|0|" + epoch.key_id
    forged_batch = seal(new_key(), [newcomer.pubkey], context)
    files = keyring.files()
    name = "keyring/versions-0-1.json"
    files[name] = json.dumps({**json.loads(files["keyring/versions-0-0.json"]),
                              "ephemeral": base64.b64encode(forged_batch.ephemeral).decode(),
                              "entries": base64.b64encode(forged_batch.entries).decode()}).encode()
    with pytest.raises(SealingError, match="someone sealed another key"):
        Keyring.parsed("repo", files).keys(newcomer)
    assert key_commitment(new_key(), b"group versions") != epoch.key_id


@pytest.mark.parametrize("name,content,why", [
    ("keyring/../federity.yaml", b"{}", "not named"),
    ("keyring/versions-0-0.json.lock", b"{}", "not named"),
    ("keyring/versions-01-0.json", b"{}", "not named"),
    ("keyring/versions-0-0.json", b"\xff\xfe", "not JSON"),
    ("keyring/versions-0-0.json", b"[]", "exactly group"),
    ("keyring/versions-0-0.json", b"x" * (300 * 1024), "larger than"),
    ("keyring/versions-0-0.json", json.dumps({"group": "versions", "epoch": True, "key_id": "00" * 32,
                                               "ephemeral": "", "entries": ""}).encode(), "differs"),
    ("keyring/versions-0-0.json", json.dumps({"group": "versions", "epoch": 0, "key_id": "zz",
                                               "ephemeral": "", "entries": ""}).encode(), "not hex or base64"),
    ("keyring/versions-0-0.json", json.dumps({"group": "versions", "epoch": 0, "key_id": "00" * 32,
                                               "ephemeral": "AAAA", "entries": ""}).encode(), "wrong size"),
    ("keyring/versions-2-0.json", "epoch 2", "without gaps"),
])
def test_a_damaged_keyring_is_refused_with_what_is_wrong(wallets: list[Wallet], name: str, content: bytes | str,
                                                         why: str) -> None:
    files = Keyring.created("repo", {"versions": [wallets[0].pubkey]}).files()
    if content == "epoch 2":  # a well-formed batch of an epoch that skips epoch 1
        content = json.dumps({**json.loads(files["keyring/versions-0-0.json"]), "epoch": 2}).encode()
    files[name] = content
    with pytest.raises(SealingError, match=why):
        Keyring.parsed("repo", files)


def test_random_noise_never_opens(tmp_path: Path, wallets: list[Wallet]) -> None:
    header = _sealed(tmp_path / "object", wallets[0])
    (tmp_path / "object").write_bytes(header.raw + os.urandom(len(DATA) + 4 * 16))
    with pytest.raises(SealingError, match="does not authenticate"):
        _read_all(tmp_path / "object", wallets[0])
