"""Benchmark: Flower's deployment runtime running the federated task of Federity's demo, round by round, so that
Federity's per-round latency (bench/bench_rounds.py) can be reported as a ratio to Flower's.

    make .venv-flower/.installed      # Flower's environment (bench/flower-*.txt), once
    .venv/bin/python bench/bench_flower_rounds.py --flower-python .venv-flower/bin/python
    .venv/bin/python bench/bench_flower_rounds.py --flower-python .venv-flower/bin/python --rounds 5 --sites 3

Writes ``bench/results/flower_rounds.json`` and prints a summary.

**The task** is the demo's (federity/demo.py, federity/demo_data.py): scikit-learn's bundled breast-cancer data,
split across the sites by the project's own ``split_breast_cancer`` and written by ``write_split`` (each site's
shard CSV, the owner's held-out CSV), in this interpreter; logistic regression on the 30 features (2 classes),
starting from the demo's genesis model (``torch.manual_seed(0)``, then the zoo's ``logistic-regression``, built by
the project's code); local training of ``DEMO_PARAMS`` (2 epochs of plain SGD, lr 0.05, batch size 16, seed 0);
FedAvg weighted by sample counts; 5 rounds. The Flower app, ``bench/flower_rounds/``, trains it in numpy.

**The federation** is Flower's deployment mode on localhost, its defaults otherwise: ``flower-superlink
--insecure`` and one ``flower-supernode --insecure`` per site (free ports; each SuperNode gets its shard's path as
``--node-config 'data-path="..."'``), each starting its SuperExec, which starts a ``flwr-serverapp`` /
``flwr-clientapp`` process per task; the app is submitted with ``flwr run <app> bench --stream`` against a SuperLink
connection ``bench`` (its address, insecure) in a Flower configuration of its own (``FLWR_HOME`` in the temporary
directory). Telemetry, update checks and runtime dependency installation are off. The processes' logs go to the
temporary directory; a process that dies stops the benchmark with the tail of its log.

**What is measured** (wall clock, ``time.time()``, all processes on this machine):

* ``round_seconds``: inside the ServerApp, from the start of each round's fit (``configure_train``) to the end of its
  aggregation (``aggregate_train`` returned). The held-out evaluation after each round is outside it.
  ``round_seconds_median`` is over every round; ``round_seconds_median_after_first`` leaves the first out, as
  bench/bench_rounds.py reports Federity's ``wall_seconds_median``.
* per round (``rounds``): the slowest site's ClientApp work (reading its shard, training, scoring; timed inside the
  ClientApp), and the round's overhead (its seconds minus that); ``to_first_site`` (fit start to the first
  ClientApp starting its work: the message reaching the SuperNode and a ClientApp process being started for it) and
  ``last_site_to_aggregated`` (the last ClientApp finishing to the aggregate: the reply's way back and FedAvg).
* ``startup_seconds``: from starting the SuperLink to the start of the first round's fit, with its phases
  (``startup``); ``total_seconds``: from starting the SuperLink to the ServerApp finishing its last round.
* ``accuracy_per_round``: the global model's accuracy on the owner's held-out set after each round.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "flower_rounds.json"
APP_DIR = ROOT / "bench" / "flower_rounds"
DEFAULT_FLOWER_PYTHON = ROOT / ".venv-flower" / "bin" / "python"
FEDERITY_ROUNDS = ROOT / "bench" / "results" / "rounds.json"
FLOWER_COMMANDS = ("flower-superlink", "flower-supernode", "flower-superexec", "flwr", "flwr-serverapp",
                   "flwr-clientapp")
CONNECTION = "bench"
LOG_TAIL_LINES = 40

FLOWER_PER_ROUND = [  # Flower 1.42's deployment runtime, read from its source (flwr/superlink/grid/http_grid.py,
    # flwr/supernode/start_client_internal.py, flwr/supercore/superexec/run_superexec.py, flwr/serverapp/strategy)
    "the ServerApp (one flwr-serverapp process for the whole run, started by the SuperLink's SuperExec) samples the "
    "connected nodes and pushes one train message per site to the SuperLink (HTTP), each carrying the global "
    "weights (ArrayRecord) and the round's config",
    "each SuperNode pulls its message from the SuperLink's Fleet HTTP API (a SuperNode with nothing to do polls "
    "every 3 s) and stores it",
    "the SuperNode's SuperExec acquires the task (polling every 1 s) and starts a new flwr-clientapp process for "
    "it, which installs the app's FAB, imports the ClientApp and pulls the message and the context",
    "local fit in the ClientApp: read the shard CSV, 2 epochs of SGD in numpy, reply with the weights and "
    "num-examples; the process exits",
    "the SuperNode pushes the reply to the SuperLink (it checks for it every 0.5 s)",
    "the ServerApp pulls the replies from the SuperLink, polling every 3 s until every site has answered",
    "FedAvg in memory in the ServerApp: the replies' arrays averaged, weighted by num-examples; no file, commit or "
    "signature is written",
]


class BenchError(RuntimeError):
    """A failure of the benchmark's federation, with what to look at."""


@dataclass
class Service:
    """A process this benchmark started, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace").rstrip().splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:]) or "(empty log)"

    def fail(self, why: str) -> NoReturn:
        raise BenchError(f"{self.name} {why}; the last lines of its log ({self.log}):\n{self.tail()}")

    def require_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            self.fail(f"exited with code {code}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 (all held at once while they are chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(service: Service, port: int, timeout: float) -> float:
    """Wait until ``service`` accepts connections on ``port``; the time it did."""
    deadline = time.monotonic() + timeout
    while not _listening(port):
        service.require_alive()
        if time.monotonic() > deadline:
            service.fail(f"did not listen on 127.0.0.1:{port} within {timeout:.0f} s")
        time.sleep(0.05)
    return time.time()


def flower_tools(flower_python: Path) -> tuple[Path, dict[str, str]]:
    """The bin directory of Flower's environment and the versions it holds; a clear error if it is not one."""
    if not flower_python.exists():
        raise SystemExit(f"{flower_python} does not exist: make Flower's environment with "
                         f"`make .venv-flower/.installed`, or pass --flower-python")
    bin_dir = flower_python.parent
    missing = [c for c in FLOWER_COMMANDS if not (bin_dir / c).exists()]
    if missing:
        raise SystemExit(f"{bin_dir} lacks Flower's commands {missing}: is flwr installed in {flower_python}?")
    out = subprocess.run([str(flower_python), "-c", "import flwr, numpy, platform; "
                          "print(flwr.__version__, numpy.__version__, platform.python_version())"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{flower_python} cannot import flwr and numpy:\n{out.stderr.strip()[-2000:]}")
    flwr, numpy, python = out.stdout.split()
    return bin_dir, {"flwr": flwr, "numpy": numpy, "python": python}


def write_inputs(work: Path, sites: int) -> tuple[Path, list[Path], Path, dict[str, Any]]:
    """The demo's split written by the project's code (held-out set, one shard per site) and the demo's genesis
    model as ``genesis.npz``; also what the task is, for the results."""
    import numpy as np

    from federity.demo import DEMO_PARAMS
    from federity.demo_data import split_breast_cancer, write_split
    from federity.models import build_model
    from federity.weights import get_framework

    split = split_breast_cancer(sites)
    heldout, shards = write_split(split, work / "owner", [work / f"site-{i + 1}" for i in range(sites)])
    adapter = get_framework("torch")  # as federity.repo.init builds the genesis model of the demo's repository
    adapter.seed(0)
    tensors = adapter.get_tensors(build_model("logistic-regression", "torch", {"in_features": len(split.columns)}))
    genesis = work / "genesis.npz"
    np.savez(genesis, weight=tensors["0.weight"], bias=tensors["0.bias"])
    task = {
        "data": "scikit-learn's bundled breast-cancer dataset, split by federity.demo_data.split_breast_cancer"
                f"({sites}) and written by write_split",
        "examples": {"heldout": len(split.test), "sites": [len(s) for s in split.shards]},
        "model": f"logistic regression, {len(split.columns)} features, 2 classes (numpy, float32); the demo's "
                 "genesis weights (torch.manual_seed(0), zoo logistic-regression)",
        "local_training": {**DEMO_PARAMS, "optimizer": "plain SGD, mean cross-entropy per batch",
                           "batch_order": "numpy default_rng([seed, round]) per round"},
        "aggregation": "FedAvg weighted by num-examples (flwr.serverapp.strategy.FedAvg), every site every round",
    }
    return heldout, shards, genesis, task


def flower_env(bin_dir: Path, flwr_home: Path) -> dict[str, str]:
    """The environment of every Flower process: its bin first on PATH (the SuperLink and SuperNodes start
    ``flower-superexec``, which starts ``flwr-serverapp`` / ``flwr-clientapp`` by name), a Flower home of its own,
    no telemetry, no update check, no runtime dependency installation."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", FLWR_HOME=str(flwr_home),
               FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1",
               FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1", PYTHONUNBUFFERED="1",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def write_flower_config(flwr_home: Path, port: int) -> None:
    """The Flower configuration ``flwr run`` reads: one SuperLink connection, insecure, to the local SuperLink."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                                           f'address = "127.0.0.1:{port}"\ninsecure = true\n')


def start(name: str, command: list[str], env: dict[str, str], logs: Path, cwd: Path) -> Service:
    """Start ``command`` in a session of its own (so it and its children can be stopped together)."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    return Service(name, popen, log)


def _processes() -> dict[int, tuple[int, str]]:
    """Every process's parent and start time (in clock ticks since boot), from /proc (empty where there is none)."""
    table: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (int(fields[1]), fields[19])
        except (OSError, IndexError, ValueError):
            continue
    return table


def _descendants(pids: list[int], table: dict[int, tuple[int, str]]) -> dict[int, str]:
    """The processes ``pids`` started, and those started, and so on (``table`` from :func:`_processes`): pid →
    start time."""
    found: dict[int, str] = {}
    todo = list(pids)
    while todo:
        parent = todo.pop()
        for pid, (ppid, started) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                todo.append(pid)
    return found


def _signal(pid: int, sig: int, started: str | None = None) -> None:
    """Signal ``pid``; with ``started``, only if it is still the process that started then (not a reused pid)."""
    if started is not None and _processes().get(pid, (0, ""))[1] != started:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def track(services: list[Service], spawned: dict[int, str]) -> None:
    """Add to ``spawned`` what the services started, and what that started: a process whose parent dies is
    re-parented and no longer found from the services, so the benchmark looks while the run goes."""
    table = _processes()
    for pid in [pid for pid, started in spawned.items() if table.get(pid, (0, ""))[1] != started]:
        del spawned[pid]  # gone (its pid may be another process's now)
    running = [s.popen.pid for s in services if s.popen.returncode is None]  # a reaped pid may be reused
    spawned.update(_descendants(running + list(spawned), table))


def stop_all(services: list[Service], spawned: dict[int, str], grace: float = 10.0) -> None:
    """Stop the services this benchmark started and what they started (each SuperExec, which leaves its parent's
    session, and the ServerApp and ClientApp processes, as :func:`track` found them and finds them now): SIGTERM,
    then SIGKILL after ``grace`` seconds."""
    track(services, spawned)
    for service in services:
        if service.popen.poll() is None:
            _signal(service.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for service in services:
        try:
            service.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(service.popen.pid, signal.SIGKILL)
            service.popen.wait()
    track([], spawned)
    if not spawned:
        return
    time.sleep(0.5)  # each watches its parent's pid (every 0.2 s) and exits when it is gone
    for pid, started in spawned.items():
        _signal(pid, signal.SIGTERM, started)
    time.sleep(0.5)
    for pid, started in spawned.items():
        _signal(pid, signal.SIGKILL, started)


def _read_timings(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_federation(args: argparse.Namespace, bin_dir: Path, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Prepare the data, start the federation, run the app, stop everything; the ServerApp's timings and the
    driver's own timestamps."""
    heldout, shards, genesis, task = write_inputs(work, args.sites)
    app = work / "app"  # flwr run builds the FAB from a copy: nothing is written into the repository
    shutil.copytree(APP_DIR, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".flwr"))
    flwr_home, logs = work / "flwr-home", work / "logs"
    logs.mkdir()
    link_port, *node_ports = free_ports(1 + args.sites)
    write_flower_config(flwr_home, link_port)
    env = flower_env(bin_dir, flwr_home)
    timings_path = work / "timings.json"

    services: list[Service] = []
    spawned: dict[int, str] = {}
    marks: dict[str, float] = {}
    try:
        marks["start"] = time.time()
        superlink = start("superlink", [str(bin_dir / "flower-superlink"), "--insecure", "--host", "127.0.0.1",
                                        "--port", str(link_port), "--disable-runtime-dependency-installation"],
                          env, logs, work)
        services.append(superlink)
        marks["superlink_listening"] = wait_for_port(superlink, link_port, args.timeout)
        for i, (shard, port) in enumerate(zip(shards, node_ports, strict=True)):
            node_config = f"data-path={json.dumps(str(shard))}"
            services.append(start(f"supernode-{i + 1}", [
                str(bin_dir / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link_port}",
                "--host", "127.0.0.1", "--port", str(port), "--node-config", node_config], env, logs, work))
        for service, port in zip(services[1:], node_ports, strict=True):
            marks["supernodes_listening"] = wait_for_port(service, port, args.timeout)
        run_config = " ".join(f"{k}={json.dumps(v)}" for k, v in {
            "num-server-rounds": args.rounds, "num-sites": args.sites, "init-path": str(genesis),
            "heldout-path": str(heldout), "timings-path": str(timings_path)}.items())
        marks["run_submitted"] = time.time()
        flwr_run = start("flwr-run", [str(bin_dir / "flwr"), "run", str(app), CONNECTION, "--stream",
                                      "--run-config", run_config], env, logs, work)
        services.append(flwr_run)
        timings = _wait_for_run(args, services, spawned, flwr_run, timings_path)
    finally:
        stop_all(services, spawned)
    return timings, {"marks": marks, "task": task}


def _wait_for_run(args: argparse.Namespace, services: list[Service], spawned: dict[int, str], flwr_run: Service,
                  timings_path: Path) -> dict[str, Any]:
    """Wait for the ServerApp to report its last round; a process that dies, a failed run or the timeout is a
    :class:`BenchError` with the relevant log."""
    deadline = time.monotonic() + args.timeout
    tracked = 0.0
    while True:
        if time.monotonic() - tracked > 1.0:
            track(services, spawned)
            tracked = time.monotonic()
        timings = _read_timings(timings_path)
        if timings and timings.get("status") == "finished":
            return timings
        if timings and timings.get("status") == "failed":
            flwr_run.fail(f"reports that the ServerApp failed ({timings.get('error')})")
        for service in services:
            if service is not flwr_run:
                service.require_alive()
        code = flwr_run.popen.poll()
        if code is not None:
            time.sleep(1.0)  # the ServerApp's last write may trail the log stream's end
            timings = _read_timings(timings_path)
            if timings and timings.get("status") == "finished":
                return timings
            state = "no timings at all" if timings is None else f"the ServerApp's status is {timings.get('status')!r}"
            flwr_run.fail(f"ended (code {code}) before the run finished ({state})")
        if time.monotonic() > deadline:
            done = sum("aggregated" in r for r in timings["rounds"]) if timings else 0
            flwr_run.fail(f"did not finish within --timeout {args.timeout:.0f} s ({done} of {args.rounds} rounds "
                          "done)")
        time.sleep(0.2)


def _round_report(entry: dict[str, Any]) -> dict[str, Any]:
    sites = entry.get("sites", [])
    report: dict[str, Any] = {"round": entry["round"], "seconds": round(entry["seconds"], 3),
                              "replies": entry.get("replies", 0)}
    if sites:
        work = max(s["ended"] - s["started"] for s in sites)
        report.update(
            slowest_site_work_seconds=round(work, 3),
            overhead_seconds=round(entry["seconds"] - work, 3),
            to_first_site_seconds=round(min(s["started"] for s in sites) - entry["fit_started"], 3),
            last_site_to_aggregated_seconds=round(entry["aggregated"] - max(s["ended"] for s in sites), 3),
            num_examples=[int(s["num-examples"]) for s in sites])
    return report


def summarise(args: argparse.Namespace, versions: dict[str, str], timings: dict[str, Any], driver: dict[str, Any],
              load: tuple[float, float, float]) -> dict[str, Any]:
    """The results: the rounds, their medians, start-up and total, accuracy; an error for incomplete rounds."""
    entries = timings["rounds"]
    bad = [e for e in entries if e.get("replies") != args.sites or e.get("errors")]
    if len(entries) != args.rounds or bad:
        raise BenchError(f"the run finished with {len(entries)} of {args.rounds} rounds; rounds without a reply from "
                         f"every site: {[(e['round'], e.get('replies'), e.get('errors')) for e in bad]}")
    marks, start = driver["marks"], driver["marks"]["start"]
    rounds = [_round_report(e) for e in entries]
    seconds = [r["seconds"] for r in rounds]
    after_first = seconds[1:] or seconds
    accuracy = [timings["accuracy"].get(str(r)) for r in range(1, args.rounds + 1)]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_start": [round(x, 2) for x in load]},
        "flower": versions,
        "sites": args.sites, "rounds": args.rounds,
        "round_seconds": seconds,
        "round_seconds_median": round(statistics.median(seconds), 3),
        "round_seconds_median_after_first": round(statistics.median(after_first), 3),
        "overhead_seconds_median": round(statistics.median(r.get("overhead_seconds", 0.0) for r in rounds), 3),
        "startup_seconds": round(entries[0]["fit_started"] - start, 3),
        "startup": {name: round(t - start, 3) for name, t in [
            ("superlink_listening", marks["superlink_listening"]),
            ("supernodes_listening", marks["supernodes_listening"]), ("run_submitted", marks["run_submitted"]),
            ("serverapp_started", timings["serverapp_started"]), ("nodes_connected", timings["nodes_ready"]),
            ("first_round_started", entries[0]["fit_started"])]},
        "total_seconds": round(timings["finished"] - start, 3),
        "accuracy_per_round": [None if a is None else round(a, 4) for a in accuracy],
        "initial_accuracy": None if "0" not in timings["accuracy"] else round(timings["accuracy"]["0"], 4),
        "final_accuracy": None if accuracy[-1] is None else round(accuracy[-1], 4),
        "task": driver["task"],
        "rounds_detail": rounds,
        "flower_per_round": FLOWER_PER_ROUND,
        "measures": {
            "round_seconds": "inside the ServerApp: start of the round's fit (configure_train) to the end of its "
                             "aggregation (aggregate_train returned); held-out evaluation excluded",
            "slowest_site_work_seconds": "the slowest ClientApp's work, timed inside it: read the shard, train, "
                                         "score on the shard",
            "overhead_seconds": "round seconds minus the slowest site's work",
            "to_first_site_seconds": "fit start to the first ClientApp starting its work",
            "last_site_to_aggregated_seconds": "the last ClientApp finishing its work to the aggregate",
            "startup_seconds": "the SuperLink started to the first round's fit started",
            "total_seconds": "the SuperLink started to the ServerApp finishing its last round (teardown excluded)",
        },
    }
    federity = _federity_rounds()
    if federity is not None:
        results["federity_comparison"] = {
            "source": "bench/results/rounds.json (bench/bench_rounds.py, measured in its own run, not this one)",
            "federity_wall_seconds_median": federity,
            "flower_round_seconds_median_after_first": results["round_seconds_median_after_first"],
            "ratio_federity_to_flower": round(federity / results["round_seconds_median_after_first"], 2),
        }
    return results


def _federity_rounds() -> float | None:
    """Federity's median round wall time (rounds after the first) from bench/results/rounds.json, if there."""
    try:
        return float(json.loads(FEDERITY_ROUNDS.read_text())["wall_seconds_median"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main() -> None:
    """Run the federation once, write and print the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flower-python", type=Path, default=DEFAULT_FLOWER_PYTHON,
                        help=f"the interpreter of Flower's environment (default {DEFAULT_FLOWER_PYTHON})")
    parser.add_argument("--rounds", type=int, default=5, help="federated rounds (default 5, the demo's)")
    parser.add_argument("--sites", type=int, default=3, help="sites, one SuperNode each (default 3, the demo's)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds for the whole run, and for each process to start listening (default 600)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"default {RESULTS.relative_to(ROOT)}")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (data, logs, timings)")
    args = parser.parse_args()
    if args.rounds < 1 or args.sites < 2:
        raise SystemExit("--rounds must be at least 1 and --sites at least 2 (FedAvg over several sites)")
    bin_dir, versions = flower_tools(args.flower_python.absolute())
    load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-flower-rounds-"))
    try:
        timings, driver = run_federation(args, bin_dir, work)
        results = summarise(args, versions, timings, driver, load)
    except BenchError as exc:  # the directory is kept for its logs
        raise SystemExit(f"bench_flower_rounds: {exc}\n(logs, data and timings kept in {work})") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if args.keep:
        print(f"kept {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items()
                      if k not in ("rounds_detail", "flower_per_round", "measures", "task")}, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
