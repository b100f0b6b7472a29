"""``federity train``: train the model of a commit of a branch (main, or a variant) on local data and record the
result as a signed update for that branch.

The update is one commit on a new branch ``updates/r<round>/<author>`` (``updates/<branch>/r<round>/<author>``
for a branch other than main), whose only parent is the base commit. It holds the new weights (DVC) and
``update.json``: the base, round and nonce it was trained for, the branch it may be aggregated on (absent for
main), the sample count, the local metrics and the training parameters. Nothing else about the data is recorded:
no values, no file names, no paths.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from federity.errors import ConfigError, DataError, WorkingTreeError
from federity.identity import Wallet
from federity.proofs.policy import require_plain_sgd
from federity.records import MAIN_BRANCH, UPDATE_BRANCH_PREFIX
from federity.repo.branches import branch_tip, require_model_branch
from federity.repo.commits import create_commit, read_commit, require_role
from federity.repo.params import site_dataset, training_params
from federity.repo.paths import write_inside
from federity.repo.privacy import sealing_for
from federity.repo.proof_inputs import prove_training
from federity.repo.storage import MODEL_DIR, MODEL_DVC_FILE
from federity.repo.updates import UPDATE_FILE, UPDATE_SCHEMA
from federity.training import TrainingParams, TrainResult, evaluate, train_locally
from federity.weights import WEIGHTS_FILE, read_tensors, sha256_bytes, tensors_to_bytes

if TYPE_CHECKING:
    from federity.config import RepoConfig
    from federity.contract import ContractReport
    from federity.data import Dataset
    from federity.repo import Repository


@dataclass
class UpdateResult:
    """A new update, as ``federity train --json`` prints it."""

    update: str
    base: str
    branch: str
    round: int
    n_samples: int
    metrics: dict[str, float]
    contract: dict[str, Any] = field(default_factory=dict)
    proof: dict[str, Any] | None = None
    target: str = MAIN_BRANCH
    """The branch the update was trained for."""

    def to_json(self) -> dict[str, Any]:
        """The keys docs/cli.md fixes for ``train``, plus branch, target, round and the contract outcome."""
        return {"update": self.update, "base": self.base, "branch": self.branch, "target": self.target,
                "round": self.round,
                "n_samples": self.n_samples, "metrics": self.metrics, "contract": self.contract,
                "proof": self.proof}


def _update_branch(repo: Repository, target: str, round: int, author: str) -> str:
    stem = f"{UPDATE_BRANCH_PREFIX}{'' if target == MAIN_BRANCH else target + '/'}r{round}/{author[:8]}"
    name, n = stem, 1
    while repo.git.try_resolve(f"refs/heads/{name}") is not None:
        n += 1
        name = f"{stem}-{n}"
    return name


def _base_on(repo: Repository, branch: str, base: str | None) -> str:
    """``base`` (default: ``branch``'s head, local or else origin's), checked safe to check out and on ``branch``'s
    first-parent line, which an update for ``branch`` must be trained from."""
    tip = branch_tip(repo, require_model_branch(branch))
    commit = repo.git.resolve(base) if base else tip
    repo.store.require_safe(commit)  # no symlink (e.g. update.json) or hostile manifest in the base
    if commit not in repo.git.run("rev-list", "--first-parent", tip).split():
        raise ConfigError(f"commit {commit[:12]} is not on {branch}'s line, so an update trained from it could not "
                          f"be aggregated on {branch}", f"train from {branch}'s head (leave out --base)")
    return commit


@dataclass
class LocalTraining:
    """One update in the making, stage by stage: :func:`prepare_training`, then :meth:`check_data`, :meth:`fit`
    and :meth:`commit` (:func:`train` runs them in turn; a site's flow runs each as its own task run)."""

    repo: Repository
    wallet: Wallet
    data: Path
    base: str
    branch: str
    nonce: str | None
    round: int
    """The round the update is for: the base's, plus one."""
    config: RepoConfig
    params: TrainingParams
    suite: dict[str, Any]
    dataset: Dataset | None = None
    report: ContractReport | None = None
    result: TrainResult | None = None
    proof_files: dict[str, bytes] = field(default_factory=dict)
    proof_summary: dict[str, Any] | None = None

    def check_data(self) -> ContractReport:
        """Read the site's dataset and check it against the base's data contract."""
        from federity.contract import require_valid

        self.dataset = site_dataset(self.repo, self.base, self.config, self.data)
        self.report = require_valid(self.dataset.table, self.suite)
        return self.report

    def fit(self, progress: Callable[[str], None] | None = None) -> TrainResult:
        """Train the base model on the checked dataset; when the repository requires proofs, train the head in
        the circuit and prove the audited steps (``progress`` receives one line per stage)."""
        if self.dataset is None:
            raise WorkingTreeError("the data has not been checked against the contract", "call check_data first")
        base_tensors = read_tensors(self.repo.store.read(self.base), f"the weights of {self.base[:12]}")
        if self.config.proofs is not None:
            proved = prove_training(self.repo, self.wallet, self.base, base_tensors, self.dataset, self.params,
                                    self.nonce, progress)
            metrics = evaluate(self.config, self.repo.root, proved.tensors, self.dataset)
            result = TrainResult(proved.tensors, self.dataset.n_samples, metrics)
            self.proof_files, self.proof_summary = proved.files, proved.summary
        else:
            result = train_locally(self.config, self.repo.root, base_tensors, self.dataset, self.params)
        if not all(np.isfinite(t).all() for t in result.tensors.values() if np.issubdtype(t.dtype, np.floating)):
            raise DataError("training produced non-finite weights (NaN or infinity)",
                            "lower lr in params.yaml, or check that the features are scaled")
        self.result = result
        return result

    def commit(self) -> UpdateResult:
        """Commit the trained weights (and proof) as a signed update on a new update branch, checked out."""
        if self.result is None or self.report is None:
            raise WorkingTreeError("nothing has been trained yet", "call check_data and fit first")
        repo, wallet, result, round = self.repo, self.wallet, self.result, self.round
        record = {
            "schema": UPDATE_SCHEMA, "base": self.base, "round": round, "nonce": self.nonce,
            "n_samples": result.n_samples, "metrics": result.metrics, "params": self.params.to_json(),
            "contract": {"expectations": self.report.expectations, "passed": True}, "proof": self.proof_summary,
            **({} if self.branch == MAIN_BRANCH else {"branch": self.branch}),
        }
        update_branch = _update_branch(repo, self.branch, round, wallet.pubkey)
        with repo.transaction():
            repo.git.run("checkout", "--quiet", "-b", update_branch, self.base)
            repo.store.checkout()  # model/ as the base has it: no file of the branch checked out before comes along
            # never through a link: a second line of defence behind the tree check above
            weights = tensors_to_bytes(result.tensors)
            write_inside(repo.root, f"{MODEL_DIR}/{WEIGHTS_FILE}", weights)
            for relpath, content in self.proof_files.items():
                write_inside(repo.root, f"{MODEL_DIR}/{relpath}", content)
            write_inside(repo.root, UPDATE_FILE, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
            repo.store.track(sealing=sealing_for(repo, wallet, "update", self.config))
            commit = create_commit(repo, wallet, "update", f"Update for round {round} from {wallet.pubkey[:8]}",
                                   [self.base], round=round, paths=(MODEL_DVC_FILE, UPDATE_FILE),
                                   proof_sha256=self.proof_summary["sha256"] if self.proof_summary else None,
                                   weights_sha256=sha256_bytes(weights))
        return UpdateResult(commit.commit, self.base, update_branch, round, result.n_samples, result.metrics,
                            record["contract"], self.proof_summary, target=self.branch)


def prepare_training(repo: Repository, wallet: Wallet, data: Path, *, base: str | None = None,
                     branch: str = MAIN_BRANCH, nonce: str | None = None, epochs: int | None = None) -> LocalTraining:
    """Check that an update for ``branch`` can be trained from ``base`` (default: ``branch``'s head) here, and
    read what training needs from the base: its configuration, parameters and data contract. No data is read."""
    repo.keys.use(wallet)
    from federity.contract import CONTRACT_FILE, read_suite

    repo.require_clean()  # before training, not only when committing
    base_commit = _base_on(repo, branch, base)
    base_meta = read_commit(repo, base_commit).meta
    if base_meta is None:
        raise ConfigError(f"commit {base_commit[:12]} carries no Federity metadata", "train from a main commit")
    config = repo.config(base_commit)
    require_role(config.role_of(wallet.pubkey), "update", wallet.pubkey)  # before anything is read or trained
    params = training_params(repo, base_commit, epochs)
    if config.proofs is not None:
        require_plain_sgd(params)  # before any data is read: the circuit proves plain SGD steps (no mu, no momentum)
    # Fresh randomness for each round (its nonce) or base: retraining after a failed round is not a replay, and
    # the batches of one round are not those of the last.
    salt = (nonce or base_commit).encode()
    params = dataclasses.replace(params, seed=(params.seed + int(sha256_bytes(salt)[:8], 16)) % 2**31)
    suite_raw = repo.git.show_file(base_commit, CONTRACT_FILE)
    if suite_raw is None:
        raise ConfigError(f"commit {base_commit[:12]} has no data contract ({CONTRACT_FILE})",
                          "ask the owner to add one: every update must be trained on data that passed it")
    suite = read_suite(suite_raw, f"{CONTRACT_FILE} at {base_commit[:12]}")  # checked before any data is read
    return LocalTraining(repo, wallet, Path(data), base_commit, branch, nonce, base_meta.round + 1, config, params,
                         suite)


def train(repo: Repository, wallet: Wallet, data: Path, *, base: str | None = None, branch: str = MAIN_BRANCH,
          nonce: str | None = None, epochs: int | None = None,
          progress: Callable[[str], None] | None = None) -> UpdateResult:
    """Validate ``data`` against the contract, train the model of ``base`` (default: ``branch``'s head) on it, and
    commit the result as an update for ``branch`` signed by ``wallet``. The working tree is left on the update's
    branch, ready to push.
    When the repository requires proofs of training, the head is trained in the circuit and the audited steps
    are proved (:mod:`federity.proofs`); ``progress`` receives one line per stage.

    On any failure the repository is left as it was.
    """
    run = prepare_training(repo, wallet, data, base=base, branch=branch, nonce=nonce, epochs=epochs)
    run.check_data()
    run.fit(progress)
    return run.commit()
