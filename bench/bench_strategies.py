"""Benchmark: every aggregation strategy's time and peak memory across K updates and P float32 parameters, through
the streaming engine from safetensors files read in pieces to the canonical output file, as ``federity aggregate``
and ``verify`` run it. Writes ``bench/results/strategies.json`` and prints a table.

    python bench/bench_strategies.py            # the cases of CASES (about 12 minutes here, 12 GB of scratch disk)
    python bench/bench_strategies.py --quick    # small cases, a smoke test

What is measured, per (strategy, K, P), each run in a fresh process:

* seconds: one aggregation (`aggregate_into`): the inputs are files in the page cache (written just before),
  read in pieces; the output is written and hashed (sha256). GB/s is the input (K x P x 4 bytes) over the seconds.
* peak RSS MiB: the whole process's peak resident memory during the aggregation (VmHWM of /proc/self/status,
  after resetting it through /proc/self/clear_refs just before; not ru_maxrss, which keeps the peak of the
  process this one was forked from): the interpreter, numpy and Federity's imports, the open inputs and
  everything the engine holds. Compared with one model's size (P x 4 bytes).
* peak extra MiB: that peak minus the resident memory just before the aggregation. It can be 0 when the engine's
  chunks fit in memory the process had already freed (the allocator reuses it without growing the process).
* sealed: the case's inputs and output are sealed objects, as a private repository holds them (every input
  decrypted a 256 KiB chunk at a time as it is read, the output encrypted as it is written).

The recomputation `verify` makes of an aggregate is this same call on the same files (federity.repo.aggregate's
``aggregate_weights``), so these figures are also verify's per aggregate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "strategies.json"
PARAMS = {"trimmed-mean": {"fraction": 0.2}, "krum": {"byzantine": 1}, "multi-krum": {"byzantine": 1},
          "bulyan": {"byzantine": 1}}
"""Parameters for the strategies that need some (f = 1 attacker assumed)."""
CASES = [(10, 1_000_000, None, False), (10, 25_000_000, None, False), (100, 1_000_000, None, False),
         (100, 25_000_000, ("fedavg", "fedmedian", "trimmed-mean", "krum"), False),
         (100, 25_000_000, ("fedavg", "krum"), True)]
"""(K, P, strategies or None for all installed, sealed): K=100 x 25M is the issue's memory target (100 updates of
100 MB); sealed, the inputs and the output are sealed objects, as in a private repository."""
QUICK = [(4, 200_000, None, False), (12, 200_000, None, False), (12, 200_000, ("fedavg", "krum"), True)]
SEALING_KEY_ID, SEALING_KEY = b"bench-strategies".ljust(32, b"-"), bytes(range(32))
"""The group key every sealed input and output of this benchmark is sealed under (a benchmark's, public)."""


def _layers(parameters: int) -> dict[str, tuple[int, ...]]:
    """A model's worth of tensors adding up to ``parameters``: three 512-column matrices and a vector."""
    rows = [max(1, int(parameters * share) // 512) for share in (0.64, 0.24, 0.10)]
    shapes = {f"layer{i}.weight": (r, 512) for i, r in enumerate(rows)}
    shapes["head.bias"] = (parameters - sum(r * 512 for r in rows),)
    return shapes


def _sealing(sealed: bool) -> Any:
    from federity.sealing.objects import Sealing

    return Sealing({SEALING_KEY_ID: SEALING_KEY}) if sealed else None


def _key_for(header: Any) -> bytes | None:
    return header.data_key({SEALING_KEY_ID: SEALING_KEY})


def _write_inputs(work: Path, k: int, parameters: int, sealed: bool) -> None:
    """The model and K updates as canonical safetensors files (updates = model + small random changes), sealed
    objects when ``sealed``."""
    from federity.weights.tensor_file import CanonicalWriter

    shapes = _layers(parameters)
    layout = {name: (shape, "float32") for name, shape in shapes.items()}
    rng = np.random.default_rng(0)
    model = {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in shapes.items()}
    for index in range(-1, k):
        path = work / ("model.safetensors" if index < 0 else f"update-{index}.safetensors")
        writer = CanonicalWriter(path, layout, _sealing(sealed))
        for name, tensor in model.items():
            flat = tensor.reshape(-1)
            value = flat if index < 0 else flat + rng.standard_normal(flat.size, dtype=np.float32) * np.float32(0.01)
            writer.write(name, 0, value)
        writer.finish()


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in MiB (VmHWM is the peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"/proc/self/status has no {field}")


def child(strategy: str, k: int, work: Path, sealed: bool) -> dict[str, Any]:
    """One aggregation in this process: seconds and peak extra resident memory."""
    from federity.aggregation import get_strategy
    from federity.aggregation.engine import Contribution, aggregate_into
    from federity.weights.tensor_file import TensorFile

    combiner = get_strategy(strategy, PARAMS.get(strategy))
    key_for = _key_for if sealed else None
    model = TensorFile(work / "model.safetensors", "model", key_for)
    updates = [TensorFile(work / f"update-{i}.safetensors", f"update {i}", key_for) for i in range(k)]
    contributions = [Contribution(100 + i) for i in range(k)]
    out = work / f"out-{strategy}.safetensors"
    state_out = work / f"state-{strategy}.safetensors" if combiner.state else None
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _status_mib("VmRSS")
    started = time.perf_counter()
    aggregate_into(combiner, model, updates, [model], [0] * k, contributions, out, state_out=state_out,
                   sealing=_sealing(sealed))
    seconds = time.perf_counter() - started
    peak = _status_mib("VmHWM")
    out.unlink()
    if state_out is not None:
        state_out.unlink()
    return {"strategy": f"{combiner.name}@{combiner.version}", "sealed": sealed, "seconds": seconds,
            "peak_extra_mib": peak - baseline, "baseline_mib": baseline, "peak_rss_mib": peak}


def main() -> None:
    """Write each case's inputs once, run every strategy on them in its own process, record the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small cases; results are not written")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        strategy, k, work, sealed = args.child
        print(json.dumps(child(strategy, int(k), Path(work), sealed == "sealed")))
        return
    from federity.aggregation import installed_strategies

    rows = []
    for k, parameters, chosen, sealed in (QUICK if args.quick else CASES):
        work = Path(tempfile.mkdtemp(prefix="bench-strategies-", dir=os.environ.get("BENCH_SCRATCH")))
        try:
            _write_inputs(work, k, parameters, sealed)
            model_mib = parameters * 4 / 2**20
            for strategy in chosen or installed_strategies():
                out = subprocess.run([sys.executable, __file__, "--child", strategy, str(k), str(work),
                                      "sealed" if sealed else "plain"], capture_output=True, text=True)
                if out.returncode != 0:
                    reason = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
                    rows.append({"strategy": strategy, "sealed": sealed, "k": k, "parameters": parameters,
                                 "refused": reason})
                    print(f"{strategy:14s} K={k:4d} P={parameters:>11,}  refused: {reason}", flush=True)
                    continue
                row = {**json.loads(out.stdout.strip().splitlines()[-1]), "k": k, "parameters": parameters,
                       "model_mib": model_mib}
                row["gb_per_s"] = k * parameters * 4 / row["seconds"] / 1e9
                row["peak_rss_over_model"] = row["peak_rss_mib"] / model_mib
                rows.append(row)
                print(f"{row['strategy']:16s}{' sealed' if sealed else ''} K={k:4d} P={parameters:>11,}  "
                      f"{row['seconds']:8.2f} s "
                      f"{row['gb_per_s']:6.2f} GB/s  peak RSS {row['peak_rss_mib']:7.1f} MiB "
                      f"({row['peak_rss_over_model']:.2f} x one model), +{row['peak_extra_mib']:.1f} MiB",
                      flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if args.quick:
        return
    RESULTS.write_text(json.dumps({
        "cpus": os.cpu_count(),
        "measures": {"seconds": "one aggregate_into from files (page cache) read in pieces to the hashed output file "
                                "(sealed: inputs decrypted as they are read, the output sealed as it is written)",
                     "peak_rss_mib": "the process's peak resident memory during the call (VmHWM after a "
                                     "reset): interpreter, imports, open inputs and the engine, MiB",
                     "peak_extra_mib": "peak_rss_mib minus resident memory just before the call, MiB",
                     "peak_rss_over_model": "peak_rss_mib / one model's size (P x 4 bytes)"},
        "results": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
