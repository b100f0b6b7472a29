"""``federity members``: membership changes are signed ``members`` commits that edit federity.yaml.

Owners may grant and revoke any role; maintainers may grant and revoke only the contributor and reader roles.
A repository always keeps at least one owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from federity.config import CONFIG_FILE, RepoConfig, Role
from federity.errors import ConfigError, PermissionDeniedError
from federity.identity import Wallet, is_pubkey
from federity.repo.commits import CommitRecord, create_commit, read_commit
from federity.repo.privacy import keyring_at, write_keyring
from federity.sealing.keyring import KEYRING_DIR, VERSIONS

if TYPE_CHECKING:
    from federity.repo import Repository


def permission_problem(actor: Role | None, before: dict[str, Role], after: dict[str, Role]) -> str | None:
    """Why a wallet holding ``actor`` may not change the members from ``before`` to ``after``, or ``None``."""
    if actor is None or actor < Role.MAINTAINER:
        return "only an owner or maintainer may change members"
    if actor < Role.OWNER:
        for pubkey in {k for k in set(before) | set(after) if before.get(k) != after.get(k)}:
            for role in (before.get(pubkey), after.get(pubkey)):
                if role is not None and role >= Role.MAINTAINER:
                    return f"a maintainer cannot grant or revoke the {role.label} role (of {pubkey})"
    return None


def validity_problem(before: dict[str, Role], after: dict[str, Role]) -> str | None:
    """Why the change from ``before`` to ``after`` is not a valid membership change, or ``None``."""
    if before == after:
        return "the membership does not change"
    if Role.OWNER not in after.values():
        return "the repository would be left without an owner"
    return None


def list_members(repo: Repository) -> list[dict[str, str]]:
    """Members at the checked-out commit, owners first."""
    members = repo.config(repo.head()).members
    return [{"pubkey": k, "role": r.label} for k, r in sorted(members.items(), key=lambda kv: (-kv[1], kv[0]))]


def change_members(repo: Repository, wallet: Wallet, changes: dict[str, Role | None], message: str, *,
                   check_holder: bool = True) -> CommitRecord:
    """Commit the membership with ``changes`` applied (a role, or ``None`` to remove), signed by ``wallet``.

    A change only an owner may make also needs ``wallet`` to hold the repository's genesis NFT, by the history
    and on the ledger once it is minted (:func:`federity.repo.nft.require_repository_holder`), and the holder
    stays an owner; ``nft transfer`` passes ``check_holder=False`` as it has just checked it and hands over."""
    repo.keys.use(wallet)
    from federity.repo.nft import require_repository_holder

    repo.require_branch()
    head = repo.head()
    config = repo.config(head)
    after = dict(config.members)
    for pubkey, role in changes.items():
        if role is not None:
            after[pubkey] = role
        elif after.pop(pubkey, None) is None:
            raise ConfigError(f"{pubkey} is not a member", "see the members with `federity members list`")
    denied = permission_problem(config.role_of(wallet.pubkey), config.members, after)
    if denied:
        raise PermissionDeniedError(f"wallet {wallet.pubkey} cannot change members: {denied}",
                                    "sign with an owner's wallet (--wallet)")
    invalid = validity_problem(config.members, after)
    if invalid:
        raise ConfigError(f"cannot change members: {invalid}", "check `federity members list` and the request")
    if check_holder and permission_problem(Role.MAINTAINER, config.members, after):
        require_repository_holder(repo, wallet)
        if after.get(wallet.pubkey) != Role.OWNER:
            raise ConfigError("the genesis NFT's holder must stay an owner",
                              "hand the repository over with `federity nft transfer GENESIS --to PUBKEY`")
    updated = RepoConfig(**{**vars(config), "members": after})
    head_meta = read_commit(repo, head).meta
    if head_meta is None:
        raise ConfigError(f"the head {head[:12]} carries no Federity metadata", "run `federity verify`")
    keyring = None
    if config.private:  # who joins gets every key of the versions it may read; a removal starts a new key
        keyring = keyring_at(repo, head, config).resealed({VERSIONS: updated.version_readers()}, wallet)
    with repo.transaction():
        (repo.root / CONFIG_FILE).write_text(updated.to_yaml())
        if keyring is not None:
            write_keyring(repo, keyring)
        return create_commit(repo, wallet, "members", message, [head],
                             paths=(CONFIG_FILE, *((KEYRING_DIR,) if keyring is not None else ())),
                             weights_sha256=head_meta.weights_sha256)


def require_member_pubkey(pubkey: str) -> None:
    """Raise unless ``pubkey`` is a base58 wallet public key."""
    if not is_pubkey(pubkey):
        raise ConfigError(f"{pubkey!r} is not a wallet public key", "pass a base58 public key, e.g. from "
                          "`federity wallet show`")


def add_member(repo: Repository, wallet: Wallet, pubkey: str, role: str) -> CommitRecord:
    """Grant ``role`` to ``pubkey`` (or change the role it holds)."""
    require_member_pubkey(pubkey)
    parsed = Role.parse(role)
    return change_members(repo, wallet, {pubkey: parsed}, f"Grant {parsed.label} to {pubkey}")


def remove_member(repo: Repository, wallet: Wallet, pubkey: str) -> CommitRecord:
    """Revoke every role of ``pubkey``."""
    return change_members(repo, wallet, {pubkey: None}, f"Remove member {pubkey}")
