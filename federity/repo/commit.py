"""``federity commit --weights``: new weights, trained elsewhere, as a signed commit on the current branch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from federity.config import Role
from federity.errors import WeightsError
from federity.identity import Wallet
from federity.repo.checks import non_finite_tensors
from federity.repo.commits import CommitRecord, create_commit, require_role
from federity.repo.privacy import sealing_for
from federity.repo.storage import MODEL_DVC_FILE
from federity.weights import read_tensors, sha256_bytes, tensors_to_bytes
from federity.weights.files import read_tensor_file, require_layout, tensor_layout

if TYPE_CHECKING:
    from federity.repo import Repository


def commit(repo: Repository, wallet: Wallet, weights: Path, message: str) -> CommitRecord:
    """Commit the tensors in ``weights`` (a safetensors file that fits the model) on the current branch.

    A maintainer's or owner's commit is of kind ``weights``, on any branch (on a branch other than main, a variant
    to merge back later with ``federity merge``). On a branch other than main, a contributor's commit is an
    ``update``; on main a contributor may not commit.
    """
    from federity.repo import MAIN_BRANCH

    branch = repo.require_branch()
    if not message.strip():
        raise WeightsError("the commit message is empty", "say what these weights are with -m MESSAGE")
    head = repo.head()
    config = repo.config(head)
    role = config.role_of(wallet.pubkey)
    kind = "weights" if branch == MAIN_BRANCH or (role is not None and role >= Role.MAINTAINER) else "update"
    require_role(role, kind, wallet.pubkey)  # before a private repository's weights are read
    repo.keys.use(wallet)
    _, tensors = read_tensor_file(weights)
    current = read_tensors(repo.store.read(head), "the checked-out weights")
    require_layout(tensor_layout(current), tensors, str(weights))
    non_finite = non_finite_tensors(tensors.items())
    if non_finite:
        raise WeightsError(f"{weights} holds non-finite values (NaN or infinity) in {', '.join(non_finite)}",
                           "every contributor trains from these weights: fix them before committing")
    data = tensors_to_bytes(tensors)
    if data == tensors_to_bytes(current):
        raise WeightsError(
            f"{weights} holds the same weights as the checked-out commit; nothing to commit",
            "train or edit the weights first",
        )
    with repo.transaction():
        repo.weights_path.write_bytes(data)
        repo.store.track(sealing=sealing_for(repo, wallet, kind, config))
        return create_commit(repo, wallet, kind, message, [head], paths=(MODEL_DVC_FILE,),
                             weights_sha256=sha256_bytes(data))
