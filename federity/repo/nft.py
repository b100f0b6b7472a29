"""``federity nft``: every main-line commit and every accepted update recorded as a Token-2022 NFT.

What to mint is derived from the history, so nothing is lost: every commit on main's first-parent line, and every
update an aggregate commit merged. A commit whose NFT is recorded in ``refs/notes/federity-nft`` (mint address,
ledger, minter, recipient, lamports spent) is done; every other one is *queued*. Operations that make a main-line
commit mint right after it, and a ledger that cannot be reached leaves the commit standing and its NFT queued for
``federity nft sync`` or the next round. Minting is idempotent per commit and minter (:mod:`federity.chain.nft`).

The genesis NFT is the repository: its holder on the ledger is the owner, and owner-only actions check it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from federity.chain.nft import NftRecord
from federity.config import Role
from federity.errors import LedgerError, NftError, PermissionDeniedError
from federity.repo.commits import CommitRecord, read_commit
from federity.repo.notes import NFT, read_note, read_notes, write_note

if TYPE_CHECKING:
    from federity.chain.ledger import Ledger
    from federity.identity import Wallet
    from federity.repo import Repository

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class SyncReport:
    """What ``nft sync`` did: commits minted now, commits still queued, and why they are."""

    minted: list[dict[str, Any]] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"minted": self.minted, "queued": self.queued, "error": self.error}


def _ledger(repo: Repository) -> Ledger:
    from federity.chain.ledger import open_ledger
    from federity.repo import MAIN_BRANCH

    return open_ledger(repo.config(repo.git.resolve(MAIN_BRANCH)).ledger)


def nft_record(repo: Repository, commit: CommitRecord) -> NftRecord:
    """What ``commit``'s NFT must record."""
    meta = commit.meta
    if meta is None:
        raise NftError(f"commit {commit.commit[:12]} carries no Federity metadata", "mint Federity commits only")
    config = repo.config(commit.commit)
    return NftRecord(repository=config.id, name=config.name, commit=commit.commit, kind=meta.kind,
                     author=meta.author, weights_sha256=meta.weights_sha256, proof_sha256=meta.proof_sha256,
                     round=meta.round, parents=tuple(commit.parents))


def queued(repo: Repository) -> list[CommitRecord]:
    """Commits that get an NFT but have none recorded yet, oldest first: main's first-parent line, and the
    updates its aggregate commits merged (before the aggregate)."""
    from federity.repo import MAIN_BRANCH

    minted = read_notes(repo, NFT)
    waiting: list[CommitRecord] = []
    for line in repo.git.run("rev-list", "--first-parent", "--reverse", "--parents", MAIN_BRANCH).splitlines():
        commit, *parents = line.split()
        for candidate in [*parents[1:], commit]:
            if candidate in minted:
                continue
            record = read_commit(repo, candidate)
            if record.meta is not None and (candidate == commit or record.meta.kind == "update"):
                waiting.append(record)
    return waiting


def mint_address(repo: Repository, commit: str) -> str | None:
    """The mint recorded for ``commit``, or ``None`` when its NFT is queued (or it gets none)."""
    return (read_note(repo, NFT, commit) or {}).get("mint")


def sync(repo: Repository, wallet: Wallet) -> SyncReport:
    """Mint every queued NFT, oldest first, paid and signed by ``wallet``; an update's NFT goes to its author.

    Stops at the first ledger failure: what is left stays queued (``error`` says why) and nothing is lost."""
    from federity.chain.nft import mint_nft

    report = SyncReport()
    require_minter(repo, wallet)
    waiting = queued(repo)
    if not waiting:
        return report
    try:
        ledger = _ledger(repo)
        for commit in waiting:
            result = mint_nft(ledger, wallet, nft_record(repo, commit), recipient=commit.meta.author)
            note = {"mint": result.mint, "ledger": repo.config(commit.commit).ledger, "minter": wallet.pubkey,
                    "recipient": commit.meta.author, "lamports_spent": result.lamports_spent,
                    "signatures": list(result.signatures)}
            write_note(repo, NFT, commit.commit, note)
            report.minted.append({"commit": commit.commit, **note})
    except LedgerError as exc:
        report.error = f"{exc.message} ({exc.hint})"
    report.queued = [c.commit for c in waiting[len(report.minted):]]
    return report


def require_minter(repo: Repository, wallet: Wallet) -> None:
    """Raise unless ``wallet`` may mint: an owner or maintainer at main's head."""
    from federity.repo import MAIN_BRANCH

    role = repo.config(repo.git.resolve(MAIN_BRANCH)).role_of(wallet.pubkey)
    if role is None or role < Role.MAINTAINER:
        raise PermissionDeniedError(f"wallet {wallet.pubkey} is not an owner or maintainer, who mint the NFTs",
                                    "run `federity nft sync` with an owner's or maintainer's wallet (--wallet)")


def mint_new_commits(repo: Repository, wallet: Wallet) -> SyncReport:
    """After an operation made a main-line commit: mint what is queued, and warn (never fail) when the ledger
    cannot be reached, so the commit stands and its NFT waits for ``federity nft sync``. Wallets that may not
    mint (contributors committing on their own branches) mint nothing."""
    try:
        require_minter(repo, wallet)
    except PermissionDeniedError:
        return SyncReport()
    report = sync(repo, wallet)
    if report.error:
        log.warning("%d NFT(s) queued, not minted: %s. Run `federity nft sync` when the ledger is reachable.",
                    len(report.queued), report.error)
    return report


def mints_main_line(operation: Callable[..., T]) -> Callable[..., T]:
    """Wrap ``operation(repo, wallet, …)``, which may make a main-line commit, to mint what is queued after it."""

    @functools.wraps(operation)
    def run(repo: Repository, wallet: Wallet, *args: Any, **kwargs: Any) -> T:
        result = operation(repo, wallet, *args, **kwargs)
        mint_new_commits(repo, wallet)
        return result

    return run


def show(repo: Repository, rev: str) -> dict[str, Any]:
    """``rev``'s NFT as the ledger holds it (mint, owner, metadata), with the lamports its minting spent."""
    from federity.chain.nft import read_nft

    commit = repo.git.resolve(rev)
    note = read_note(repo, NFT, commit)
    if not note:
        raise NftError(f"commit {commit[:12]} has no NFT yet",
                       "main-line commits and aggregated updates are minted; `federity nft sync` mints queued ones")
    info = read_nft(_ledger(repo), note["mint"]).to_dict()
    return {"commit": commit, **info, "ledger": note.get("ledger"), "lamports_spent": note.get("lamports_spent")}


def transfer(repo: Repository, wallet: Wallet, rev: str, to: str) -> dict[str, Any]:
    """Transfer ``rev``'s NFT from ``wallet`` (its holder) to ``to``.

    The genesis NFT is the repository: transferring it also makes ``to`` an owner in ``federity.yaml`` and the
    previous holder a maintainer, in a signed ``members`` commit made before the ledger transfer and undone if the
    transfer fails, so the history and the ledger agree."""
    from federity.chain.nft import read_nft, transfer_nft
    from federity.repo.members import change_members, require_member_pubkey

    require_member_pubkey(to)
    commit = repo.git.resolve(rev)
    mint = mint_address(repo, commit)
    if mint is None:
        raise NftError(f"commit {commit[:12]} has no NFT yet", "run `federity nft sync` first")
    ledger = _ledger(repo)
    holder = read_nft(ledger, mint).owner
    if holder != wallet.pubkey:
        raise PermissionDeniedError(f"{wallet.pubkey} does not hold the NFT of {commit[:12]}; {holder} does",
                                    "transfer it with the holder's wallet (--wallet)")
    members_commit = None
    if read_commit(repo, commit).meta.kind == "genesis":  # type: ignore[union-attr]
        head = repo.head()
        members_commit = change_members(repo, wallet, {to: Role.OWNER, wallet.pubkey: Role.MAINTAINER},
                                        f"Transfer ownership to {to}", check_holder=False)
    try:
        signature = transfer_nft(ledger, wallet, mint, to)
    except BaseException:
        if members_commit is not None:
            repo.git.run("reset", "--quiet", "--hard", head)
        raise
    result = {"commit": commit, "mint": mint, "owner": to, "signature": signature,
              "members_commit": members_commit.commit if members_commit else None}
    if members_commit is not None:
        mint_new_commits(repo, wallet)
    return result


def repository_holder(repo: Repository) -> str | None:
    """The wallet holding the repository's genesis NFT, or ``None`` when it is not minted yet."""
    from federity.chain.nft import read_nft

    genesis = repo.git.run("rev-list", "--max-parents=0", "HEAD").split()[0]
    mint = mint_address(repo, genesis)
    return None if mint is None else read_nft(_ledger(repo), mint).owner


def require_repository_holder(repo: Repository, wallet: Wallet) -> None:
    """Raise unless ``wallet`` holds the genesis NFT (when it is minted): the check of every owner-only action.

    Fails closed: an unreachable ledger refuses the action."""
    holder = repository_holder(repo)
    if holder is not None and holder != wallet.pubkey:
        raise PermissionDeniedError(
            f"wallet {wallet.pubkey} does not hold the repository's genesis NFT ({holder} does), so it is not the "
            "owner", "act with the holder's wallet, or ask the holder to `federity nft transfer` the genesis commit")


def verify_nfts(repo: Repository) -> list[tuple[str, str]]:
    """(commit, reason) for every minted NFT whose on-chain state disagrees with its commit."""
    from federity.chain.nft import nft_mismatches, read_nft

    problems: list[tuple[str, str]] = []
    minted = read_notes(repo, NFT)
    if not minted:
        return problems
    try:
        ledger = _ledger(repo)
        for commit, note in minted.items():
            mint = note.get("mint")
            try:
                info = read_nft(ledger, str(mint))
            except (NftError, ValueError) as exc:
                problems.append((commit, getattr(exc, "message", f"its recorded mint {mint!r} is not an address")))
                continue
            reasons = nft_mismatches(info, nft_record(repo, read_commit(repo, commit)))
            problems += [(commit, reason) for reason in reasons]
    except LedgerError as exc:
        problems.append((next(iter(minted)), f"the ledger could not be read: {exc.message}"))
    return problems
