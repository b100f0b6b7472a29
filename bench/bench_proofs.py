"""Benchmark of proofs of training: prove time, peak memory, verify time and proof size per audited step, and how
they grow with the proved parameters and the batch size. Writes ``bench/results/proofs.json``.

Each configuration runs in fresh processes: one compiles the circuit and makes its keys (setup, reported separately),
then one proves a step (its peak resident memory is the proving process's, keys and SRS included), then the
verification is timed. The SRS is generated offline (insecure), as for local work.

    python bench/bench_proofs.py            # the whole grid, about 10 minutes on 2 cores
    python bench/bench_proofs.py --quick    # the small configurations only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "proofs.json"
# (features, classes, batch): parameters = features * classes + classes
GRID = [(4, 2, 4), (30, 2, 4), (30, 2, 8), (30, 2, 16), (60, 4, 8), (100, 10, 8)]
QUICK = GRID[:3]
SCALE = 10
TARGET = {"parameters": 1000, "prove_seconds": 30, "prove_memory_mb": 2048, "verify_seconds": 0.5,
          "proof_bytes": 30_000}


def _child(stage: str, features: int, classes: int, batch: int, workdir: Path) -> dict[str, float]:
    """One stage in this (child) process: ``setup`` or ``prove``; reports its own time and peak memory."""
    from federity.proofs.circuit import StepCircuit, call_ezkl, compile_step, logrows, prepare
    from federity.proofs.prove import compact_proof

    circuit = StepCircuit(features, classes, batch, 0.1, SCALE)
    srs, compiled_dir = workdir / "srs.bin", workdir / "compiled"
    started = time.perf_counter()
    if stage == "setup":
        compiled_dir.mkdir()
        compiled = compile_step(circuit, compiled_dir)
        call_ezkl("gen_srs", str(srs), logrows(compiled.settings.read_bytes()))
        prepare(compiled.settings.read_bytes(), compiled.compiled.read_bytes(), srs, "bench")
        result = {"logrows": logrows(compiled.settings.read_bytes())}
    else:
        files = prepare((compiled_dir / "settings.json").read_bytes(), (compiled_dir / "step.ezkl").read_bytes(),
                        srs, "bench")
        rng = np.random.default_rng(1)
        inputs = circuit.input_values(rng.normal(0, 0.3, (features, classes)), rng.normal(0, 0.3, classes),
                                      rng.normal(0, 1, (batch, features)), rng.integers(0, classes, batch),
                                      np.zeros(features + classes))
        (workdir / "input.json").write_text(json.dumps({"input_data": inputs}))
        call_ezkl("gen_witness", str(workdir / "input.json"), str(files.compiled), str(workdir / "witness.json"))
        proved = time.perf_counter()
        call_ezkl("prove", str(workdir / "witness.json"), str(files.compiled), str(files.pk),
                  str(workdir / "proof.json"), str(srs))
        prove_seconds = time.perf_counter() - proved
        stored = compact_proof(json.loads((workdir / "proof.json").read_text()))
        verified = time.perf_counter()
        ok = call_ezkl("verify", str(workdir / "proof.json"), str(files.settings), str(files.vk), str(srs))
        result = {"prove_seconds": prove_seconds, "verify_seconds": time.perf_counter() - verified,
                  "verified": bool(ok), "proof_bytes": len(json.loads(stored)["proof"]) // 2,
                  "stored_bytes": len(stored), "pk_bytes": files.pk.stat().st_size}
    result["seconds"] = time.perf_counter() - started
    result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _run(stage: str, config: tuple[int, int, int], workdir: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", stage, *map(str, config), str(workdir)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the small configurations")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stage, f, c, b, workdir = args.child
        print(json.dumps(_child(stage, int(f), int(c), int(b), Path(workdir))))
        return
    rows = []
    for features, classes, batch in QUICK if args.quick else GRID:
        with tempfile.TemporaryDirectory(prefix="federity-bench-proofs-") as tmp:
            os.environ["FEDERITY_CACHE"] = str(Path(tmp) / "cache")
            setup = _run("setup", (features, classes, batch), Path(tmp))
            prove = _run("prove", (features, classes, batch), Path(tmp))
        row = {"features": features, "classes": classes, "batch": batch,
               "parameters": features * classes + classes, "logrows": setup["logrows"],
               "setup_seconds": round(setup["seconds"], 2), "setup_memory_mb": round(setup["peak_memory_mb"]),
               "prove_seconds": round(prove["prove_seconds"], 2), "prove_memory_mb": round(prove["peak_memory_mb"]),
               "verify_seconds": round(prove["verify_seconds"], 3), "verified": prove["verified"],
               "proof_bytes": prove["proof_bytes"], "stored_proof_bytes": prove["stored_bytes"],
               "proving_key_mb": round(prove["pk_bytes"] / 2**20)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                                   "scale": SCALE, "targets": TARGET, "results": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
