"""Private repositories: whose keys open a commit's weights, and whom new weights are sealed to.

A private repository (``privacy`` in ``federity.yaml``, the default for ``init``) keeps its keyring in git
(``keyring/``, :mod:`federity.sealing.keyring`) and only sealed objects in ``model/``, so DVC's cache and storage
only ever hold ciphertext (:meth:`federity.repo.storage.WeightsStore.track` seals before ``dvc add``). Who reads
what:

- a version on a model branch (genesis, weights, aggregate, merge, revert): every member, through the keyring's
  ``versions`` key (:func:`sealing_for`);
- an update: its author, and the owners and maintainers who review it (every contributor too when
  ``privacy.updates`` is ``contributors``, every member when it is ``members``), each sealed to by wallet
  (:meth:`~federity.config.RepoConfig.update_readers`).

:class:`KeyChain` opens them for one wallet: the wallet given to the operation, or the one ``--wallet`` names,
loaded when a sealed object is first read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from federity.config import RepoConfig, Role
from federity.errors import FederityError, PrivateWeightsError, SealingError
from federity.git import GitError
from federity.identity import Wallet
from federity.records import MAIN_BRANCH
from federity.sealing.keyring import BATCH_MAX_BYTES, KEYRING_DIR, VERSIONS, Keyring
from federity.sealing.keys import fingerprint
from federity.sealing.objects import ObjectHeader, Sealing

if TYPE_CHECKING:
    from federity.repo import Repository
    from federity.repo.history import History
    from federity.repo.storage import KeyFor

KEYRING_MAX_FILES = 4096


def keyring_files(repo: Repository, commit: str) -> dict[str, bytes]:
    """The files under ``keyring/`` at ``commit`` (path → content), read from git objects: anything but regular
    files named there, more than :data:`KEYRING_MAX_FILES` files, or a file larger than a batch is refused
    unread (:class:`SealingError`)."""
    try:
        listing = repo.git.run_bytes("ls-tree", "-l", "-z", "--full-tree", "--end-of-options",
                                     f"{commit}:{KEYRING_DIR}")
    except GitError:
        return {}
    entries = [item for item in listing.split(b"\0") if item]
    if len(entries) > KEYRING_MAX_FILES:
        raise SealingError(f"the keyring of commit {commit[:12]} holds more than {KEYRING_MAX_FILES} files",
                           "run `federity verify`; do not use this commit")
    oids: dict[str, str] = {}
    for item in entries:
        header, _, raw_name = item.partition(b"\t")
        mode, kind, oid, size = header.decode().split()
        name = f"{KEYRING_DIR}/{raw_name.decode(errors='replace')}"
        if kind != "blob" or mode not in ("100644", "100755") or not size.isdigit() or int(size) > BATCH_MAX_BYTES:
            raise SealingError(f"the keyring of commit {commit[:12]} holds {name[:80]!r}, which is not a keyring "
                               "file", "run `federity verify`; do not use this commit")
        oids[name] = oid
    contents = repo.git.read_objects(list(oids.values()))
    return {name: contents[oid] or b"" for name, oid in oids.items()}


def keyring_at(repo: Repository, commit: str, config: RepoConfig) -> Keyring:
    """The keyring of a private repository at ``commit`` (:class:`SealingError` when it is damaged)."""
    return Keyring.parsed(config.id, keyring_files(repo, commit))


def sealing_for(repo: Repository, wallet: Wallet, kind: str, config: RepoConfig,
                keyring: Keyring | None = None) -> Sealing | None:
    """Whom a new ``kind`` commit's weights are sealed to, in a repository configured by ``config`` (``None``:
    a public repository's are not sealed). ``keyring``: the one the commit carries, when it is not the
    checked-out commit's (genesis, a membership change)."""
    if not config.private:
        return None
    if kind == "update":
        return Sealing({}, tuple(config.update_readers(wallet.pubkey)))
    keyring = keyring or keyring_at(repo, repo.head(), config)
    key_id, key = keyring.current_key(VERSIONS, wallet)
    return Sealing({key_id: key})


def write_keyring(repo: Repository, keyring: Keyring) -> None:
    """Write ``keyring``'s files into the working tree's ``keyring/`` (never through a link)."""
    from federity.repo.paths import write_inside

    for path, content in keyring.files().items():
        write_inside(repo.root, path, content)


def require_reader(repo: Repository) -> None:
    """Raise :class:`PrivateWeightsError` (naming the owners to ask) unless the checked-out commit's weights are
    public or the repository's wallet is a member; the error also says how to check the history without them."""
    head = repo.head()
    config = repo.config(head)
    if not config.private:
        return
    wallet = repo.keys.wallet(head)
    if config.role_of(wallet.pubkey) is None:
        refusal = repo.keys.refusal(head, wallet)
        raise PrivateWeightsError(refusal.message, f"{refusal.hint}. To check its history, signatures and sealing "
                                                   "without the weights: `git clone URL DIR`, `git -C DIR fetch "
                                                   "origin 'refs/notes/*:refs/notes/*'`, then `federity verify` in "
                                                   "DIR")


class KeyChain:
    """The keys one wallet opens a private repository's objects with; group keys are opened from the keyrings
    of the commit read, the checked-out commit and main (local and origin's), and kept for the process."""

    def __init__(self, repo: Repository, wallet_path: Path | None = None) -> None:
        self._repo = repo
        self._wallet_path = wallet_path
        self._wallet: Wallet | None = None
        self._group_keys: dict[bytes, bytes] = {}
        self._loaded: set[str] = set()

    def use(self, wallet: Wallet) -> None:
        """Read with ``wallet`` from now on."""
        if self._wallet is None or self._wallet.pubkey != wallet.pubkey:
            self._group_keys.clear()
            self._loaded.clear()
        self._wallet = wallet

    def wallet(self, commit: str) -> Wallet:
        """The wallet reading; the one ``--wallet`` (or the default path) names, loaded now if none was given."""
        if self._wallet is None:
            try:
                self._wallet = Wallet.load(self._wallet_path)
            except FederityError as exc:
                raise PrivateWeightsError(f"the weights of commit {commit[:12]} are private to the repository's "
                                          f"members, and no member's wallet was given: {exc.message}",
                                          f"pass a member's wallet with --wallet; {exc.hint}") from None
        return self._wallet

    def opener(self, commit: str) -> KeyFor:
        """What opens the data key of an object of ``commit`` (:class:`PrivateWeightsError` when this wallet may
        not)."""

        def key_for(header: ObjectHeader) -> bytes:
            wallet = self.wallet(commit)
            if header.groups and not set(header.group_ids()) & set(self._group_keys):
                self._load(commit, wallet)
            key = header.data_key(self._group_keys, wallet)
            if key is None:
                raise self.refusal(commit, wallet)
            return key

        return key_for

    def _load(self, commit: str, wallet: Wallet) -> None:
        for rev in (commit, "HEAD", MAIN_BRANCH, f"origin/{MAIN_BRANCH}"):
            tree = self._repo.git.object_id(f"{rev}:{KEYRING_DIR}")
            if tree is None or tree in self._loaded:
                continue
            self._loaded.add(tree)
            try:
                config = self._repo.config(rev)
            except FederityError:  # a commit with no readable federity.yaml holds no keyring to trust
                continue
            if config.private:
                self._group_keys.update(keyring_at(self._repo, rev, config).keys(wallet))

    def refusal(self, commit: str, wallet: Wallet) -> PrivateWeightsError:
        """Why ``wallet`` cannot read the weights of ``commit``, and whom to ask."""
        try:
            config = self._repo.config(commit)
            owners = ", ".join(sorted(p for p, role in config.members.items() if role == Role.OWNER))
            member = config.role_of(wallet.pubkey) is not None
        except FederityError:
            owners, member = "the repository's owners", False
        if member:  # e.g. a contributor and another contributor's update
            return PrivateWeightsError(
                f"the weights of commit {commit[:12]} are private, and wallet {wallet.pubkey} is not among those "
                "they are sealed to (an update is sealed to its author and the owners and maintainers who review "
                "it)", f"ask its author or an owner ({owners}) if you need it")
        return PrivateWeightsError(
            f"the weights of commit {commit[:12]} are private: they are sealed to the repository's members, and "
            f"wallet {wallet.pubkey} is not a member",
            f"ask an owner ({owners}) to add your wallet: `federity members add {wallet.pubkey} --role reader`")


def note_sealed(history: History, commit: str) -> None:
    """Remember that a check of ``commit`` met weights this wallet cannot open (``verify`` lists them)."""
    history.memo.setdefault("sealed", set()).add(commit)


# -- checks (anyone can make them: they read the keyring's fingerprints and the objects' headers, no key) -------

def keyring_problems(history: History, commit: str, parent: str | None, kind: str,
                     config: RepoConfig) -> list[str]:
    """Why ``commit``'s keyring is not what its kind may leave (empty when it is): only a genesis or members
    commit changes ``keyring/``, a members commit only adds files to it, and in a private repository the current
    ``versions`` key is sealed to exactly the members and every new batch to members only."""
    repo = history.repo
    before = history.tree(parent).object_id(KEYRING_DIR) if parent else None
    after = history.tree(commit).object_id(KEYRING_DIR)
    if kind not in ("genesis", "members"):
        return [] if before == after else [f"a {kind} commit changed {KEYRING_DIR}/; only members commits may"]
    if not config.private:
        return [] if after is None else [f"a public repository holds {KEYRING_DIR}/"]
    try:
        files = keyring_files(repo, commit)
        keyring = Keyring.parsed(config.id, files)
        earlier = keyring_files(repo, parent) if parent else {}
    except SealingError as exc:
        return [exc.message]
    changed = sorted(path for path, raw in earlier.items() if files.get(path) != raw)
    if changed:
        return [f"a members commit may only add keyring files, but it changes or removes {', '.join(changed[:3])}"]
    members = {fingerprint(pubkey) for pubkey in config.version_readers()}
    problems = []
    if keyring.current(VERSIONS).fingerprints() != members:
        problems.append("the current versions key is not sealed to exactly the repository's members (a removal "
                        "needs a new key; a member who joins needs it sealed to them)")
    added = [path for path in files if path not in earlier]
    strangers = [path for path in added if not _batch_fingerprints(keyring, path) <= members]
    if strangers:
        problems.append(f"keyring file {strangers[0]} seals a key to a wallet that is not a member")
    return problems


def _batch_fingerprints(keyring: Keyring, path: str) -> set[bytes]:
    group, epoch, batch = path.removeprefix(f"{KEYRING_DIR}/").removesuffix(".json").split("-")
    return set(keyring.epochs[group][int(epoch)].batches[int(batch)].fingerprints())


def sealing_problems(repo: Repository, commit: str, parent: str | None, kind: str, author: str,
                     config: RepoConfig) -> list[str]:
    """Why the objects ``commit`` adds to ``model/`` (those its first parent does not hold) are not sealed as
    its kind requires (empty when they are): in a private repository every object is sealed; an update's to
    exactly its readers (:meth:`RepoConfig.update_readers` at its base); any other kind's under the current
    ``versions`` key of the keyring it commits. Reads each new object's header only."""
    if not config.private:
        return []
    try:
        return _sealing_problems(repo, commit, parent, kind, author, config)
    except FederityError as exc:  # a hostile manifest, a missing or damaged object: what is wrong, not a raise
        return [exc.message]


def _sealing_problems(repo: Repository, commit: str, parent: str | None, kind: str, author: str,
                      config: RepoConfig) -> list[str]:
    store = repo.store
    inherited = set(store.manifest(parent).values()) if parent else set()
    problems = []
    for relpath, md5 in sorted(store.manifest(commit).items()):
        if md5 in inherited:
            continue
        header = store.object_header(commit, relpath)
        if header is None:
            problems.append(f"model/{relpath} is not sealed, in a private repository")
        elif kind == "update":
            readers = {fingerprint(pubkey) for pubkey in config.update_readers(author)}
            sealed_to = {name for sealed in header.wallets for name in sealed.fingerprints()}
            if header.groups or sealed_to != readers:
                problems.append(f"model/{relpath} is not sealed to exactly the update's readers (its author and "
                                "the repository's reviewers)")
        else:
            current = keyring_at(repo, commit, config).current(VERSIONS).key_id
            if header.group_ids() != [current] or header.wallets:
                problems.append(f"model/{relpath} is not sealed under the repository's current versions key")
    return problems
