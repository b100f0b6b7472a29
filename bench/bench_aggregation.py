"""Benchmark of weighted-mean aggregation (FedAvg, McMahan et al. 2017, "Communication-Efficient Learning of Deep
Networks from Decentralized Data") on K updates of P float32 parameters: Federity's methods beside plain numpy and
Flower's ``flwr.server.strategy.aggregate.aggregate`` and ``aggregate_inplace``, on the same arrays in the same run.
Writes ``bench/results/aggregation.json`` and prints a table.

    make bench                                   # installs .venv-flower (bench/flower-*.txt) and runs this
    python bench/bench_aggregation.py --flower-python .venv-flower/bin/python
    python bench/bench_aggregation.py --quick    # small sizes, a smoke test (seconds)
    python bench/bench_aggregation.py --updates 20 --parameters 5000000 --methods numpy_loop,flwr_aggregate

What is measured, for each method, each in a fresh process of its own (``--child``):

* seconds: the best of ``--repeats`` calls of the method on inputs already in memory; GB/s is the input
  (K x P x 4 bytes, GB = 1e9 bytes) over those seconds. ``read_pass`` (np.sum of every input array) is the read
  bandwidth a method that reads each input once can hope for.
* peak extra MiB: the process's peak resident memory (ru_maxrss) while it runs the method ``--repeats`` times,
  minus its resident memory just before the first call, after the inputs are generated and prepared and the
  peak is reset (``/proc/self/clear_refs``). It covers what the method allocates beyond holding its inputs:
  outputs, temporaries, copies. It excludes the inputs themselves and the libraries imported.
* max abs error: against the weighted mean computed in float64, outside the timed region; the run fails (after
  writing its results) if a method is off by more than ``--tolerance``.

Flower cannot be installed beside the project's pins (see bench/flower-constraints.txt), so its methods run in the
interpreter of a separate environment, ``--flower-python``. Each process generates the inputs from the same seed
with the same numpy (the run stops if the numpy versions or the inputs' digests differ), so every method sees the
same bytes.

To add a method, put it in ``METHODS`` in this file (each method runs in a child process that runs this file
anew): a function ``(updates, n_samples) -> mean`` where ``updates[k]`` is the list of layer arrays of update k and
``n_samples[k]`` its weight; it must not modify its inputs. Wrap it in ``Method`` to convert the inputs into another
form outside the timed region or to run it under Flower's interpreter.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "aggregation.json"
QUICK_RESULTS = ROOT / "bench" / "results" / "aggregation-quick.tmp"  # ignored by git
DEFAULT_FLOWER_PYTHON = ROOT / ".venv-flower" / "bin" / "python"
QUICK = {"updates": 4, "parameters": 200_000, "repeats": 2}

Layers = list[np.ndarray]
AggregateFn = Callable[[list[Layers], list[int]], Layers]


@dataclass(frozen=True)
class Method:
    """A method with an untimed ``prepare`` step turning (updates, n_samples) into the one argument ``run`` takes.

    ``keeps_arrays=False`` lets the harness drop the generated arrays once prepared (the prepared form holds the
    data, as Flower's serialized ``FitRes`` do), so the memory baseline holds the inputs once. ``flower`` runs the
    method under ``--flower-python``.
    """

    run: Callable[[Any], Layers]
    prepare: Callable[[list[Layers], list[int]], Any]
    keeps_arrays: bool = True
    flower: bool = False
    note: str = ""


def numpy_loop(updates: list[Layers], n_samples: list[int]) -> Layers:
    """The plain numpy weighted mean: ``acc += layer * w`` over the updates, in float32."""
    total = sum(n_samples)
    out = [np.zeros_like(layer) for layer in updates[0]]
    for layers, n in zip(updates, n_samples, strict=True):
        weight = np.float32(n / total)
        for acc, layer in zip(out, layers, strict=True):
            acc += layer * weight
    return out


def _flower_pairs(updates: list[Layers], n_samples: list[int]) -> list[tuple[Layers, int]]:
    """Flower's ``aggregate`` input: ``[(NDArrays, num_examples), ...]``."""
    return list(zip(updates, n_samples, strict=True))


def _flower_aggregate(results: list[tuple[Layers, int]]) -> Layers:
    from flwr.server.strategy.aggregate import aggregate

    return aggregate(results)


def _flower_fit_results(updates: list[Layers], n_samples: list[int]) -> list[tuple[None, Any]]:
    """Flower's ``aggregate_inplace`` input: ``[(ClientProxy, FitRes), ...]``, the parameters serialized as Flower
    sends them (``ndarrays_to_parameters``). The function never reads the proxy, so it is None."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    return [(None, FitRes(status=Status(code=Code.OK, message=""), parameters=ndarrays_to_parameters(layers),
                          num_examples=n, metrics={}))
            for layers, n in zip(updates, n_samples, strict=True)]


def _flower_aggregate_inplace(results: list[tuple[None, Any]]) -> Layers:
    from flwr.server.strategy.aggregate import aggregate_inplace

    return aggregate_inplace(results)


def _layer_names(layers: Layers) -> list[str]:
    return [f"layer{i}" for i in range(len(layers))]


def _federity_in_memory(updates: list[Layers], n_samples: list[int]) -> tuple[Any, ...]:
    """The engine's inputs over the arrays in place: a current model (all updates trained on it, so FedAvg never
    reads it) and one source per update."""
    from federity.aggregation.engine import Contribution, InMemory

    names = _layer_names(updates[0])
    model = InMemory({n: np.zeros_like(layer) for n, layer in zip(names, updates[0], strict=True)})
    sources = [InMemory(dict(zip(names, layers, strict=True))) for layers in updates]
    return model, sources, [Contribution(n) for n in n_samples]


def _federity_fedavg(prepared: tuple[Any, ...]) -> Layers:
    """Federity's streaming FedAvg (fedavg@2), the result kept in memory: the maths alone."""
    from federity.aggregation import get_strategy
    from federity.aggregation.engine import ArraySink, aggregate_into

    model, sources, contributions = prepared
    sink = ArraySink(model.layout)
    aggregate_into(get_strategy("fedavg"), model, sources, [model], [0] * len(sources), contributions, sink)
    return [sink.tensors[n] for n in sorted(sink.tensors, key=lambda n: int(n.removeprefix("layer")))]


def _federity_files(updates: list[Layers], n_samples: list[int]) -> tuple[Any, ...]:
    """Each update written as a safetensors file (into the page cache, as the DVC cache holds them) and opened
    as ``federity aggregate`` reads them."""
    import tempfile

    from federity.aggregation.engine import Contribution, InMemory
    from federity.weights.files import tensors_to_bytes
    from federity.weights.tensor_file import TensorFile

    work = Path(tempfile.mkdtemp(prefix="bench-aggregation-"))
    names = _layer_names(updates[0])
    mapped = []
    for k, layers in enumerate(updates):
        path = work / f"update-{k}.safetensors"
        path.write_bytes(tensors_to_bytes(dict(zip(names, layers, strict=True))))
        mapped.append(TensorFile(path, f"update {k}"))
    model = InMemory({n: np.zeros_like(layer) for n, layer in zip(names, updates[0], strict=True)})
    return model, mapped, [Contribution(n) for n in n_samples], work


def _federity_fedavg_files(prepared: tuple[Any, ...]) -> Layers:
    """Federity's streaming FedAvg from safetensors files (read in pieces) to the canonical output file, hashed
    (sha256) as ``federity aggregate`` writes it; the result read back is part of the time."""
    from federity.aggregation import get_strategy
    from federity.aggregation.engine import aggregate_into
    from federity.weights.tensor_file import TensorFile

    model, mapped, contributions, work = prepared
    out = work / "aggregate.safetensors"
    aggregate_into(get_strategy("fedavg"), model, mapped, [model], [0] * len(mapped), contributions, out)
    result = TensorFile(out, "the aggregate")
    return [result.tensor(n) for n, _ in sorted(
        result.layout.items(), key=lambda item: int(item[0].removeprefix("layer")))]


# name -> method.
METHODS: dict[str, AggregateFn | Method] = {
    "numpy_loop": numpy_loop,
    "federity_fedavg": Method(run=_federity_fedavg, prepare=_federity_in_memory,
                              note="fedavg@2 through the streaming engine, arrays in memory, result in memory"),
    "federity_fedavg_files": Method(run=_federity_fedavg_files, prepare=_federity_files, keeps_arrays=False,
                                    note="fedavg@2 from safetensors files (page cache) read in pieces to the "
                                         "canonical output file, sha256 included, read back"),
    "flwr_aggregate": Method(run=_flower_aggregate, prepare=_flower_pairs, flower=True,
                             note="multiplies every update by its num_examples into new arrays, then sums them"),
    "flwr_aggregate_inplace": Method(run=_flower_aggregate_inplace, prepare=_flower_fit_results,
                                     keeps_arrays=False, flower=True,
                                     note="inputs are serialized FitRes; the time includes deserializing each "
                                          "update (parameters_to_ndarrays), as in Flower's FedAvg"),
}
READ_PASS = "read_pass"


def _method(name: str) -> Method:
    entry = METHODS[name]
    if isinstance(entry, Method):
        return entry
    return Method(run=lambda prepared, fn=entry: fn(*prepared), prepare=lambda u, n: (u, n))


def layer_shapes(parameters: int) -> list[tuple[int, ...]]:
    """Four tensors of different sizes that add up to ``parameters``, like a model's layers: three matrices of
    512 columns (64 %, 24 %, 10 % of the parameters) and a vector with the rest."""
    if parameters < 4 * 512:
        raise SystemExit(f"--parameters {parameters}: at least {4 * 512} are needed for four layers")
    shapes: list[tuple[int, ...]] = [(max(1, int(parameters * share) // 512), 512) for share in (0.64, 0.24, 0.10)]
    shapes.append((parameters - sum(rows * cols for rows, cols in shapes),))
    return shapes


def make_update(seed: int, k: int, shapes: list[tuple[int, ...]]) -> Layers:
    """Update ``k``: standard-normal float32 layers, from its own generator so any process can make any update."""
    rng = np.random.default_rng([seed, k])
    return [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]


def make_n_samples(seed: int, updates: int) -> list[int]:
    """The updates' weights: sample counts between 100 and 10,000."""
    return [int(n) for n in np.random.default_rng([seed, 1 << 20]).integers(100, 10_001, updates)]


def reference_mean(seed: int, shapes: list[tuple[int, ...]], n_samples: list[int]) -> list[np.ndarray]:
    """The weighted mean in float64, regenerating one update at a time."""
    total = sum(n_samples)
    out = [np.zeros(shape, np.float64) for shape in shapes]
    for k, n in enumerate(n_samples):
        for acc, layer in zip(out, make_update(seed, k, shapes), strict=True):
            acc += layer.astype(np.float64) * (n / total)
    return out


def _digest(updates: list[Layers]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for layers in updates:
        for layer in layers:
            h.update(memoryview(layer).cast("B"))
    return h.hexdigest()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    """Set the process's peak resident memory to its current one (Linux 4.0+); False where that is refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None  # the previous result is freed before the next call, not held through it
        gc.collect()
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def child(name: str, updates: int, parameters: int, repeats: int, seed: int) -> dict[str, Any]:
    """Run one method (or the read pass) in this process and report its time, peak memory and error."""
    method = None if name == READ_PASS else _method(name)
    if method is not None and method.flower:
        import flwr.server.strategy.aggregate  # imported before the memory baseline, so not counted
    shapes = layer_shapes(parameters)
    n_samples = make_n_samples(seed, updates)
    arrays = [make_update(seed, k, shapes) for k in range(updates)]
    digest = _digest(arrays)
    if method is None:
        prepared: Any = arrays
        run: Callable[[], Any] = lambda: [float(layer.sum()) for layers in arrays for layer in layers]  # noqa: E731
    else:
        prepared = method.prepare(arrays, n_samples)
        if not method.keeps_arrays:
            del arrays
        run = lambda: method.run(prepared)  # noqa: E731
    gc.collect()
    reset = _reset_peak()
    baseline = _rss_mib()
    seconds, result = _best_of(run, repeats)
    peak = _rss_mib()
    # without the reset, ru_maxrss is the peak since the process started (input generation included): no figure
    row: dict[str, Any] = {"method": name, "seconds": seconds, "peak_extra_mib": peak - baseline if reset else None,
                           "baseline_mib": baseline, "peak_reset": reset, "numpy": np.__version__,
                           "inputs_blake2b": digest}
    if method is not None:
        if method.keeps_arrays and _digest(arrays) != digest:
            raise SystemExit(f"{name} modified its inputs")
        reference = reference_mean(seed, shapes, n_samples)
        if [r.shape for r in result] != [r.shape for r in reference]:
            raise SystemExit(f"{name} returned shapes {[r.shape for r in result]}, expected {shapes}")
        row["dtype"] = str(result[0].dtype)
        row["max_abs_error"] = max(float(np.max(np.abs(r.astype(np.float64) - ref)))
                                   for r, ref in zip(result, reference, strict=True))
    if method is not None and method.note:
        row["note"] = method.note
    if method is not None and method.flower:
        import flwr

        row["flwr"] = flwr.__version__
    return row


def _run_child(python: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [python, str(Path(__file__).resolve()), "--child", name, "--updates", str(args.updates),
               "--parameters", str(args.parameters), "--repeats", str(args.repeats), "--seed", str(args.seed)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed under {python}:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _flower_python(args: argparse.Namespace) -> str:
    if args.flower_python:
        return args.flower_python
    if DEFAULT_FLOWER_PYTHON.exists():
        return str(DEFAULT_FLOWER_PYTHON)
    raise SystemExit("Flower's environment is missing: `make bench` makes .venv-flower from bench/flower-*.txt; "
                     "or pass --flower-python, or leave the flwr_* methods out with --methods")


def main() -> None:
    """Run every method in its own process, check that they agree on the inputs, write and print the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=10, help="K, the number of updates (default 10)")
    parser.add_argument("--parameters", type=int, default=25_000_000, help="P per update (default 25,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="N, the best of N calls is reported (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="largest max abs error against the float64 mean that counts as agreeing (default 1e-5)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke test: {QUICK['updates']} x {QUICK['parameters']:,}, best of {QUICK['repeats']}")
    parser.add_argument("--methods", help=f"comma-separated, default all: {', '.join([READ_PASS, *METHODS])}")
    parser.add_argument("--flower-python", help=f"the interpreter with flwr (default {DEFAULT_FLOWER_PYTHON})")
    parser.add_argument("--output", type=Path, help=f"default {RESULTS.relative_to(ROOT)}, "
                                                    f"{QUICK_RESULTS.relative_to(ROOT)} with --quick")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.output = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    if args.child:
        print(json.dumps(child(args.child, args.updates, args.parameters, args.repeats, args.seed)))
        return
    names = args.methods.split(",") if args.methods else [READ_PASS, *METHODS]
    unknown = [n for n in names if n != READ_PASS and n not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {[READ_PASS, *METHODS]}")
    flower = _flower_python(args) if any(n != READ_PASS and _method(n).flower for n in names) else None
    input_bytes = args.updates * args.parameters * 4
    rows = []
    for name in names:
        python = flower if name != READ_PASS and _method(name).flower else sys.executable
        row = _run_child(python, name, args)
        row["gb_per_s"] = input_bytes / row["seconds"] / 1e9
        rows.append(row)
        error = f"{row['max_abs_error']:.2e}" if "max_abs_error" in row else "-"
        extra = "n/a" if row["peak_extra_mib"] is None else f"{row['peak_extra_mib']:.1f}"
        print(f"{name:26s} {row['seconds']:8.3f} s {row['gb_per_s']:7.2f} GB/s {extra:>9s} MiB extra   "
              f"max abs error {error}", flush=True)
    if len({r["numpy"] for r in rows}) > 1 or len({r["inputs_blake2b"] for r in rows}) > 1:
        raise SystemExit(f"the methods did not see the same inputs: {[(r['method'], r['numpy']) for r in rows]}")
    summary = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": rows[0]["numpy"],
                    "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")},
        "updates": args.updates, "parameters": args.parameters, "layers": layer_shapes(args.parameters),
        "dtype": "float32", "input_bytes": input_bytes, "repeats": args.repeats, "seed": args.seed,
        "tolerance": args.tolerance,
        "measures": {
            "seconds": "best of `repeats` calls, inputs already in memory",
            "gb_per_s": "input bytes (updates x parameters x 4) / seconds / 1e9",
            "peak_extra_mib": "MiB (2**20 bytes): ru_maxrss during the calls minus resident memory just before "
                              "them (inputs generated and prepared, peak reset): outputs, temporaries and copies, "
                              "not the inputs",
            "max_abs_error": "against the float64 weighted mean",
        },
        "results": [{k: round(v, 6) if isinstance(v, float) and k != "max_abs_error" else v for k, v in r.items()}
                    for r in rows],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{args.updates} updates x {args.parameters:,} float32 parameters = {input_bytes / 1e9:.2f} GB of input; "
          f"wrote {args.output}")
    off = [r["method"] for r in rows if r.get("max_abs_error", 0.0) > args.tolerance]
    if off:
        raise SystemExit(f"{off} differ from the float64 weighted mean by more than {args.tolerance}")


if __name__ == "__main__":
    main()
