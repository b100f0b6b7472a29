"""``federity nft``: every main-line commit and every accepted update recorded as a Token-2022 NFT.

What to mint is derived from the history, so nothing is lost: every commit on main's first-parent line, and every
update an aggregate commit merged. A commit whose NFT is recorded in ``refs/notes/federity-nft`` (mint address,
ledger, minter, recipient, lamports spent) is done; every other one is *queued*. Operations never mint by
themselves: the command or flow that made a main-line commit takes the next step, :func:`mint_new_commits`, and a
ledger that cannot be reached leaves the commit standing and its NFT queued for ``federity nft sync`` or the next
round. Minting is idempotent per commit and minter (:mod:`federity.chain.nft`).

The genesis NFT is the repository: its holder on the ledger is the owner. Its address is derived from the genesis
commit's author (who mints it) and the commit, never read from the unsigned notes. The history says who holds it
too: the genesis author, until a ``members`` commit by the holder hands the repository over (``nft transfer``).
Owner-only actions need the wallet to be that holder by the history and, once minted, on the ledger (fail closed);
``verify`` checks the hand-over chain and, when the ledger can be read, that it ends at the ledger's holder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from federity.chain.nft import NftInfo, NftRecord
from federity.config import RepoConfig, Role
from federity.errors import ConfigError, FederityError, LedgerError, NftError, PermissionDeniedError
from federity.records import parse_nft_note
from federity.repo.commits import CommitRecord, read_commit, read_commits
from federity.repo.notes import NFT, read_note, read_notes, write_note

if TYPE_CHECKING:
    from federity.chain.ledger import Ledger
    from federity.identity import Wallet
    from federity.repo import Repository

log = logging.getLogger(__name__)


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

    minted = read_notes(repo, NFT, parse_nft_note)
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
    note = read_note(repo, NFT, commit, parse_nft_note)
    return note.mint if note else None


def sync(repo: Repository, wallet: Wallet) -> SyncReport:
    """Mint every queued NFT, oldest first, paid and signed by ``wallet``; an update's NFT goes to its author.

    Stops at the first ledger failure: what is left stays queued (``error`` says why) and nothing is lost."""
    require_minter(repo, wallet)
    return _mint_queued(repo, wallet)


def _mint_queued(repo: Repository, wallet: Wallet) -> SyncReport:
    """:func:`sync` without the role check (``nft transfer`` mints its hand-over commit with the seller's wallet).

    The genesis NFT is minted by the genesis author only (its address derives from the author's key): another
    wallet leaves it queued, says so, and mints the rest."""
    from federity.chain.nft import mint_nft

    report = SyncReport()
    waiting = queued(repo)
    if not waiting:
        return report
    try:
        ledger = _ledger(repo)
        for commit in waiting:
            assert commit.meta is not None  # queued() lists Federity commits only
            if commit.meta.kind == "genesis" and commit.meta.author != wallet.pubkey:
                report.error = (f"the genesis NFT is minted by the genesis author {commit.meta.author} (its address "
                                "derives from that wallet); run `federity nft sync` with that wallet")
                continue
            result = mint_nft(ledger, wallet, nft_record(repo, commit), recipient=commit.meta.author)
            note = {"mint": result.mint, "ledger": repo.config(commit.commit).ledger, "minter": wallet.pubkey,
                    "recipient": commit.meta.author, "lamports_spent": result.lamports_spent,
                    "signatures": list(result.signatures)}
            write_note(repo, NFT, commit.commit, note)
            report.minted.append({"commit": commit.commit, **note})
    except LedgerError as exc:
        report.error = f"{exc.message} ({exc.hint})"
    minted = {m["commit"] for m in report.minted}
    report.queued = [c.commit for c in waiting if c.commit not in minted]
    return report


def require_minter(repo: Repository, wallet: Wallet) -> None:
    """Raise unless ``wallet`` may mint: an owner or maintainer at main's head."""
    from federity.repo import MAIN_BRANCH

    role = repo.config(repo.git.resolve(MAIN_BRANCH)).role_of(wallet.pubkey)
    if role is None or role < Role.MAINTAINER:
        raise PermissionDeniedError(f"wallet {wallet.pubkey} is not an owner or maintainer, who mint the NFTs",
                                    "run `federity nft sync` with an owner's or maintainer's wallet (--wallet)")


def mint_new_commits(repo: Repository, wallet: Wallet) -> SyncReport:
    """The explicit step after an operation made a main-line commit (the CLI command or the round flow takes it;
    operations never mint by themselves): mint what is queued, and warn (never fail) when the ledger cannot be
    reached, so the commit stands and its NFT waits for ``federity nft sync``. Wallets that may not mint
    (contributors committing on their own branches) mint nothing."""
    try:
        require_minter(repo, wallet)
    except PermissionDeniedError:
        return SyncReport()
    report = sync(repo, wallet)
    if report.error:
        log.warning("%d NFT(s) queued, not minted: %s. Run `federity nft sync` when the ledger is reachable.",
                    len(report.queued), report.error)
    return report


def show(repo: Repository, rev: str) -> dict[str, Any]:
    """``rev``'s NFT as the ledger holds it (mint, owner, metadata), with the lamports its minting spent."""
    from federity.chain.nft import read_nft

    commit = repo.git.resolve(rev)
    note = read_note(repo, NFT, commit, parse_nft_note)
    root = genesis(repo)
    if commit == root.commit:  # the genesis NFT's address is derived, not read from the note
        mint, ledger = root.mint, _genesis_ledger(repo, root)
        note = note if note is not None and note.mint == mint else None
    else:
        mint, ledger = note.mint if note else None, _ledger(repo)
    if not mint:
        raise NftError(f"commit {commit[:12]} has no NFT yet",
                       "main-line commits and aggregated updates are minted; `federity nft sync` mints queued ones")
    info = read_nft(ledger, str(mint)).to_dict()
    return {"commit": commit, **info, "ledger": note.ledger if note else None,
            "lamports_spent": note.lamports_spent if note else None}


@dataclass(frozen=True)
class Genesis:
    """The root of main's first-parent line, and where its NFT must be: at the address derived from the genesis
    author's public key, the repository id and the commit (:func:`federity.chain.nft.mint_address`), all read
    from the signed genesis commit — never from a note."""

    commit: str
    author: str
    config: RepoConfig
    mint: str


def genesis(repo: Repository) -> Genesis:
    """The repository's genesis (the root of main's first-parent line) and its NFT's derived address."""
    from federity.chain.nft import mint_address as derive_mint_address
    from federity.repo import MAIN_BRANCH

    roots = repo.git.run("rev-list", "--first-parent", "--max-parents=0", MAIN_BRANCH).split()
    record = read_commit(repo, roots[-1])
    if record.meta is None or record.meta.kind != "genesis":
        raise NftError(f"the root {record.commit[:12]} of main is not a Federity genesis commit",
                       "run `federity verify`; this history is not a Federity repository's")
    config = repo.config(record.commit)
    try:
        mint = str(derive_mint_address(record.meta.author, config.id, record.commit))
    except ValueError:
        raise NftError(f"the genesis author {record.meta.author!r} is not a wallet public key",
                       "run `federity verify`; this history is not a Federity repository's") from None
    return Genesis(record.commit, record.meta.author, config, mint)


def _genesis_ledger(repo: Repository, root: Genesis) -> Ledger:
    from federity.chain.ledger import open_ledger

    return open_ledger(root.config.ledger)


def read_genesis_nft(repo: Repository, root: Genesis | None = None) -> NftInfo | None:
    """The genesis NFT at its derived address, or ``None`` while it is not minted (no account, or a mint that was
    interrupted before its token existed). Raises ``LedgerError`` when the ledger cannot be read, and
    ``NftError`` when the account there is not a finished NFT recording the genesis commit."""
    from federity.chain.nft import nft_mismatches, read_nft

    root = root or genesis(repo)
    try:
        info = read_nft(_genesis_ledger(repo, root), root.mint)
    except NftError as exc:
        if exc.message.startswith("no NFT at"):
            return None
        raise
    if info.supply == 0 and info.owner is None:
        return None
    problems = nft_mismatches(info, nft_record(repo, read_commit(repo, root.commit)))
    if problems:
        raise NftError(f"the genesis NFT at {root.mint} does not record the genesis commit: {'; '.join(problems)}",
                       "run `federity verify`; no owner-only action is allowed until this is resolved")
    return info


def handover_changes(config: RepoConfig, seller: str, buyer: str) -> dict[str, Role | None]:
    """The membership change a sale of the genesis NFT makes: ``buyer`` becomes the sole owner, ``seller`` is
    removed, and every other owner becomes a maintainer (the buyer may grant or revoke roles afterwards)."""
    changes: dict[str, Role | None] = {pubkey: Role.MAINTAINER for pubkey, role in config.members.items()
                                       if role == Role.OWNER and pubkey not in (seller, buyer)}
    changes[seller] = None
    changes[buyer] = Role.OWNER
    return changes


def is_handover(holder: str, author: str, before: dict[str, Role], after: dict[str, Role]) -> str | None:
    """The new holder when the members change from ``before`` to ``after`` signed by ``author`` hands the
    repository over from ``holder`` (the holder leaves, one other wallet is the sole owner), else ``None``."""
    owners = [pubkey for pubkey, role in after.items() if role == Role.OWNER]
    if author == holder and before.get(holder) == Role.OWNER and holder not in after and len(owners) == 1:
        return owners[0]
    return None


def history_holder(repo: Repository) -> tuple[str, list[tuple[str, str]]]:
    """Who holds the genesis NFT at main's head by the signed history, and (commit, reason) for every members
    commit on main's first-parent line that breaks the hand-over chain.

    The chain starts at the genesis author (the genesis NFT is minted to it). A ``members`` commit signed by the
    holder that removes the holder and leaves one new sole owner (:func:`is_handover`, what ``nft transfer``
    makes) hands it to that owner. Every other members change only an owner may make must be signed by the
    holder of its time, and the holder must stay an owner."""
    from federity.repo import MAIN_BRANCH
    from federity.repo.members import permission_problem

    root = genesis(repo)
    holder, problems = root.author, []
    for record in reversed(read_commits(repo, "--first-parent", MAIN_BRANCH)):
        if not record.parents or record.meta is None or record.meta.kind != "members":
            continue
        commit = record.commit
        try:
            before, after = repo.config(record.parents[0]).members, repo.config(commit).members
        except FederityError:
            continue  # verify's config check names an unreadable federity.yaml
        author = record.meta.author
        new_holder = is_handover(holder, author, before, after)
        if new_holder is not None:
            holder = new_holder
            continue
        if permission_problem(Role.MAINTAINER, before, after) and author != holder:
            problems.append((commit, f"an owner-only members change signed by {author}, who did not hold the "
                                     f"genesis NFT at this point ({holder} did, by the history)"))
        if after.get(holder) != Role.OWNER:
            problems.append((commit, f"the genesis NFT's holder {holder} lost the owner role without handing the "
                                     "repository over (`federity nft transfer`)"))
    return holder, problems


def repository_holder(repo: Repository) -> str | None:
    """The wallet holding the repository's genesis NFT on the ledger, or ``None`` while it is not minted.

    Raises ``LedgerError`` when the ledger cannot be read."""
    info = read_genesis_nft(repo)
    return None if info is None else info.owner


def require_repository_holder(repo: Repository, wallet: Wallet) -> None:
    """Raise ``PermissionDeniedError`` unless ``wallet`` holds the genesis NFT: the check of every owner-only action.

    ``wallet`` must be the holder by the signed history (:func:`history_holder`) and, once the NFT is minted, on
    the ledger, read at the address derived from the genesis (the notes are not trusted). Fails closed: a ledger
    that cannot be read, or a genesis NFT that does not record the genesis, refuses the action."""
    holder, _ = history_holder(repo)
    if holder != wallet.pubkey:
        raise PermissionDeniedError(
            f"wallet {wallet.pubkey} does not hold the repository's genesis NFT ({holder} does, by the history), "
            "so it is not the owner", "act with the holder's wallet, or ask the holder to `federity nft transfer` "
            "the genesis commit")
    try:
        on_ledger = repository_holder(repo)
    except LedgerError as exc:
        raise PermissionDeniedError(
            f"cannot check that wallet {wallet.pubkey} holds the repository's genesis NFT: {exc.message}",
            "owner-only actions wait until the ledger can be read; retry then") from None
    except NftError as exc:
        raise PermissionDeniedError(f"cannot check who owns the repository: {exc.message}", exc.hint) from None
    if on_ledger is not None and on_ledger != wallet.pubkey:
        raise PermissionDeniedError(
            f"wallet {wallet.pubkey} does not hold the repository's genesis NFT ({on_ledger} does, on the ledger), "
            "so it is not the owner", "the NFT was transferred outside `federity nft transfer`: transfer it back to "
            f"{wallet.pubkey}, who then runs `federity nft transfer` so the history hands the repository over")


def _require_main_up_to_date(repo: Repository) -> None:
    """Refuse a hand-over that origin's main could not fast-forward to (it would be published after the sale)."""
    from federity.git import GitError
    from federity.repo import MAIN_BRANCH

    try:
        repo.git.run("remote", "get-url", "origin")
    except GitError:
        return
    listed = repo.git.remote_run("ls-remote", "origin", f"refs/heads/{MAIN_BRANCH}").split()
    if listed and not (repo.git.try_resolve(listed[0]) and repo.git.is_ancestor(listed[0], repo.head())):
        raise ConfigError("origin's main has commits this repository does not have, so the hand-over could not "
                          "be published after the sale", "run `federity pull`, then transfer again")


def transfer(repo: Repository, wallet: Wallet, rev: str, to: str) -> dict[str, Any]:
    """Transfer ``rev``'s NFT from ``wallet`` (its holder) to ``to``.

    The genesis NFT is the repository, and selling it hands over full control: a signed ``members`` commit on
    main (:func:`handover_changes`: ``to`` the sole owner, ``wallet`` removed, other owners maintainers) is made
    before the ledger transfer, in one transaction that undoes it if the transfer fails. After the transfer the
    commit's NFT is minted (by ``wallet``) and main and the notes are pushed to origin, if there is one; a push
    that fails then only warns (``pushed`` is false: run ``federity push``), as the sale has happened."""
    from federity.chain.nft import read_nft, transfer_nft
    from federity.repo import MAIN_BRANCH
    from federity.repo.members import change_members, require_member_pubkey
    from federity.repo.sync import push

    require_member_pubkey(to)
    commit = repo.git.resolve(rev)
    root = genesis(repo)
    mint = root.mint if commit == root.commit else mint_address(repo, commit)
    if mint is None:
        raise NftError(f"commit {commit[:12]} has no NFT yet", "run `federity nft sync` first")
    ledger = _genesis_ledger(repo, root) if commit == root.commit else _ledger(repo)
    holder = read_nft(ledger, mint).owner
    if holder != wallet.pubkey:
        raise PermissionDeniedError(f"{wallet.pubkey} does not hold the NFT of {commit[:12]}; {holder} does",
                                    "transfer it with the holder's wallet (--wallet)")
    result: dict[str, Any] = {"commit": commit, "mint": mint, "owner": to, "members_commit": None, "pushed": None}
    if commit != root.commit:
        result["signature"] = transfer_nft(ledger, wallet, mint, to)
        return result
    if to == wallet.pubkey:
        raise ConfigError(f"{to} already holds the genesis NFT", "name the buyer's wallet with --to")
    if repo.require_branch() != MAIN_BRANCH:
        raise ConfigError("the repository's hand-over is a commit on main, and another branch is checked out",
                          "`federity checkout main`, then transfer again")
    require_repository_holder(repo, wallet)
    _require_main_up_to_date(repo)
    with repo.transaction():
        members = change_members(repo, wallet, handover_changes(repo.config(repo.head()), wallet.pubkey, to),
                                 f"Transfer ownership to {to}", check_holder=False)
        result["signature"] = transfer_nft(ledger, wallet, mint, to)
    result["members_commit"] = members.commit
    report = _mint_queued(repo, wallet)
    if report.error:
        log.warning("%d NFT(s) queued, not minted: %s", len(report.queued), report.error)
    try:
        repo.git.run("remote", "get-url", "origin")
    except FederityError:
        return result
    try:
        push(repo)
        result["pushed"] = True
    except FederityError as exc:
        result["pushed"] = False
        log.warning("the repository was handed over but not published: %s. Run `federity push`.", exc.message)
    return result


def verify_nfts(repo: Repository) -> tuple[list[tuple[str, str]], list[str]]:
    """``verify``'s NFT check: ((commit, reason) for every minted NFT whose on-chain state disagrees with its
    commit, and the reason the NFTs could not be checked when the ledger cannot be read)."""
    from federity.chain.nft import nft_mismatches, read_nft

    problems: list[tuple[str, str]] = []
    minted = read_notes(repo, NFT, parse_nft_note)
    if not minted:
        return problems, []
    try:
        ledger = _ledger(repo)
        for commit, note in minted.items():
            mint = note.mint
            try:
                info = read_nft(ledger, mint)
            except (NftError, ValueError) as exc:
                problems.append((commit, getattr(exc, "message", f"its recorded mint {mint!r} is not an address")))
                continue
            reasons = nft_mismatches(info, nft_record(repo, read_commit(repo, commit)))
            problems += [(commit, reason) for reason in reasons]
    except LedgerError as exc:
        return problems, [f"the ledger could not be read ({exc.message}), so the {len(minted)} recorded NFT(s) "
                          "are not checked against their commits"]
    return problems, []


def ownership_problems(repo: Repository) -> tuple[list[tuple[str, str]], list[str]]:
    """``verify``'s ownership check: ((commit, reason) failures, reasons it could not be checked).

    Offline, always: the hand-over chain of main's first-parent line (:func:`history_holder`), and a genesis NFT
    note that names another mint than the one derived from the genesis. With the ledger: the genesis NFT exists at
    the derived address and records the genesis commit, its holder is the holder the history ends at (so
    owner-only changes after the last hand-over were signed by the holder), and it is an owner in federity.yaml at
    main's head. A ledger that cannot be read, or that has no genesis NFT (not minted yet, or an embedded ledger of
    another machine), makes the ledger part unchecked, with the reason. The ledger keeps no history: that each
    earlier hand-over happened on chain at its commit is not checked, only where the chain ends."""
    from federity.repo import MAIN_BRANCH

    try:
        root = genesis(repo)
    except FederityError as exc:
        return [], [f"no genesis to check ownership against: {exc.message}"]
    holder, problems = history_holder(repo)
    note = read_note(repo, NFT, root.commit, parse_nft_note)
    note_mint = note.mint if note else None
    if note_mint is not None and note_mint != root.mint:
        problems.append((root.commit, f"the NFT note names {note_mint!r} as the genesis NFT, but the genesis NFT is "
                                      f"at {root.mint} (derived from the genesis author {root.author}); the note is "
                                      "not trusted"))
    try:
        info = read_genesis_nft(repo, root)
    except LedgerError as exc:
        return problems, [f"the {root.config.ledger} ledger could not be read ({exc.message}), so the genesis "
                          "NFT's holder is not checked against the owners; the hand-over chain was checked offline"]
    except NftError as exc:
        return [*problems, (root.commit, exc.message)], []
    except FederityError as exc:
        return problems, [f"the genesis NFT could not be read: {exc.message}"]
    if info is None:
        return problems, [f"no genesis NFT at {root.mint} on the {root.config.ledger} ledger (not minted yet, or "
                          "minted on another machine's embedded ledger), so its holder is not checked"]
    head = repo.git.resolve(MAIN_BRANCH)
    if info.owner != holder:
        problems.append((head, f"the genesis NFT is held by {info.owner} on the ledger, but by the history its "
                               f"holder is {holder}: it changed hands outside `federity nft transfer`, and "
                               f"owner-only changes since were signed by a wallet that no longer held it"))
    try:
        owners = {k for k, role in repo.config(head).members.items() if role == Role.OWNER}
    except FederityError:
        return problems, []
    if info.owner not in owners:
        problems.append((head, f"the genesis NFT's holder {info.owner} is not an owner in federity.yaml at main's "
                               "head"))
    return problems, []
