"""The one exception root of Federity.

Every error a user can meet is a :class:`FederityError` that says what happened (``message``) and what to do
about it (``hint``). Subclasses also subclass the matching builtin, so callers can catch either.
"""

from __future__ import annotations


class FederityError(Exception):
    """An error with an actionable message: what happened, and what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  what to do: {self.hint}"


def listed(problems: list[str], most: int = 5) -> str:
    """``problems`` joined for one message: the first ``most`` of them, then how many more there are."""
    more = len(problems) - most
    return "; ".join(problems[:most]) + (f"; and {more} more" if more > 0 else "")


class NotARepositoryError(FederityError, FileNotFoundError):
    """The directory is not a Federity repository."""


class RevisionNotFoundError(FederityError, LookupError):
    """A revision (commit, branch, tag) does not exist."""


class WalletError(FederityError, ValueError):
    """A wallet file is missing or is not a Solana keypair."""


class PermissionDeniedError(FederityError, PermissionError):
    """The wallet does not hold the role an action needs."""


class WeightsError(FederityError, ValueError):
    """Weights are missing, corrupted, or do not fit the repository's model."""


class PickleRefusedError(WeightsError):
    """A pickle (or a torch.save checkpoint) was offered as weights; Federity never loads pickles."""


class ConfigError(FederityError, ValueError):
    """federity.yaml or a command argument is invalid."""


class WorkingTreeError(FederityError, RuntimeError):
    """The working tree is not in a state the operation can start from (dirty, detached, not empty)."""


class RemoteError(FederityError, ConnectionError):
    """A git remote or DVC storage could not be reached or refused the operation."""


class UnknownPluginError(FederityError, LookupError):
    """A framework, model or strategy name is not installed."""


class DataError(FederityError, ValueError):
    """A local dataset cannot be read as the repository's model needs it."""


class DataContractError(DataError):
    """A local dataset fails the repository's data contract, or the contract is not one Federity runs.
    ``report`` says which expectations failed, and nothing else: no counts, no values."""

    def __init__(self, message: str, hint: str, report: object = None) -> None:
        super().__init__(message, hint)
        self.report = report


class UpdateError(FederityError, ValueError):
    """An update cannot be checked, reviewed or aggregated as asked."""


class MergeError(FederityError, ValueError):
    """Two branches' models cannot be merged as asked."""


class ProofError(FederityError, ValueError):
    """A proof of training cannot be made, or does not verify."""


class LedgerError(FederityError, ConnectionError):
    """A ledger (the embedded LiteSVM directory or a Solana cluster) could not be reached, read or written."""


class TransactionError(FederityError, RuntimeError):
    """The ledger refused a transaction (a failed instruction, too few lamports, a transaction too large)."""


class NftError(FederityError, LookupError):
    """An NFT does not exist, or exists with other metadata than the commit it should record."""


class SealingError(FederityError, PermissionError):
    """A private repository's sealed weights cannot be opened by this wallet, or their sealing is damaged."""


class PrivateWeightsError(SealingError):
    """A private repository's weights are sealed to members this wallet is not among (or not yet)."""
