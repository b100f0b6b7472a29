"""The command line's public contract: JSON keys, exit codes, global options anywhere, errors on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from federity.repo import Repository
from tests.conftest import write_csv


def federity(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "federity", *args], cwd=cwd, capture_output=True, text=True,
                          check=False)


def test_cli_contract_end_to_end(tmp_path: Path) -> None:
    wallet = str(tmp_path / "owner.json")
    created = json.loads(federity("wallet", "new", "--path", wallet, "--json", cwd=tmp_path).stdout)
    assert set(created) == {"pubkey", "path"}
    init = federity("--wallet", wallet, "--json", "init", "repo", "--name", "n", "--model", "logistic-regression",
                    "--model-arg", "in_features=3", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert set(json.loads(init.stdout)) == {"repo", "commit", "weights_sha256"}
    repo = tmp_path / "repo"
    log = json.loads(federity("log", "--json", cwd=repo).stdout)
    assert set(log["commits"][0]) == {"commit", "parents", "kind", "author", "round", "weights_sha256",
                                      "message", "nft", "mlflow_run"}
    refused = federity("show", "HEAD", "--json", cwd=repo)  # private by default: reading takes a member's wallet
    assert refused.returncode == 1 and json.loads(refused.stdout)["error"]["type"] == "PrivateWeightsError"
    show = json.loads(federity("--wallet", wallet, "show", "HEAD", "--json", cwd=repo).stdout)
    assert {"tensors", "proof"} <= set(show) and set(show["tensors"][0]) == {"name", "shape", "dtype", "sha256"}
    diff = json.loads(federity("--wallet", wallet, "--repo", str(repo), "diff", "HEAD", "HEAD", "--json",
                               cwd=tmp_path).stdout)
    assert {row["status"] for row in diff["tensors"]} == {"unchanged"}
    members = json.loads(federity("members", "list", "--json", cwd=repo).stdout)
    assert members["members"] == [{"pubkey": created["pubkey"], "role": "owner"}]
    verify = federity("--wallet", wallet, "verify", "--json", cwd=repo)
    assert verify.returncode == 0 and json.loads(verify.stdout) == {"ok": True, "commits_checked": 1,
                                                                    "failures": [], "rejected": [],
                                                                    "unchecked": []}
    anyone = json.loads(federity("verify", "--json", cwd=repo).stdout)  # no wallet: the ciphertext is checked
    assert anyone["ok"] and [u["check"] for u in anyone["unchecked"]] == ["weights"]
    assert "1 commit(s) hold weights sealed" in anyone["unchecked"][0]["reason"]
    models = json.loads(federity("models", "--json", cwd=tmp_path).stdout)["models"]
    assert {m["id"] for m in models} >= {"logistic-regression", "mlp", "cnn"}


def test_errors_exit_1_with_what_to_do(tmp_path: Path) -> None:
    result = federity("log", "--json", cwd=tmp_path)
    assert result.returncode == 1
    assert "not a Federity repository" in result.stderr and "what to do:" in result.stderr
    assert json.loads(result.stdout)["error"]["type"] == "NotARepositoryError"


@pytest.mark.parametrize("args", [["nosuchcommand"], ["diff", "onlyone"], ["init"]])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    assert federity(*args, cwd=tmp_path).returncode == 2


def test_cli_contributor_loop_train_review_aggregate_track(tmp_path: Path) -> None:
    owner, site = str(tmp_path / "owner.json"), str(tmp_path / "site.json")
    federity("wallet", "new", "--path", owner, cwd=tmp_path)
    site_key = json.loads(federity("wallet", "new", "--path", site, "--json", cwd=tmp_path).stdout)["pubkey"]
    refused = federity("--wallet", owner, "init", "repo", "--name", "n", "--model", "logistic-regression",
                       "--model-arg", "in_features=4", "--strategy", "trimmed-mean", "--strategy-param",
                       "fraction=0.6", cwd=tmp_path)
    assert refused.returncode != 0 and "fraction: Input should be less than 0.5" in refused.stderr
    assert not (tmp_path / "repo").exists()
    federity("--wallet", owner, "init", "repo", "--name", "n", "--model", "logistic-regression", "--model-arg",
             "in_features=4", "--strategy", "trimmed-mean", "--strategy-param", "fraction=0.25", cwd=tmp_path)
    repo = tmp_path / "repo"
    federity("--wallet", owner, "members", "add", site_key, "--role", "contributor", cwd=repo)
    data = write_csv(tmp_path / "site" / "train.csv", 50, seed=3)
    trained = federity("--wallet", site, "--json", "train", "--data", str(data), "--epochs", "2", cwd=repo)
    assert trained.returncode == 0, trained.stderr
    update = json.loads(trained.stdout)
    assert {"update", "base", "n_samples", "metrics", "proof"} <= set(update) and update["n_samples"] == 50
    federity("checkout", "main", cwd=repo)
    listed = json.loads(federity("updates", "--json", cwd=repo).stdout)["updates"]
    assert [(u["id"], u["status"]) for u in listed] == [(update["update"], "pending")]
    assert {"id", "author", "base", "status", "reason"} <= set(listed[0])
    review = json.loads(federity("--wallet", owner, "--json", "review", "approve", update["update"][:10],
                                 cwd=repo).stdout)
    assert review["status"] == "approved"
    aggregated = json.loads(federity("--wallet", owner, "--json", "aggregate", cwd=repo).stdout)
    assert aggregated["updates"] == [update["update"]] and len(aggregated["parents"]) == 2
    trailers = subprocess.run(["git", "log", "-1", "--format=%B"], cwd=repo, capture_output=True, text=True).stdout
    assert "Federity-Strategy: trimmed-mean@1\nFederity-Strategy-Params: {\"fraction\":0.25}" in trailers
    tracked = json.loads(federity("--wallet", owner, "--json", "track", cwd=repo).stdout)
    log = json.loads(federity("log", "--json", cwd=repo).stdout)["commits"]
    assert log[0]["kind"] == "aggregate" and log[0]["mlflow_run"] == tracked["mlflow_run"]


def test_cli_proofs_init_train_show_verify_and_a_refused_srs(tmp_path: Path) -> None:
    wallet = str(tmp_path / "owner.json")
    federity("wallet", "new", "--path", wallet, cwd=tmp_path)
    bad_srs = tmp_path / "kzg.srs"
    bad_srs.write_bytes(b"\x0d\x00\x00\x00 not really an SRS")
    refused = federity("--wallet", wallet, "init", "bad", "--name", "n", "--model", "logistic-regression",
                       "--model-arg", "in_features=4", "--srs", str(bad_srs), "--srs-sha256", "0" * 64, cwd=tmp_path)
    assert refused.returncode == 1 and "not the expected" in refused.stderr and "what to do:" in refused.stderr
    assert not (tmp_path / "bad").exists()
    init = federity("--wallet", wallet, "init", "repo", "--name", "n", "--model", "logistic-regression",
                    "--model-arg", "in_features=4", "--proofs", "--proof-audits", "1", "--proof-scale", "8",
                    cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    repo = tmp_path / "repo"
    data = write_csv(tmp_path / "data" / "train.csv", 64, seed=1)
    trained = federity("--wallet", wallet, "--json", "train", "--data", str(data), "--epochs", "1", cwd=repo)
    assert trained.returncode == 0, trained.stderr
    proof = json.loads(trained.stdout)["proof"]
    assert proof["steps"] == 2 and len(proof["audited"]) == 1 and proof["srs"].startswith("INSECURE")
    assert "proving audited step" not in trained.stdout  # progress goes to stderr, stdout is the JSON
    shown = federity("--wallet", wallet, "show", json.loads(trained.stdout)["update"], cwd=repo)
    assert "1 of 2 SGD steps" in shown.stdout and "does not cover" in shown.stdout and "INSECURE" in shown.stdout
    verify = json.loads(federity("--wallet", wallet, "verify", "--json", cwd=repo).stdout)
    assert verify["ok"] and verify["commits_checked"] == 2 and verify["unchecked"] == []


def test_cli_merge_a_branch_signed_minted_tracked_and_verified(tmp_path: Path) -> None:
    import numpy as np

    from federity.weights import read_tensors, tensors_to_bytes

    owner = str(tmp_path / "owner.json")
    federity("wallet", "new", "--path", owner, cwd=tmp_path)
    federity("--wallet", owner, "init", "repo", "--name", "n", "--model", "logistic-regression", "--model-arg",
             "in_features=4", cwd=tmp_path)
    repo = tmp_path / "repo"

    def checked_out() -> dict[str, np.ndarray]:  # model/ holds them sealed: a member exports them in plain form
        out = tmp_path / f"exported-{len(list(tmp_path.glob('exported-*')))}.safetensors"
        exported = federity("--wallet", owner, "export", "HEAD", "--format", "safetensors", "--out", str(out),
                            cwd=repo)
        assert exported.returncode == 0, exported.stderr
        return read_tensors(out.read_bytes(), "weights")

    tensors = checked_out()
    for value in (1.0, 3.0):
        (tmp_path / f"{value}.safetensors").write_bytes(
            tensors_to_bytes({k: np.full_like(v, value) for k, v in tensors.items()}))
    assert federity("branch", "variant", cwd=repo).returncode == 0
    federity("--wallet", owner, "commit", "--weights", str(tmp_path / "1.0.safetensors"), "-m", "ones", cwd=repo)
    federity("checkout", "variant", cwd=repo)
    federity("--wallet", owner, "commit", "--weights", str(tmp_path / "3.0.safetensors"), "-m", "threes", cwd=repo)
    federity("checkout", "main", cwd=repo)
    merged = federity("--wallet", owner, "--json", "merge", "variant", "--strategy", "ties", "--strategy-param",
                      "density=1.0", "-m", "Merge the variant", cwd=repo)
    assert merged.returncode == 0, merged.stderr
    result = json.loads(merged.stdout)
    assert set(result) == {"commit", "parents", "strategy", "strategy_params", "merge_base", "weights_sha256"}
    assert result["strategy"] == "ties@1" and result["strategy_params"] == {"density": 1.0, "scale": 1.0}
    assert {float(x) for x in checked_out()["0.weight"].reshape(-1)} == {2.0}
    again = federity("--wallet", owner, "--json", "merge", "variant", cwd=repo)
    assert again.returncode == 1 and "already part of main" in again.stderr and "what to do:" in again.stderr
    tracked = json.loads(federity("--wallet", owner, "--json", "track", cwd=repo).stdout)
    [latest, *_] = json.loads(federity("log", "--json", cwd=repo).stdout)["commits"]
    assert latest["kind"] == "merge" and latest["parents"] == result["parents"]
    assert latest["nft"] and latest["mlflow_run"] == tracked["mlflow_run"]
    verify = json.loads(federity("verify", "--json", cwd=repo).stdout)
    assert verify["ok"] and verify["failures"] == [], verify


def test_cli_train_and_aggregate_on_a_variant_branch(tmp_path: Path) -> None:
    owner, site = str(tmp_path / "owner.json"), str(tmp_path / "site.json")
    federity("wallet", "new", "--path", owner, cwd=tmp_path)
    site_key = json.loads(federity("wallet", "new", "--path", site, "--json", cwd=tmp_path).stdout)["pubkey"]
    federity("--wallet", owner, "init", "repo", "--name", "n", "--model", "logistic-regression", "--model-arg",
             "in_features=4", cwd=tmp_path)
    repo = tmp_path / "repo"
    federity("--wallet", owner, "members", "add", site_key, "--role", "contributor", cwd=repo)
    federity("branch", "variant", cwd=repo)
    data = write_csv(tmp_path / "site" / "train.csv", 40, seed=4)
    missing = federity("--wallet", site, "train", "--data", str(data), "--branch", "varaint", cwd=repo)
    assert missing.returncode == 1 and "no branch named 'varaint'" in missing.stderr and "what to do:" in missing.stderr
    trained = federity("--wallet", site, "--json", "train", "--data", str(data), "--branch", "variant", cwd=repo)
    assert trained.returncode == 0, trained.stderr
    update = json.loads(trained.stdout)
    assert (update["target"], update["branch"]) == ("variant", f"updates/variant/r1/{site_key[:8]}")
    federity("checkout", "variant", cwd=repo)
    [listed] = json.loads(federity("updates", "--json", cwd=repo).stdout)["updates"]
    assert (listed["id"], listed["target"], listed["status"]) == (update["update"], "variant", "pending")
    federity("--wallet", owner, "review", "approve", update["update"], cwd=repo)
    aggregated = json.loads(federity("--wallet", owner, "--json", "aggregate", cwd=repo).stdout)
    assert aggregated["updates"] == [update["update"]] and aggregated["round"] == 1
    tips = subprocess.run(["git", "rev-parse", "variant", "main"], cwd=repo, capture_output=True, text=True)
    variant_tip, main_tip = tips.stdout.split()
    assert variant_tip == aggregated["commit"] and main_tip != variant_tip
    assert json.loads(federity("verify", "--json", cwd=repo).stdout)["ok"]


def test_round_serve_refuses_a_bad_schedule_or_name_before_registering_anything(repo: Repository) -> None:
    both = federity("round", "serve", "--pool", "p", "--cron", "0 2 * * *", "--interval", "60", cwd=repo.root)
    assert both.returncode == 2 and "give --cron or --interval, not both" in both.stderr
    named = federity("round", "serve", "--pool", "p", "--name", "a/b", cwd=repo.root)
    assert named.returncode == 1 and "'a/b' is not a deployment name" in named.stderr
    assert "pass --name" in named.stderr and "Traceback" not in named.stderr
