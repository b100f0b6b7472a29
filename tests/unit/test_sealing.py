"""Sealing (federity.sealing): wallets as X25519 keys, keys sealed to wallets, the keyring's epochs through
membership changes, and sealed objects written and read back by range."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
from nacl import bindings

from federity.errors import SealingError
from federity.identity import Wallet
from federity.sealing.keyring import Keyring
from federity.sealing.keys import ENTRY_BYTES, new_key, seal, unseal, x25519_public, x25519_secret
from federity.sealing.objects import MIN_CHUNK_SIZE, SealedReader, SealedWriter, build_header, sealed_size

CHUNK = MIN_CHUNK_SIZE


@pytest.fixture
def wallets(tmp_path: Path) -> list[Wallet]:
    return [Wallet.create(tmp_path / f"wallet-{i}.json") for i in range(5)]


def _write(path: Path, data: bytes, key: bytes, groups: dict[bytes, bytes], recipients: list[str],
           pieces: int = 3) -> None:
    header = build_header(len(data), key, groups, recipients, chunk_size=CHUNK)
    with path.open("wb") as file:
        writer = SealedWriter(file, header, key)
        step = max(1, len(data) // pieces)
        for start in range(0, len(data), step):
            writer.write(data[start:start + step])
        writer.finish()


def _reader(path: Path, wallet: Wallet, keyring: Keyring | None = None) -> SealedReader:
    keys = keyring.keys(wallet) if keyring else {}
    return SealedReader(path, lambda header: header.data_key(keys, wallet), "the test object")


def test_a_wallet_public_key_gives_the_x25519_key_its_secret_half_computes(wallets: list[Wallet]) -> None:
    for wallet in wallets:
        assert bindings.crypto_scalarmult_base(x25519_secret(wallet)) == x25519_public(wallet.pubkey)


def test_a_sealed_key_opens_for_each_recipient_only_and_in_its_context(wallets: list[Wallet]) -> None:
    key = new_key()
    sealed = seal(key, [w.pubkey for w in wallets[:3]], b"context")
    assert len(sealed.entries) == 3 * ENTRY_BYTES
    assert [unseal(sealed, w, b"context") for w in wallets[:3]] == [key] * 3
    assert unseal(sealed, wallets[3], b"context") is None
    with pytest.raises(SealingError, match="does not open"):
        unseal(sealed, wallets[0], b"another context")


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_a_sealed_object_reads_back_whole_and_by_range(tmp_path: Path, wallets: list[Wallet], size: int) -> None:
    data = os.urandom(size)
    key = new_key()
    _write(tmp_path / "object", data, key, {}, [wallets[0].pubkey])
    header_size = len(build_header(size, key, {}, [wallets[0].pubkey], chunk_size=CHUNK).raw)
    assert (tmp_path / "object").stat().st_size == sealed_size(header_size, size, CHUNK)
    with _reader(tmp_path / "object", wallets[0]) as reader:
        assert reader.size == size
        assert reader.read(0, size) == data
        assert b"".join(bytes(chunk) for chunk in reader.chunks()) == data
        for start, stop in [(0, 0), (size // 3, size // 2), (max(0, size - 5), size)]:
            assert reader.read(start, stop - start) == data[start:stop]
        with pytest.raises(IndexError):
            reader.read(size, 1)


def test_no_plaintext_in_a_sealed_object(tmp_path: Path, wallets: list[Wallet]) -> None:
    data = b"tensor-name-canary" * 1000
    _write(tmp_path / "object", data, new_key(), {}, [wallets[0].pubkey])
    assert b"tensor-name-canary" not in (tmp_path / "object").read_bytes()


def test_the_writer_takes_exactly_the_announced_size(tmp_path: Path, wallets: list[Wallet]) -> None:
    key = new_key()
    header = build_header(10, key, {}, [wallets[0].pubkey], chunk_size=CHUNK)
    with (tmp_path / "object").open("wb") as file:
        writer = SealedWriter(file, header, key)
        writer.write(b"12345")
        with pytest.raises(ValueError, match="5 of the 10 bytes"):
            writer.finish()
        with pytest.raises(ValueError, match="more than the 10 bytes"):
            writer.write(b"123456")


def test_group_members_read_a_version_and_others_cannot(tmp_path: Path, wallets: list[Wallet]) -> None:
    keyring = Keyring.created("repo", {"versions": [w.pubkey for w in wallets[:3]]})
    key_id, group_key = keyring.current_key("versions", wallets[0])
    data = os.urandom(2 * CHUNK + 5)
    _write(tmp_path / "object", data, new_key(), {key_id: group_key}, [])
    for member in wallets[:3]:
        with _reader(tmp_path / "object", member, keyring) as reader:
            assert reader.read(0, len(data)) == data
    with pytest.raises(SealingError, match="private"):
        _reader(tmp_path / "object", wallets[3], keyring)


def test_an_update_reads_for_the_wallets_it_is_sealed_to_only(tmp_path: Path, wallets: list[Wallet]) -> None:
    owner, author, other_contributor = wallets[:3]
    _write(tmp_path / "update", b"weights" * 999, new_key(), {}, [author.pubkey, owner.pubkey])
    for reader_wallet in (owner, author):
        with _reader(tmp_path / "update", reader_wallet) as reader:
            assert reader.read(0, 7) == b"weights"
    with pytest.raises(SealingError, match="private"):
        _reader(tmp_path / "update", other_contributor)


def test_a_member_who_joins_reads_old_versions_and_a_removed_one_no_new_ones(wallets: list[Wallet]) -> None:
    owner, reader_a, reader_b, newcomer = wallets[:4]
    keyring = Keyring.created("repo", {"versions": [owner.pubkey, reader_a.pubkey, reader_b.pubkey]})
    old_id = keyring.current("versions").key_id
    joined = keyring.resealed({"versions": [owner.pubkey, reader_a.pubkey, reader_b.pubkey, newcomer.pubkey]}, owner)
    assert [len(e.batches) for e in joined.epochs["versions"]] == [2]  # no new epoch: one more batch
    assert set(joined.keys(newcomer)) == {old_id}
    removed = joined.resealed({"versions": [owner.pubkey, reader_a.pubkey, newcomer.pubkey]}, owner)
    new_id = removed.current("versions").key_id
    assert new_id != old_id
    assert set(removed.keys(reader_b)) == {old_id}  # what it could read before, and nothing later
    assert set(removed.keys(newcomer)) == {old_id, new_id}
    # a change only adds files: every earlier batch stays byte for byte
    for before, after in ((keyring, joined), (joined, removed)):
        assert before.files().items() <= after.files().items()
    assert Keyring.parsed("repo", removed.files()).keys(newcomer) == removed.keys(newcomer)


def test_sealing_to_a_hundred_members_adds_under_ten_kilobytes(tmp_path: Path) -> None:
    members = [Wallet.create(tmp_path / f"member-{i}.json").pubkey for i in range(100)]
    owner = Wallet.create(tmp_path / "owner.json")
    keyring = Keyring.created("repo", {"versions": [owner.pubkey, *members]})
    rotated = keyring.resealed({"versions": [owner.pubkey, *members[1:]]}, owner)
    added = {path: raw for path, raw in rotated.files().items() if path not in keyring.files()}
    assert list(added) == ["keyring/versions-1-0.json"]
    assert sum(map(len, added.values())) < 10_000
    assert sum(len(zlib.compress(raw)) for raw in added.values()) < 10_000
