#!/usr/bin/env bash
# A repository's life, end to end, with the real `federity` command: two wallets (an owner and a hospital),
# a genesis commit, a membership change, a contributor's update on its own branch, the owner's new weights on
# main, log, diff, revert, verify — then one altered weights object and one forged signature, which
# `federity verify` catches and names. The repository is private (the default): its weights are sealed to its
# members, so each party reads them with its own wallet (FEDERITY_WALLET below, or --wallet) and exports them to
# work on them outside Federity. Everything happens under a temporary directory (or $WALKTHROUGH_DIR).
set -euo pipefail

work="${WALKTHROUGH_DIR:-$(mktemp -d -t federity-walkthrough-XXXXXX)}"
mkdir -p "$work"
cd "$work"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Two wallets: the owner (a research group) and a contributor (a hospital)"
federity wallet new --path owner.json
federity wallet new --path hospital.json
OWNER=$(federity --wallet owner.json wallet show --json | python -c 'import json,sys; print(json.load(sys.stdin)["pubkey"])')
HOSPITAL=$(federity --wallet hospital.json wallet show --json | python -c 'import json,sys; print(json.load(sys.stdin)["pubkey"])')

step "The owner creates a private repository: an untrained MLP, pushed to a local remote (bare git + DVC storage)"
export FEDERITY_WALLET="$work/owner.json"
federity models
federity --wallet owner.json init owner-repo --name breast-cancer --model mlp \
  --model-arg in_features=30 --model-arg hidden=8 --remote "$work/remote.git"
cd owner-repo
federity --wallet ../owner.json members add "$HOSPITAL" --role contributor
federity push

step "The hospital clones, trains elsewhere, and commits its weights on an update branch"
cd "$work"
export FEDERITY_WALLET="$work/hospital.json"
federity clone "$work/remote.git" hospital-repo
cd hospital-repo
federity branch updates/hospital-a
federity checkout updates/hospital-a
federity export HEAD --format safetensors --out ../base.safetensors  # model/ holds the weights sealed
python - <<'PY'
# A stand-in for training elsewhere: nudge every tensor (`federity train` trains on local data).
import numpy as np
from safetensors.numpy import load_file, save_file
tensors = load_file("../base.safetensors")
rng = np.random.default_rng(1)
save_file({k: v + 0.01 * rng.standard_normal(v.shape).astype(v.dtype) for k, v in tensors.items()},
          "../hospital-a.safetensors")
PY
federity --wallet ../hospital.json commit --weights ../hospital-a.safetensors -m "Local training at hospital A"
federity push

step "The owner pulls, compares, commits new weights on main, and reverts them"
cd "$work/owner-repo"
export FEDERITY_WALLET="$work/owner.json"
federity pull
git fetch --quiet origin
federity diff main origin/updates/hospital-a  # an update is sealed to its author and the reviewers: the owner
federity export HEAD --format safetensors --out ../main.safetensors
python - <<'PY'
import numpy as np
from safetensors.numpy import load_file, save_file
tensors = load_file("../main.safetensors")
save_file({k: v * np.asarray(0.5, v.dtype) for k, v in tensors.items()}, "../halved.safetensors")
PY
federity --wallet ../owner.json commit --weights ../halved.safetensors -m "Halve every weight"
federity show HEAD
federity --wallet ../owner.json revert HEAD
federity diff HEAD~2 HEAD
federity log --graph --all
federity push
federity verify

step "Tampering is caught: one altered weights object, one forged signature (in throwaway copies)"
cp -r "$work/owner-repo" "$work/tampered-weights"
cd "$work/tampered-weights"
# the weights object of main's head (an altered update's weights would be listed as a rejected update instead)
object=$(python -c 'import json, yaml
d = yaml.safe_load(open("model.dvc"))["outs"][0]["md5"].removesuffix(".dir")
w = next(e["md5"] for e in json.load(open(f".dvc/cache/files/md5/{d[:2]}/{d[2:]}.dir"))
         if e["relpath"] == "model.safetensors")
print(f".dvc/cache/files/md5/{w[:2]}/{w[2:]}")')
chmod u+w "$object"; printf 'x' >> "$object"
federity verify && { echo "verify should have failed"; exit 1; } || echo "^ verify failed as it must"

cp -r "$work/owner-repo" "$work/forged-signature"
cd "$work/forged-signature"
git cat-file commit HEAD | sed 's/^Federity-Signature: ./Federity-Signature: 1/' > ../forged-commit
forged=$(git hash-object -t commit -w ../forged-commit)
git update-ref refs/heads/main "$forged"
federity verify && { echo "verify should have failed"; exit 1; } || echo "^ verify failed as it must"

step "Done: the walk-through lives in $work"
