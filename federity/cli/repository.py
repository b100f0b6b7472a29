"""``federity init|clone|pull|push|commit|models``: creating, syncing and committing to repositories."""

from __future__ import annotations

from pathlib import Path

import click

from federity.cli import (
    FederityCommand,
    emit,
    load_wallet,
    open_repo,
    show_repository_code,
    state,
    strategy_parameters,
)
from federity.models import zoo
from federity.proofs.policy import ProofPolicy
from federity.repo import Repository
from federity.repo.history import recorded_genesis
from federity.repo.nft import mint_new_commits
from federity.repo.sync import push_notes


@click.command(cls=FederityCommand)
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Repository name.")
@click.option("--framework", default="torch", show_default=True,
              help="Deep-learning framework: torch or tensorflow (Keras 3), or an installed plugin.")
@click.option("--model", required=True, help="Zoo id (see `federity models`) or module:function in the repository.")
@click.option("--model-arg", "model_args", multiple=True, help="Model argument k=v (repeatable).")
@click.option("--remote", help="Git remote URL; a local path becomes a bare repository with DVC storage beside it.")
@click.option("--storage", help="DVC storage URL, e.g. s3://bucket/prefix (default: beside a local remote).")
@click.option("--storage-endpoint", help="Endpoint URL of S3-compatible storage.")
@click.option("--seed", default=0, show_default=True, help="Seed of the untrained weights.")
@click.option("--contract", type=click.Path(path_type=Path),
              help="Data contract: a great-expectations suite as JSON (default: derived from the model).")
@click.option("--proofs", is_flag=True, help="Require a zero-knowledge proof of training on every update.")
@click.option("--proof-audits", default=2, show_default=True, help="Proved (audited) training steps per update.")
@click.option("--proof-scale", default=10, show_default=True, help="Fixed-point resolution 2^-SCALE of proofs.")
@click.option("--srs", type=click.Path(path_type=Path),
              help="Import a public powers-of-tau SRS file (implies --proofs; default: generate an insecure one).")
@click.option("--srs-sha256", help="The published sha256 of the --srs file; checked before it is used.")
@click.option("--ledger", default="embedded", show_default=True,
              help="Where commit NFTs are minted: embedded (LiteSVM here), devnet, mainnet, localnet or an RPC URL.")
@click.option("--strategy", default="fedavg", show_default=True, help="The aggregation strategy federity.yaml fixes.")
@click.option("--strategy-param", "strategy_params", multiple=True, metavar="KEY=VALUE",
              help="A parameter of that strategy, e.g. --strategy-param fraction=0.2 (repeatable).")
@click.option("--tokenizer", type=click.Path(path_type=Path),
              help="A text task's tokenizer (a tokenizers JSON file), committed as tokenizer.json; sites' CSV or "
                   "Parquet files then hold a 'text' column.")
@click.option("--public", is_flag=True,
              help="An open repository: weights, updates and proofs in plain safetensors that anyone who reads the "
                   "storage reads. By default a repository is private: all of them are sealed to its members.")
@click.option("--updates-readable-by", type=click.Choice(["reviewers", "contributors", "members"]),
              default="reviewers", show_default=True,
              help="Who reads a contributor's update in a private repository besides its author: the owners and "
                   "maintainers who review it, every contributor too, or every member (then an auditor added as a "
                   "reader can recompute every aggregate).")
def init(directory: Path, name: str, framework: str, model: str, model_args: tuple[str, ...], remote: str | None,
         storage: str | None, storage_endpoint: str | None, seed: int, contract: Path | None, proofs: bool,
         proof_audits: int, proof_scale: int, srs: Path | None, srs_sha256: str | None, ledger: str,
         strategy: str, strategy_params: tuple[str, ...], tokenizer: Path | None, public: bool,
         updates_readable_by: str) -> None:
    """Create a repository whose genesis commit holds the untrained model, owned by your wallet."""
    policy = ProofPolicy(proof_audits, proof_scale, srs, srs_sha256) if proofs or srs else None
    wallet = load_wallet()
    repo, record = Repository.init(
        directory, wallet, name=name, framework=framework, model=model, model_args=list(model_args),
        remote=remote, storage=storage, storage_endpoint=storage_endpoint, seed=seed, contract=contract,
        proofs=policy, ledger=ledger, strategy=strategy, strategy_params=strategy_parameters(strategy_params),
        tokenizer=tokenizer, public=public, updates_readable_by=updates_readable_by,
    )
    if mint_new_commits(repo, wallet).minted and remote:  # the genesis NFT, then its record on the remote
        push_notes(repo)
    emit({"repo": str(repo.root), "commit": record.commit, "weights_sha256": record.meta.weights_sha256},
         f"created {repo.root} at genesis commit {record.commit[:12]}")


@click.command(cls=FederityCommand)
@click.argument("url")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--genesis", help="The repository's genesis commit id (from its owner): refuse any other history.")
def clone(url: str, directory: Path, genesis: str | None) -> None:
    """Clone a repository, check its whole history, and fetch its checked-out weights; say which of its own
    modules it runs."""
    repo = Repository.clone(url, directory, genesis, wallet_path=state().wallet)
    head = repo.head()
    show_repository_code(repo, head)
    emit({"repo": str(repo.root), "commit": head, "genesis": recorded_genesis(repo)},
         f"cloned into {repo.root} at {head[:12]} (genesis {recorded_genesis(repo)})")


@click.command(cls=FederityCommand)
def pull() -> None:
    """Fast-forward the current branch from origin, weights included."""
    repo = open_repo()
    head = repo.pull()
    emit({"repo": str(repo.root), "commit": head}, f"up to date at {head[:12]}")


@click.command(cls=FederityCommand)
def push() -> None:
    """Publish the current branch: weights to DVC storage, then commits to origin."""
    repo = open_repo()
    head = repo.push()
    emit({"repo": str(repo.root), "commit": head}, f"pushed {head[:12]}")


@click.command(cls=FederityCommand)
@click.option("--weights", required=True, type=click.Path(path_type=Path),
              help="A .safetensors file that fits the model.")
@click.option("-m", "--message", required=True, help="What these weights are.")
def commit(weights: Path, message: str) -> None:
    """Commit new weights on the current branch, signed by your wallet."""
    repo, wallet = open_repo(), load_wallet()
    record = repo.commit(wallet, weights, message)
    mint_new_commits(repo, wallet)
    emit({"commit": record.commit, "kind": record.meta.kind, "weights_sha256": record.meta.weights_sha256},
         f"{record.meta.kind} commit {record.commit[:12]}  weights {record.meta.weights_sha256[:12]}")


@click.command(cls=FederityCommand)
def models() -> None:
    """List the model zoo."""
    entries = zoo()

    def human() -> None:
        for entry in entries:
            args = ", ".join(k + ("" if k in entry.required else f"={v}") for k, v in entry.args.items())
            click.echo(f"{entry.id:<20} {entry.framework:<10} {args:<40} {entry.description}")

    emit({"models": [entry.to_json() for entry in entries]}, human)
