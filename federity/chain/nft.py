"""Commit NFTs: mint one per commit, read it back, transfer it.

Each NFT is a Token-2022 mint with decimals 0 and supply 1, whose metadata-pointer extension points at the mint
itself and whose token-metadata extension records the commit (:meth:`NftRecord.fields`). Minting ends by revoking
the mint authority (no second token, ever) and setting the metadata's update authority to none (immutable).

Minting is idempotent per commit: the mint's address is derived from the minter's public key, the repository id and
the commit (:func:`mint_address`, Solana's ``create_with_seed``), so a retry after a crash finds the same mint,
finishes whatever steps are missing, and returns it; a complete mint costs nothing the second time. Anyone can
derive the address, and only the minter can create an account there (the system program requires the base key's
signature): the genesis NFT of a repository is the one at the address derived from the genesis commit's author.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from solders.instruction import Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import (
    AllocateWithSeedParams,
    CreateAccountWithSeedParams,
    TransferParams,
    allocate_with_seed,
    create_account_with_seed,
    transfer,
)
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.instructions import (
    AuthorityType,
    create_idempotent_associated_token_account,
    get_associated_token_address,
    initialize_mint2,
    mint_to_checked,
    set_authority,
    transfer_checked,
)
from spl.token.models import InitializeMint2Params, MintToCheckedParams, SetAuthorityParams, TransferCheckedParams

from federity.chain import token_metadata
from federity.chain.ledger import Ledger
from federity.chain.token2022 import (
    MintState,
    initialize_metadata_pointer,
    mint_len_with_metadata,
    mint_len_with_pointer,
    parse_mint,
    parse_token_account,
)
from federity.chain.token_metadata import TokenMetadata
from federity.chain.transactions import pack, sign
from federity.errors import NftError, PermissionDeniedError
from federity.identity import Wallet

SYMBOL = "FDRT"
SHORT_COMMIT = 7
TOKEN_ACCOUNT_LEN = 170  # a Token-2022 associated token account: 165 bytes + account type + ImmutableOwner TLV
FEE_RESERVE = 10_000  # lamports per transaction kept for signature fees (5,000 per signature, two signers at most)
_MINT_SEED_DOMAIN = b"federity/nft-mint/v2"
_SEED_LEN = 32


@dataclass(frozen=True)
class NftRecord:
    """What a commit's NFT records on chain."""

    repository: str  # the repository id from federity.yaml
    name: str  # the repository's name
    commit: str
    kind: str
    author: str
    weights_sha256: str
    proof_sha256: str | None = None
    round: int = 0
    parents: tuple[str, ...] = ()
    uri: str = ""

    @property
    def token_name(self) -> str:
        """The token's name: ``<repo>@<short commit>``."""
        return f"{self.name}@{self.commit[:SHORT_COMMIT]}"

    def fields(self) -> dict[str, str]:
        """The additional metadata fields, in the order they are written."""
        return {
            "repository": self.repository,
            "commit": self.commit,
            "kind": self.kind,
            "round": str(self.round),
            "author": self.author,
            "weights_sha256": self.weights_sha256,
            "proof_sha256": self.proof_sha256 or "",
            "parents": ",".join(self.parents),
        }


@dataclass(frozen=True)
class MintResult:
    """The outcome of :func:`mint_nft`."""

    mint: str
    created: bool  # False if the NFT already existed complete and nothing was sent
    signatures: list[str] = field(default_factory=list)
    transaction_sizes: list[int] = field(default_factory=list)
    lamports_spent: int = 0  # the payer's balance before minus after: rent locked in the accounts plus fees


@dataclass(frozen=True)
class NftInfo:
    """An NFT as read from a ledger."""

    mint: str
    program: str
    owner: str | None  # the wallet holding the token; None if no account holds it
    holder_account: str | None
    supply: int
    decimals: int
    mint_authority: str | None
    metadata: TokenMetadata | None
    rent_lamports: int  # lamports held by the mint and the holder's token account

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of ``federity nft show``: ``mint``, ``owner``, ``metadata`` and the rest."""
        meta = self.metadata
        return {
            "mint": self.mint,
            "owner": self.owner,
            "program": self.program,
            "supply": self.supply,
            "decimals": self.decimals,
            "mint_authority": self.mint_authority,
            "rent_lamports": self.rent_lamports,
            "metadata": None if meta is None else {
                "name": meta.name,
                "symbol": meta.symbol,
                "uri": meta.uri,
                "update_authority": str(meta.update_authority) if meta.update_authority else None,
                "fields": dict(meta.additional),
            },
        }


def mint_seed(repository: str, commit: str) -> str:
    """The ``create_with_seed`` seed of ``commit``'s mint: 32 hex characters of sha256 over the repository id and
    the commit (a seed is at most 32 bytes)."""
    digest = hashlib.sha256(b"\0".join([_MINT_SEED_DOMAIN, repository.encode(), commit.encode()])).hexdigest()
    return digest[:_SEED_LEN]


def mint_address(minter: str | Pubkey, repository: str, commit: str) -> Pubkey:
    """The address of ``commit``'s NFT when ``minter`` mints it: ``create_with_seed(minter, seed, Token-2022)``.

    Public: a verifier derives it from the minter's public key alone, and only the minter can create it."""
    base = minter if isinstance(minter, Pubkey) else Pubkey.from_string(minter)
    return Pubkey.create_with_seed(base, mint_seed(repository, commit), TOKEN_2022_PROGRAM_ID)


def _fund(ledger: Ledger, payer: Pubkey, lamports: int) -> None:
    """Make sure ``payer`` can spend ``lamports`` and stay rent-exempt itself (a payer may not end below that)."""
    ledger.fund(payer, lamports + ledger.rent_exempt_minimum(0))


def _prefunded(ledger: Ledger, address: Pubkey) -> int:
    """Lamports someone sent to ``address`` before its mint was created (a system account without data), else 0."""
    account = ledger.get_account(address)
    if account is None or account.owner != SYSTEM_PROGRAM_ID or bytes(account.data):
        return 0
    return account.lamports


def _read_mint(ledger: Ledger, mint: Pubkey) -> MintState | None:
    """The mint at ``mint``; ``None`` while there is none (no account, or only lamports sent to the address)."""
    account = ledger.get_account(mint)
    if account is None or (account.owner == SYSTEM_PROGRAM_ID and not bytes(account.data)):
        return None
    try:
        return parse_mint(mint, account)
    except ValueError as e:
        raise NftError(f"the account {mint} is not an NFT mint: {e}", "check the mint address") from e


def _mismatch(mint: Pubkey, what: str, found: object, wanted: object) -> NftError:
    return NftError(
        f"the NFT {mint} already exists with {what} {found!r}, not {wanted!r}",
        "the NFT of a commit is immutable; `federity verify` reports the mismatch — check which record is right",
    )


def _create_steps(payer: Pubkey, mint: Pubkey, seed: str, lamports: int, prefunded: int) -> list[Instruction]:
    """Create the mint account at ``create_with_seed(payer, seed, Token-2022)`` funded with ``lamports``. Lamports
    already sent to the address (anyone may send some, which would make ``create_account_with_seed`` fail) are
    topped up, and the account allocated and assigned to Token-2022 in place."""
    if not prefunded:
        return [create_account_with_seed(CreateAccountWithSeedParams(
            from_pubkey=payer, to_pubkey=mint, base=payer, seed=seed, lamports=lamports,
            space=mint_len_with_pointer(), owner=TOKEN_2022_PROGRAM_ID))]
    steps = []
    if lamports > prefunded:
        steps.append(transfer(TransferParams(from_pubkey=payer, to_pubkey=mint, lamports=lamports - prefunded)))
    steps.append(allocate_with_seed(AllocateWithSeedParams(address=mint, base=payer, seed=seed,
                                                           space=mint_len_with_pointer(),
                                                           owner=TOKEN_2022_PROGRAM_ID)))
    return steps


def _mint_steps(ledger: Ledger, state: MintState | None, wanted: TokenMetadata, payer: Pubkey,
                recipient: Pubkey, seed: str, prefunded: int = 0) -> list[list[Instruction]]:
    """The instruction groups still needed to bring ``state`` (None: no account yet) to a finished NFT."""
    mint = wanted.mint
    groups: list[list[Instruction]] = []
    if state is None:
        lamports = ledger.rent_exempt_minimum(mint_len_with_metadata(wanted))
        groups.append([
            *_create_steps(payer, mint, seed, lamports, prefunded),
            initialize_metadata_pointer(mint, None, mint),
            initialize_mint2(InitializeMint2Params(decimals=0, program_id=TOKEN_2022_PROGRAM_ID, mint=mint,
                                                   mint_authority=payer)),
            token_metadata.initialize(TOKEN_2022_PROGRAM_ID, mint, payer, mint, payer,
                                      wanted.name, wanted.symbol, wanted.uri),
        ])
        current = TokenMetadata(payer, mint, wanted.name, wanted.symbol, wanted.uri)
        supply, mint_authority = 0, payer
    else:
        if state.program != TOKEN_2022_PROGRAM_ID or state.metadata is None:
            raise _mismatch(mint, "program", str(state.program), "a Token-2022 mint with metadata")
        current, supply, mint_authority = state.metadata, state.supply, state.mint_authority
        for attr in ("name", "symbol", "uri"):
            if getattr(current, attr) != getattr(wanted, attr):
                raise _mismatch(mint, attr, getattr(current, attr), getattr(wanted, attr))
        extra = set(current.additional) - set(wanted.additional)
        if extra:
            raise _mismatch(mint, "fields", sorted(extra), sorted(wanted.additional))
    for key, value in wanted.additional.items():
        if current.additional.get(key) != value:
            if current.update_authority != payer:
                raise _mismatch(mint, f"field {key}", current.additional.get(key), value)
            groups.append([token_metadata.update_field(TOKEN_2022_PROGRAM_ID, mint, payer, key, value)])
    if supply == 0:
        if mint_authority != payer:
            raise _mismatch(mint, "supply", 0, 1)
        ata = get_associated_token_address(recipient, mint, TOKEN_2022_PROGRAM_ID)
        groups.append([
            create_idempotent_associated_token_account(payer, recipient, mint, TOKEN_2022_PROGRAM_ID),
            mint_to_checked(MintToCheckedParams(program_id=TOKEN_2022_PROGRAM_ID, mint=mint, dest=ata,
                                                mint_authority=payer, amount=1, decimals=0)),
        ])
    if mint_authority is not None:
        groups.append([set_authority(SetAuthorityParams(program_id=TOKEN_2022_PROGRAM_ID, account=mint,
                                                        authority=AuthorityType.MINT_TOKENS,
                                                        current_authority=payer, new_authority=None))])
    if current.update_authority is not None:
        groups.append([token_metadata.update_authority(TOKEN_2022_PROGRAM_ID, mint, payer, None)])
    return groups


def mint_nft(ledger: Ledger, minter: Wallet, record: NftRecord, recipient: str | None = None) -> MintResult:
    """Mint ``record``'s NFT to ``recipient`` (default: the minter), paid and signed by ``minter``.

    Idempotent: if the commit's mint exists, missing steps are finished and a complete, matching NFT is returned
    as it is (``created=False``, nothing spent). An existing NFT with other metadata raises ``NftError``.
    """
    payer = minter.keypair
    mint, seed = mint_address(payer.pubkey(), record.repository, record.commit), mint_seed(record.repository,
                                                                                         record.commit)
    wanted = TokenMetadata(None, mint, record.token_name, SYMBOL, record.uri, record.fields())
    owner = Pubkey.from_string(recipient) if recipient else payer.pubkey()
    with ledger.session():
        state = _read_mint(ledger, mint)
        prefunded = _prefunded(ledger, mint) if state is None else 0
        groups = _mint_steps(ledger, state, wanted, payer.pubkey(), owner, seed, prefunded)
        if not groups:
            return MintResult(str(mint), created=False)
        batches = pack(groups, payer.pubkey())
        needed = FEE_RESERVE * len(batches) + ledger.rent_exempt_minimum(TOKEN_ACCOUNT_LEN)
        if state is None:
            needed += ledger.rent_exempt_minimum(mint_len_with_metadata(wanted))
        _fund(ledger, payer.pubkey(), needed)
        before = ledger.get_balance(payer.pubkey())
        signatures, sizes = [], []
        for batch in batches:
            transaction = sign(batch, payer, [], ledger.latest_blockhash())
            signatures.append(str(ledger.send(transaction)))
            sizes.append(len(bytes(transaction)))
        spent = before - ledger.get_balance(payer.pubkey())
    return MintResult(str(mint), created=True, signatures=signatures, transaction_sizes=sizes,
                      lamports_spent=spent)


def read_nft(ledger: Ledger, mint: str) -> NftInfo:
    """Read the NFT at ``mint``: its mint state, metadata, and the wallet currently holding the token."""
    address = Pubkey.from_string(mint)
    with ledger.session():
        state = _read_mint(ledger, address)
        if state is None:
            raise NftError(
                f"no NFT at {mint} on the {ledger.name} ledger",
                "check the mint address and the repository's ledger setting; "
                "a queued mint lands with `federity nft sync`",
            )
        holders = ledger.token_accounts(address)
    owner = holder_account = None
    rent = state.lamports
    if holders:
        holder_address, account = holders[0]
        owner, holder_account = str(parse_token_account(account).owner), str(holder_address)
        rent += account.lamports
    return NftInfo(
        mint=mint,
        program=str(state.program),
        owner=owner,
        holder_account=holder_account,
        supply=state.supply,
        decimals=state.decimals,
        mint_authority=str(state.mint_authority) if state.mint_authority else None,
        metadata=state.metadata,
        rent_lamports=rent,
    )


def transfer_nft(ledger: Ledger, holder: Wallet, mint: str, to: str) -> str:
    """Transfer the NFT at ``mint`` from ``holder`` (who must hold it) to the wallet ``to``; returns the signature."""
    address, recipient = Pubkey.from_string(mint), Pubkey.from_string(to)
    payer = holder.keypair
    with ledger.session():
        info = read_nft(ledger, mint)
        if info.owner != holder.pubkey or info.holder_account is None:
            raise PermissionDeniedError(
                f"{holder.pubkey} does not hold the NFT {mint}; {info.owner or 'nobody'} does",
                "run the transfer with the holder's wallet (--wallet or FEDERITY_WALLET)",
            )
        dest = get_associated_token_address(recipient, address, TOKEN_2022_PROGRAM_ID)
        instructions = [
            create_idempotent_associated_token_account(payer.pubkey(), recipient, address, TOKEN_2022_PROGRAM_ID),
            transfer_checked(TransferCheckedParams(
                program_id=TOKEN_2022_PROGRAM_ID, source=Pubkey.from_string(info.holder_account), mint=address,
                dest=dest, owner=payer.pubkey(), amount=1, decimals=0,
            )),
        ]
        _fund(ledger, payer.pubkey(), FEE_RESERVE + ledger.rent_exempt_minimum(TOKEN_ACCOUNT_LEN))
        return str(ledger.send(sign(instructions, payer, [], ledger.latest_blockhash())))


def nft_mismatches(info: NftInfo, record: NftRecord) -> list[str]:
    """What in the NFT ``info`` disagrees with the commit ``record`` (empty if it records exactly that commit and
    is a finished NFT: Token-2022, supply 1, decimals 0, no mint authority, immutable metadata)."""
    problems = []
    if info.program != str(TOKEN_2022_PROGRAM_ID):
        problems.append(f"owned by {info.program}, not Token-2022")
    if (info.supply, info.decimals) != (1, 0):
        problems.append(f"supply {info.supply} with {info.decimals} decimals, not one indivisible token")
    if info.mint_authority is not None:
        problems.append(f"its mint authority {info.mint_authority} can still mint")
    meta = info.metadata
    if meta is None:
        return [*problems, "it has no token metadata"]
    if meta.update_authority is not None:
        problems.append(f"its metadata can still be changed by {meta.update_authority}")
    wanted = {"name": record.token_name, "symbol": SYMBOL, "uri": record.uri}
    for key, value in wanted.items():
        if getattr(meta, key) != value:
            problems.append(f"{key} is {getattr(meta, key)!r}, the commit says {value!r}")
    fields = record.fields()
    for key in sorted(set(fields) | set(meta.additional)):
        if meta.additional.get(key) != fields.get(key):
            problems.append(f"field {key} is {meta.additional.get(key)!r}, the commit says {fields.get(key)!r}")
    return problems
