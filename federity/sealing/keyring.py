"""A private repository's keyring: its group keys, each sealed to the wallets of the group.

One group holds a key: ``versions``, every member (reader and up). Each version on a model branch (genesis,
weights, aggregate, merge, revert) has its data key wrapped under the group's current key. (An update's data
key is sealed to its readers' wallets one by one instead, :mod:`federity.sealing.objects`: its author, a
contributor, cannot hold a key that its readers share without it.)

A group's key lives in epochs. Adding a member seals every epoch's key of its groups to it (a new *batch* of each
epoch), so it reads what the group could read before. Removing one starts a new epoch: a new key, sealed to the
remaining members only, for every later version. What it could read before stays readable to it: it may have
kept the keys, and nothing can take them back.

Each batch is a file of its own, ``keyring/<group>-<epoch>-<batch>.json``, never changed once committed: a
membership change adds files only, and what it adds is its whole cost (56 bytes a recipient, base64). A batch
names its recipients by fingerprint (:func:`~federity.sealing.keys.fingerprint`); its key is bound to the
repository's id, the group and the epoch, and to the epoch's key id, the key's commitment, which every member
who opens it checks.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from federity.errors import SealingError
from federity.identity import Wallet
from federity.sealing.keys import SealedKey, fingerprint, key_commitment, new_key, seal, unseal

KEYRING_DIR = "keyring"
VERSIONS = "versions"
GROUPS = (VERSIONS,)
BATCH_MAX_BYTES = 256 * 1024
_BATCH_NAME = re.compile(r"(versions)-(0|[1-9][0-9]{0,5})-(0|[1-9][0-9]{0,5})\.json")


def batch_path(group: str, epoch: int, batch: int) -> str:
    """Where a batch of a group's epoch lives in the repository."""
    return f"{KEYRING_DIR}/{group}-{epoch}-{batch}.json"


def _context(repo_id: str, group: str, epoch: int, key_id: bytes) -> bytes:
    return b"federity-keyring|" + repo_id.encode() + b"|" + group.encode() + b"|" + str(epoch).encode() + b"|" + key_id


def _purpose(group: str) -> bytes:
    return b"group " + group.encode()


@dataclass(frozen=True)
class Epoch:
    """One key of a group, and its sealings (batches, in order)."""

    group: str
    number: int
    key_id: bytes
    batches: tuple[SealedKey, ...]

    def fingerprints(self) -> set[bytes]:
        """The fingerprints of every wallet the key is sealed to."""
        return {name for batch in self.batches for name in batch.fingerprints()}

    def sealed_to(self, pubkey: str) -> bool:
        """Whether the key is sealed to ``pubkey``."""
        return fingerprint(pubkey) in self.fingerprints()


@dataclass(frozen=True)
class Keyring:
    """Every epoch of every group, by group, oldest first; ``repo_id`` binds its keys to one repository."""

    repo_id: str
    epochs: Mapping[str, tuple[Epoch, ...]]

    def current(self, group: str) -> Epoch:
        """The group's newest epoch: what new objects are wrapped under."""
        return self.epochs[group][-1]

    def keys(self, wallet: Wallet) -> dict[bytes, bytes]:
        """Every group key ``wallet`` can open (key id → key), each checked against its commitment."""
        opened = {}
        for epochs in self.epochs.values():
            for epoch in epochs:
                key = self._open(epoch, wallet)
                if key is not None:
                    opened[epoch.key_id] = key
        return opened

    def current_key(self, group: str, wallet: Wallet) -> tuple[bytes, bytes]:
        """The group's current key id and key, opened with ``wallet`` (:class:`SealingError` when it cannot)."""
        epoch = self.current(group)
        key = self._open(epoch, wallet)
        if key is None:
            raise SealingError(f"wallet {wallet.pubkey} holds no key of the repository's {group} group",
                               "ask the repository's owner to add your wallet as a member with a role that reads "
                               "it")
        return epoch.key_id, key

    def _open(self, epoch: Epoch, wallet: Wallet) -> bytes | None:
        context = _context(self.repo_id, epoch.group, epoch.number, epoch.key_id)
        for batch in epoch.batches:
            key = unseal(batch, wallet, context)
            if key is not None:
                if key_commitment(key, _purpose(epoch.group)) != epoch.key_id:
                    raise SealingError(f"the {epoch.group} key of epoch {epoch.number} sealed to {wallet.pubkey} "
                                       "is not the key the keyring commits to: someone sealed another key",
                                       "run `federity verify` and tell the repository's owner")
                return key
        return None

    def files(self) -> dict[str, bytes]:
        """Each batch as the file it is stored in (path → content)."""
        return {batch_path(group, epoch.number, index): _batch_json(epoch, batch)
                for group, epochs in self.epochs.items() for epoch in epochs
                for index, batch in enumerate(epoch.batches)}

    @classmethod
    def created(cls, repo_id: str, groups: Mapping[str, Iterable[str]]) -> Keyring:
        """A new keyring: one fresh key per group, sealed to the group's wallets (base58 public keys)."""
        return cls(repo_id, {group: (_new_epoch(repo_id, group, 0, recipients),)
                             for group, recipients in groups.items()})

    def resealed(self, groups: Mapping[str, Iterable[str]], wallet: Wallet) -> Keyring:
        """The keyring for new group memberships (``groups``: group → wallets), opened by ``wallet`` where it
        must reseal: a group that lost a wallet gets a new epoch sealed to the rest; wallets that joined get
        every epoch of their group sealed to them (a new batch each). Unchanged groups stay as they are."""
        epochs = dict(self.epochs)
        for group, recipients in groups.items():
            wanted = list(dict.fromkeys(recipients))
            holders = self.current(group).fingerprints()
            joined = [pubkey for pubkey in wanted if fingerprint(pubkey) not in holders]
            chain = tuple(self._resealed(epoch, joined, wallet) for epoch in self.epochs[group]) if joined \
                else self.epochs[group]
            if holders - {fingerprint(pubkey) for pubkey in wanted}:
                chain = (*chain, _new_epoch(self.repo_id, group, chain[-1].number + 1, wanted))
            epochs[group] = chain
        return Keyring(self.repo_id, epochs)

    def _resealed(self, epoch: Epoch, joined: list[str], wallet: Wallet) -> Epoch:
        """``epoch`` with a new batch sealing its key to the wallets in ``joined`` that do not hold it yet."""
        newcomers = [pubkey for pubkey in joined if not epoch.sealed_to(pubkey)]
        if not newcomers:
            return epoch
        key = self._open(epoch, wallet)
        if key is None:
            raise SealingError(f"wallet {wallet.pubkey} cannot open epoch {epoch.number} of the {epoch.group} key, "
                               "so it cannot give it to the new members",
                               "have an owner who holds every key make the change")
        batch = seal(key, newcomers, _context(self.repo_id, epoch.group, epoch.number, epoch.key_id))
        return Epoch(epoch.group, epoch.number, epoch.key_id, (*epoch.batches, batch))

    @classmethod
    def parsed(cls, repo_id: str, files: Mapping[str, bytes]) -> Keyring:
        """The keyring stored in ``files`` (path → content, every file under ``keyring/``), read as another
        party's input: names, sizes, fields, and the epochs' and batches' numbering are checked
        (:class:`SealingError` says which file is wrong)."""
        found: dict[str, dict[int, dict[int, tuple[bytes, SealedKey]]]] = {group: {} for group in GROUPS}
        for path, raw in files.items():
            match = _BATCH_NAME.fullmatch(path.removeprefix(f"{KEYRING_DIR}/")) if path.startswith(
                f"{KEYRING_DIR}/") else None
            if match is None:
                raise _bad_keyring(path, "it is not named <group>-<epoch>-<batch>.json")
            group, epoch, batch = match.group(1), int(match.group(2)), int(match.group(3))
            key_id, sealed = _parse_batch(path, raw, group, epoch)
            found[group].setdefault(epoch, {})[batch] = (key_id, sealed)
        epochs: dict[str, tuple[Epoch, ...]] = {}
        for group, by_epoch in found.items():
            if sorted(by_epoch) != list(range(len(by_epoch))) or not by_epoch:
                raise _bad_keyring(f"{KEYRING_DIR}/{group}-*", "its epochs are not numbered 0, 1, 2… without gaps")
            chain = []
            for number in range(len(by_epoch)):
                batches = by_epoch[number]
                if sorted(batches) != list(range(len(batches))):
                    raise _bad_keyring(batch_path(group, number, 0), "its batches are not numbered 0, 1, 2…")
                ids = {key_id for key_id, _ in batches.values()}
                if len(ids) != 1:
                    raise _bad_keyring(batch_path(group, number, 0), "its batches name different key ids")
                chain.append(Epoch(group, number, ids.pop(), tuple(batches[i][1] for i in range(len(batches)))))
            epochs[group] = tuple(chain)
        return cls(repo_id, epochs)


def _new_epoch(repo_id: str, group: str, number: int, recipients: Iterable[str]) -> Epoch:
    key = new_key()
    key_id = key_commitment(key, _purpose(group))
    return Epoch(group, number, key_id, (seal(key, recipients, _context(repo_id, group, number, key_id)),))


def _batch_json(epoch: Epoch, batch: SealedKey) -> bytes:
    return (json.dumps({"group": epoch.group, "epoch": epoch.number, "key_id": epoch.key_id.hex(),
                        "ephemeral": base64.b64encode(batch.ephemeral).decode(),
                        "entries": base64.b64encode(batch.entries).decode()}, indent=1) + "\n").encode()


def _parse_batch(path: str, raw: bytes, group: str, epoch: int) -> tuple[bytes, SealedKey]:
    if len(raw) > BATCH_MAX_BYTES:
        raise _bad_keyring(path, f"it is larger than {BATCH_MAX_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise _bad_keyring(path, "it is not JSON") from None
    if not isinstance(data, dict) or set(data) != {"group", "epoch", "key_id", "ephemeral", "entries"}:
        raise _bad_keyring(path, "it must hold exactly group, epoch, key_id, ephemeral and entries")
    if data["group"] != group or data["epoch"] != epoch or isinstance(data["epoch"], bool):
        raise _bad_keyring(path, "its group or epoch differs from its file name")
    try:
        key_id = bytes.fromhex(data["key_id"]) if isinstance(data["key_id"], str) else b""
        ephemeral, entries = (base64.b64decode(data[field], validate=True) if isinstance(data[field], str)
                              else b"" for field in ("ephemeral", "entries"))
    except (ValueError, binascii.Error):
        raise _bad_keyring(path, "a key, id or entry is not hex or base64") from None
    if len(key_id) != 32:
        raise _bad_keyring(path, "its key id is not 32 bytes")
    try:
        return key_id, SealedKey.parsed(ephemeral, entries)
    except SealingError:
        raise _bad_keyring(path, "its ephemeral key or entries have the wrong size") from None


def _bad_keyring(path: str, why: str) -> SealingError:
    return SealingError(f"the repository's keyring is damaged: {path[:120]!r}: {why}",
                        "run `federity verify`; a keyring is changed only by a signed members commit")
