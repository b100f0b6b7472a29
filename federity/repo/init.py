"""``federity init``: a new repository whose genesis commit holds the untrained model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from federity.aggregation import get_strategy
from federity.builders import MODEL_BUILDER, parse_code_spec
from federity.config import CONFIG_FILE, DEFAULT_PARAMS, PARAMS_FILE, TOKENIZER_FILE, RepoConfig, Role
from federity.errors import ConfigError
from federity.git import Git
from federity.identity import Wallet
from federity.models import build_model, is_repository_builder, parse_model_args, zoo_model
from federity.repo.commits import CommitRecord, create_commit
from federity.repo.history import record_genesis
from federity.repo.paths import (
    default_storage_for,
    is_local_url,
    local_path,
    require_empty_dir,
    restored_on_failure,
)
from federity.repo.privacy import sealing_for, write_keyring
from federity.repo.storage import MODEL_DIR, MODEL_DVC_FILE, WeightsStore
from federity.sealing.keyring import KEYRING_DIR, VERSIONS, Keyring
from federity.training import TrainingParams, get_trainer
from federity.weights import WEIGHTS_FILE, get_framework, sha256_bytes, tensors_to_bytes

if TYPE_CHECKING:
    from federity.proofs.policy import ProofPolicy
    from federity.repo import Repository

def init(
    directory: Path,
    wallet: Wallet,
    *,
    name: str,
    framework: str,
    model: str,
    model_args: list[str] = (),  # type: ignore[assignment]
    remote: str | None = None,
    storage: str | None = None,
    storage_endpoint: str | None = None,
    seed: int = 0,
    contract: Path | None = None,
    params: dict[str, Any] | None = None,
    proofs: ProofPolicy | None = None,
    ledger: str = "embedded",
    strategy: str = "fedavg",
    strategy_params: dict[str, Any] | None = None,
    tokenizer: Path | None = None,
    public: bool = False,
    updates_readable_by: str = "reviewers",
) -> tuple[Repository, CommitRecord]:
    """Create a repository in ``directory`` (new or empty) with ``wallet`` as its owner.

    With a ``remote``, the genesis commit is pushed; a local-path remote is created as a bare git repository
    with DVC storage beside it, unless ``storage`` names another (e.g. ``s3://bucket/prefix``). On any
    failure, everything this call created is removed. ``contract`` is a great-expectations suite (JSON) every
    contributor's dataset must pass; by default one is derived from the model (label values, column count).
    ``params`` are the local training parameters written to params.yaml (default: :data:`DEFAULT_PARAMS`).
    With ``proofs``, every update must carry a proof of training; the genesis commit stores the SRS
    (``model/proof-srs.bin``), generated offline (insecure) or imported from a file whose sha256 is checked.
    ``strategy`` and ``strategy_params`` are the aggregation strategy ``federity.yaml`` fixes (checked here:
    an unknown strategy or a bad parameter fails before anything is created). ``ledger`` is where the commits'
    NFTs are minted: ``embedded`` (LiteSVM on this machine), a cluster alias or
    an RPC URL; minting the genesis NFT is the caller's next step (:func:`federity.repo.nft.mint_new_commits`), so a
    failed init leaves nothing on the ledger. ``tokenizer`` (a ``tokenizers`` JSON file) makes a text task: it is
    committed as :data:`TOKENIZER_FILE`, and every site's ``text`` column is read through it
    (:mod:`federity.text`). The repository is private unless ``public``: its weights, updates and proof
    artifacts are sealed to its members (:mod:`federity.repo.privacy`); ``updates_readable_by`` is who reads a
    contributor's update besides its author: ``reviewers`` (owners and maintainers), ``contributors`` too, or every
    member (``members``).
    """
    from federity.chain.ledger import open_ledger
    from federity.contract import CONTRACT_FILE
    from federity.repo import MAIN_BRANCH, Repository

    directory = Path(directory).expanduser().resolve()
    require_empty_dir(directory, "directory")
    if not name.strip():
        raise ConfigError("the repository name is empty", "pass --name NAME")
    adapter = get_framework(framework)
    args = parse_model_args(model, framework, list(model_args))
    get_strategy(strategy, strategy_params)
    aggregation = {"strategy": strategy, **({"params": dict(strategy_params)} if strategy_params else {})}
    builder_file = None
    if is_repository_builder(model):
        builder_file = Path.cwd() / parse_code_spec(model, MODEL_BUILDER).path
        if not builder_file.is_file():
            raise ConfigError(f"model builder {model!r} needs {builder_file}, which does not exist",
                              "run init from the directory holding the builder module; it is copied into the "
                              "repository so every clone can build the model")

    open_ledger(ledger)  # an unknown ledger name is refused before anything is created
    tokenizer_raw = _tokenizer_for(tokenizer, args) if tokenizer is not None else None
    entry = None if is_repository_builder(model) else zoo_model(model, framework)
    objective = entry.objective if entry is not None else "cross_entropy"
    if proofs is not None and objective != "cross_entropy":
        raise ConfigError(f"proofs of training prove steps of a classifier's head; model {model!r} trains "
                          f"{objective}", "drop --proofs, or choose a classifier")
    suite = _contract_suite(contract, args, labelled=objective == "cross_entropy",
                            table=entry is None or entry.data == "table")
    if params is not None:
        TrainingParams.from_mapping(params, "the training parameters")
    created: list[Path] = []
    remote_url, storage_url = remote, storage
    if remote and is_local_url(remote):
        remote_path = local_path(remote)
        require_empty_dir(remote_path, "remote")
        remote_url = str(remote_path)
        if storage is None:
            storage_path = default_storage_for(remote_path)
            require_empty_dir(storage_path, "storage")
            storage_url = str(storage_path)
    if storage_url and is_local_url(storage_url):
        storage_url = str(local_path(storage_url))

    try:
        with restored_on_failure(directory):
            directory.mkdir(parents=True, exist_ok=True)
            git = Git(directory)
            git.run("init", "--quiet", "--initial-branch", MAIN_BRANCH)
            config = RepoConfig(
                name=name.strip(), framework=framework, model={"id": model, "args": args},
                members={wallet.pubkey: Role.OWNER}, ledger=ledger, aggregation=aggregation,
                task={"loss": objective, "metrics": [] if objective == "reconstruction" else ["accuracy"],
                      "label": "label"},
                privacy=None if public else {"updates": updates_readable_by},
            )
            RepoConfig.from_yaml(config.to_yaml())  # a bad policy fails here, before anything is written
            if tokenizer_raw is not None:
                config.task = {**config.task, "tokenizer": TOKENIZER_FILE,
                               "max_length": int(args.get("max_length", 128))}
                (directory / TOKENIZER_FILE).write_bytes(tokenizer_raw)
            (directory / CONFIG_FILE).write_text(config.to_yaml())
            (directory / PARAMS_FILE).write_text(yaml.safe_dump(params or DEFAULT_PARAMS, sort_keys=False))
            (directory / CONTRACT_FILE).parent.mkdir()
            (directory / CONTRACT_FILE).write_text(json.dumps(suite, indent=2) + "\n")
            builder_paths: tuple[str, ...] = ()
            if builder_file is not None:
                builder_paths = (str(builder_file.relative_to(Path.cwd())),)
                (directory / builder_paths[0]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(builder_file, directory / builder_paths[0])
                git.run("add", "--", builder_paths[0])  # a builder runs only as a file the repository tracks
            adapter.seed(seed)
            built = build_model(model, framework, args, directory)
            (directory / MODEL_DIR).mkdir()
            if proofs is not None:
                config.proofs = proofs.setup(adapter.get_tensors(built), get_trainer(framework).head(built),
                                             TrainingParams.from_mapping(params or DEFAULT_PARAMS),
                                             directory / MODEL_DIR)
                (directory / CONFIG_FILE).write_text(config.to_yaml())
            weights = tensors_to_bytes(adapter.get_tensors(built))
            (directory / MODEL_DIR / WEIGHTS_FILE).write_bytes(weights)
            WeightsStore.initialise(directory, storage_url, storage_endpoint)
            repo = Repository(directory)
            repo.keys.use(wallet)
            keyring = Keyring.created(config.id, {VERSIONS: config.version_readers()}) if config.private else None
            if keyring is not None:
                write_keyring(repo, keyring)
            repo.store.track(sealing=sealing_for(repo, wallet, "genesis", config, keyring))
            record: CommitRecord = create_commit(
                repo, wallet, "genesis", f"Genesis of {config.name}: untrained {model}", [],
                paths=(CONFIG_FILE, PARAMS_FILE, CONTRACT_FILE, MODEL_DVC_FILE, ".gitignore", ".dvc", ".dvcignore",
                       *builder_paths, *((TOKENIZER_FILE,) if tokenizer_raw is not None else ()),
                       *((KEYRING_DIR,) if keyring is not None else ())),
                weights_sha256=sha256_bytes(weights),
            )
            record_genesis(repo, record.commit)
            if remote_url:
                if is_local_url(remote_url):
                    Git(directory).run("init", "--quiet", "--bare", "--initial-branch", MAIN_BRANCH, remote_url)
                    created.append(Path(remote_url))
                    if storage is None and storage_url:
                        created.append(Path(storage_url))
                git.run("remote", "add", "origin", remote_url)
                repo.push()
    except BaseException:
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return repo, record



def _tokenizer_for(path: Path, model_args: dict[str, Any]) -> bytes:
    """The bytes of the tokenizer file ``path``, once the tokenizers library reads it and the model embeds every
    id it makes."""
    from federity.text import load_tokenizer, vocabulary_ids

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the tokenizer {path}: {exc.strerror}",
                          "pass a tokenizer saved with the tokenizers library") from None
    needed = vocabulary_ids(load_tokenizer(raw, str(path)))
    if isinstance(model_args.get("vocab_size"), int) and model_args["vocab_size"] < needed:
        raise ConfigError(f"the tokenizer makes {needed} ids (its vocabulary and the padding id 0), but the model "
                          f"embeds vocab_size={model_args['vocab_size']}", f"pass --model-arg vocab_size={needed}")
    return raw


def _contract_suite(contract: Path | None, model_args: dict[str, Any], *, labelled: bool,
                    table: bool) -> dict[str, Any]:
    """The data contract for a new repository: the given suite file, or one derived from the model (with a label
    column when its task is ``labelled``, and its column count when it reads a ``table``)."""
    from federity.contract import default_suite, read_suite

    if contract is None:
        return default_suite(label="label" if labelled else None, num_classes=int(model_args.get("num_classes", 2)),
                             in_features=model_args.get("in_features") if table else None)
    try:
        raw = Path(contract).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the data contract {contract}: {exc.strerror}",
                          "pass a great-expectations suite saved as JSON") from None
    return read_suite(raw, str(contract))
