"""Serving benchmark: the served router against the server's floor, before and after a change, in one run.

Every configuration is served by ``mlflow models serve --env-manager local -w 1`` on 127.0.0.1, one after the
other (never two at once on 2 cores), and measured with the same pre-serialised requests (JSON bytes,
``dataframe_split``) from the same (user, item) pairs of the prepare run's test split:

- the **floor**: a trivial pyfunc with the router's signature and answer columns
  (``benchmarks.served.FloorModel``), what `mlflow models serve` costs by itself;
- the **router** as logged (the code measured, ``--code``), and with ``--before-code DIR`` the same router with
  ``DIR/ab_router`` bundled instead (e.g. a ``git worktree`` of the commit before a change): same artifacts,
  other code;
- **policy B alone**, sent the pairs' feature rows (what a client without the router would send).

Per configuration: start-up (process start to the first answered /ping), single-row latency p50/p95/p99
(sequential, keep-alive; routers also forced to B), throughput and p99 with 1, 4 and 16 concurrent clients, and
rows/s of 10,000-row requests; each router / the floor. The configurations are a list (:func:`configurations`),
so another one (a router with its decision log on) is one more entry.

In process, each router is timed by ``benchmarks/router_timing.py`` in a fresh interpreter (one process can run
only one ``ab_router``): single-row and 100-row ``predict`` p50 and 10,000-row rows/s, beside the raw
``lightgbm.Booster.predict`` on the assembled feature matrix. ``python -X importtime -c "import ab_router.model"``
gives each code's import time. A soak (16 clients for ``--soak-s`` seconds) checks errors and server memory.

Decision log (``ABTEST_DECISION_LOG``): the router served with logging off, to a directory and to SQLite, one
after the other: single-row p50 and 10,000-row rows/s over HTTP, and the same rows' CPU time in process; the
ratios to "off" are the logging's cost (issue 14: at most 10%).

By default it first builds the models in a temporary SQLite store through the real steps (prepare → train_a,
train_b → evaluate → register → router) on ML-100K (``--zip`` / $ABTEST_ML100K_ZIP, else a synthetic
ML-100K-sized zip); ``--tracking-uri`` uses an existing store's ``models:/`` aliases instead.

    OMP_NUM_THREADS=1 python -m benchmarks.serving --soak-s 0
    git worktree add /tmp/before <commit>
    OMP_NUM_THREADS=1 python -m benchmarks.serving --soak-s 0 --before-code /tmp/before
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from unittest.mock import patch

import mlflow
import numpy as np
import pandas as pd
import requests

from ab_router.arms import TREATMENT, policy_arm
from ab_router.records import DECISION_LOG_ENV
from ab_router.schema import FEATURE_COLUMNS, ITEM_ID, USER_ID, to_feature_frame
from abtest.experiment.router_client import request_body, resolve_router
from abtest.tracking.lineage import load_prepared
from benchmarks.harness import (
    PROJECT_DIR,
    code_description,
    load_line,
    machine_line,
    markdown_table,
    median,
    percentile,
    process_tree,
    rss_mb,
    start_benchmark_process,
    use_fresh_store,
)
from benchmarks.served import save_floor_model, served_model
from steps.cli import parameter_defaults

log = logging.getLogger("benchmarks.serving")

# The pipeline's defaults, as MLproject writes them: the live router and policy B's alias.
ROUTER_URI = parameter_defaults("simulate")["router_uri"]
POLICY_B_URI = f"models:/{parameter_defaults('register')['model_name']}@{policy_arm(TREATMENT).alias}"
CONCURRENCY: tuple[int, ...] = (1, 4, 16)
SOAK_WINDOW_S = 10.0
SOAK_CLIENTS = 16
# Server memory may grow while caches and allocator arenas warm up; beyond this over a soak it is a leak.
RSS_GROWTH_BOUND_MB = 50.0
# Issue 15's bounds: in process, single-row and 100-row predict p50; served, single-row p50 / the floor's.
IN_PROCESS_SINGLE_MS = 1.0
IN_PROCESS_HUNDRED_MS = 1.5
FLOOR_RATIO_BOUND = 1.5
ROUTER_P50_BOUND = 1.25  # issue 9: router single-row p50 <= 1.25x policy B's
IN_PROCESS_BOUND = 0.5  # issue 9: router in-process rows/s >= 50% of Booster.predict's
HEADERS = {"Content-Type": "application/json"}
DECISION_LOG_SINKS: tuple[str, ...] = ("off", "directory", "sqlite")
DECISION_LOG_BOUND = 1.10  # logging adds at most 10% to single-row p50 and to a 10,000-row request's time
FLOOR = "floor (trivial pyfunc)"
ROUTER = "router"
ROUTER_BEFORE = "router before"
POLICY_B = "policy B alone"
SINGLE_P50 = "single p50 ms"
FORCED_B_P50 = "single p50 ms, forced to B"
STARTUP = "start-up s (to first /ping)"
TIMING_SCRIPT = Path(__file__).with_name("router_timing.py")


# --------------------------------------------------------------------------------------------------- building
def build_models(root: Path, *, zip_path: str) -> None:
    """Prepare, train both policies, evaluate, register and log the router into a new store under ``root``."""
    from abtest.data.synthetic import write_synthetic_zip
    from steps import evaluate, prepare, register, router, train_a, train_b

    use_fresh_store(root, "bench-serving")
    if not zip_path:
        zip_path = str(
            write_synthetic_zip(
                root / "ml-100k.zip", layout="ml-100k", n_users=943, n_items=1682, n_ratings=100_000, seed=0
            )
        )
    prepared = prepare.main(["--source", "local", "--data_path", zip_path])
    run_a = train_a.main(["--prepare_run", prepared])
    run_b = train_b.main(["--prepare_run", prepared])
    evaluated = evaluate.main(
        ["--train_a_run", run_a, "--train_b_run", run_b, "--n_bootstrap", "50", "--cv_folds", "0"]
    )
    register.main(["--train_a_run", run_a, "--train_b_run", run_b, "--evaluate_run", evaluated])
    router.main([])


# --------------------------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Workload:
    """The same (user, item) pairs as router requests and as policy B requests, serialised once."""

    pairs: pd.DataFrame  # big_rows rows; the first n_single are the single-row requests
    features: pd.DataFrame  # the pairs' model input (schema dtypes)
    router_single: list[bytes]
    router_single_forced_b: list[bytes]  # the same requests with params force_policy=B (every row to policy B)
    policy_single: list[bytes]
    router_big: bytes
    policy_big: bytes


def _json(frame: pd.DataFrame, params: Mapping[str, str] | None = None) -> bytes:
    # Serialised once up front so the timed loop measures the server, not the client's JSON encoding.
    return json.dumps(request_body(frame, params=params)).encode()


def build_workload(
    router_model: mlflow.pyfunc.PyFuncModel, *, n_single: int, big_rows: int, seed: int
) -> Workload:
    """Pairs drawn from the router's prepare run's test split, with their features from the router's look-up."""
    handle = resolve_router(ROUTER_URI, router_run="")
    test = load_prepared(handle.prepare_run).test
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(test), size=max(big_rows, n_single))
    pairs = test[[USER_ID, ITEM_ID]].iloc[rows].reset_index(drop=True).astype(np.int64)
    features = to_feature_frame(router_model.unwrap_python_model().features.assemble(pairs))
    return Workload(
        pairs=pairs,
        features=features,
        router_single=[_json(pairs.iloc[[i]]) for i in range(n_single)],
        router_single_forced_b=[_json(pairs.iloc[[i]], {"force_policy": "B"}) for i in range(n_single)],
        policy_single=[_json(features.iloc[[i]]) for i in range(n_single)],
        router_big=_json(pairs.iloc[:big_rows]),
        policy_big=_json(features.iloc[:big_rows]),
    )


# --------------------------------------------------------------------------------------------------- HTTP
def _post(session: requests.Session, url: str, body: bytes) -> float:
    started = time.perf_counter()
    response = session.post(f"{url}/invocations", data=body, headers=HEADERS, timeout=120)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:500]}")
    return elapsed


def _clients(url: str, bodies: Sequence[bytes], *, clients: int, per_client: int) -> tuple[float, list[float]]:
    """``clients`` threads, each sending ``per_client`` requests; wall seconds and every latency."""

    def client(offset: int) -> list[float]:
        with requests.Session() as session:
            return [_post(session, url, bodies[(offset + i) % len(bodies)]) for i in range(per_client)]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [x for part in pool.map(client, range(0, clients * per_client, per_client)) for x in part]
    return time.perf_counter() - started, latencies


@dataclass(frozen=True)
class Served:
    """One configuration to serve and measure: its name, the model (URI or directory) and its requests."""

    name: str
    model: str
    single: Sequence[bytes]
    big: bytes
    forced_b: Sequence[bytes] = ()  # routers only: the single-row requests with every row sent to policy B
    env: Mapping[str, str] = field(default_factory=dict)  # the server's extra environment


def configurations(
    workload: Workload, *, router_dir: Path, floor_dir: Path, before_dir: Path | None
) -> list[Served]:
    """What the HTTP table compares, in serving order: the floor, the router (before, after), policy B alone."""
    router_requests = {
        "single": workload.router_single,
        "big": workload.router_big,
        "forced_b": workload.router_single_forced_b,
    }
    served = [Served(FLOOR, str(floor_dir), workload.router_single, workload.router_big)]
    if before_dir is not None:
        served.append(Served(ROUTER_BEFORE, str(before_dir), **router_requests))
    served.append(Served(ROUTER, str(router_dir), **router_requests))
    served.append(Served(POLICY_B, POLICY_B_URI, workload.policy_single, workload.policy_big))
    return served


def measure_http(served: Served, *, big_rows: int, per_client: int, big_repeats: int) -> dict[str, float]:
    """Serve one configuration; its start-up, single-row percentiles, throughput per concurrency, big rows/s."""
    started = time.perf_counter()
    with served_model(served.model, env=served.env) as url, requests.Session() as session:
        stats = {STARTUP: time.perf_counter() - started}
        log.info("measuring %s at %s", served.name, url)
        for body in served.single[:20]:  # warm-up: lazy imports, allocator growth
            _post(session, url, body)
        latencies = [_post(session, url, body) for body in served.single]
        forced = [_post(session, url, body) for body in served.forced_b]
        big_times = [_post(session, url, served.big) for _ in range(big_repeats)]
        stats.update({f"single p{q} ms": percentile(latencies, q) * 1000 for q in (50, 95, 99)})
        if forced:
            stats[FORCED_B_P50] = percentile(forced, 50) * 1000
        for clients in CONCURRENCY:
            wall, concurrent = _clients(url, served.single, clients=clients, per_client=per_client)
            stats[f"{clients} clients req/s"] = len(concurrent) / wall
            stats[f"{clients} clients p99 ms"] = percentile(concurrent, 99) * 1000
    stats[f"{big_rows:,}-row request s"] = median(big_times)
    stats[f"{big_rows:,}-row rows/s"] = big_rows / median(big_times)
    return stats


# --------------------------------------------------------------------------------------------------- models
def router_directories(root: Path, *, before_code: Path | None) -> tuple[Path, Path | None]:
    """The logged router downloaded to ``root`` bundling the measured code's ``ab_router`` (this project's), and
    the same model bundling ``before_code/ab_router``: same artifacts and config, only the code differs."""
    logged = Path(mlflow.artifacts.download_artifacts(artifact_uri=ROUTER_URI, dst_path=str(root / "logged")))
    directories = []
    for name, checkout in (("router", PROJECT_DIR), ("router-before", before_code)):
        if checkout is None:
            directories.append(None)
            continue
        source = checkout / "ab_router"
        if not (source / "model.py").is_file():
            raise ValueError(f"a router's code must be a checkout holding ab_router/model.py; {source} has none")
        directory = root / name
        shutil.copytree(logged, directory)
        shutil.rmtree(directory / "code" / "ab_router")
        shutil.copytree(source, directory / "code" / "ab_router", ignore=shutil.ignore_patterns("__pycache__"))
        directories.append(directory)
    return directories[0], directories[1]


def _isolated_env() -> dict[str, str]:
    """This environment without PYTHONPATH: a router's bundled ab_router must be the only one importable."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def time_in_fresh_process(
    model_dir: Path, pairs_file: Path, *, repeats: int, big_repeats: int, env: Mapping[str, str] | None = None
) -> dict:
    """``benchmarks/router_timing.py`` on one model, in an interpreter that imported no ab_router."""
    command = [sys.executable, str(TIMING_SCRIPT), str(model_dir), str(pairs_file)]
    command += ["--repeats", str(repeats), "--big-repeats", str(big_repeats)]
    result = subprocess.run(
        command,
        env=dict(env or _isolated_env()),
        cwd=model_dir.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"timing {model_dir} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def import_ms(code_dir: Path) -> float:
    """Cumulative import time of ``ab_router.model`` (``python -X importtime``) from ``code_dir``, in ms."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import ab_router.model"],
        env={**_isolated_env(), "PYTHONPATH": str(code_dir)},
        cwd=code_dir,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in result.stderr.splitlines() if re.search(r"\|\s*ab_router\.model$", x))
    return int(line.split("|")[1]) / 1000


# --------------------------------------------------------------------------------------------------- in process
def measure_in_process(workload: Workload, *, repeats: int) -> dict[str, Rates]:
    """Rows/s of the policy B paths in this process: raw Booster.predict and its pyfunc on the feature rows."""
    booster = mlflow.lightgbm.load_model(POLICY_B_URI)
    policy_b = mlflow.pyfunc.load_model(POLICY_B_URI)
    features = workload.features
    matrix = features.loc[:, list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    candidates: dict[str, Callable[[], object]] = {
        BOOSTER: lambda: booster.predict(matrix, num_threads=1),
        "policy B pyfunc predict (feature frame given)": lambda: policy_b.predict(features),
    }
    rates = {}
    for name, call in candidates.items():
        call()  # warm-up
        walls, cpus = [], []
        for _ in range(repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            call()
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu_started)
        # CPU time is what a loaded shared machine distorts least; every path here runs on one thread.
        rates[name] = Rates(wall=len(features) / median(walls), cpu=len(features) / median(cpus))
    return rates


BOOSTER = "raw Booster.predict (feature matrix given, 1 thread)"


@dataclass(frozen=True)
class Rates:
    """Rows per second by wall time and by CPU time of this process."""

    wall: float
    cpu: float


# --------------------------------------------------------------------------------------------------- decision log
def decision_log_env(sink: str, root: Path) -> dict[str, str]:
    """The serving environment of one decision-log setting (a fresh sink under ``root``)."""
    targets = {"off": "", "directory": str(root / "decision-log"), "sqlite": f"sqlite:///{root / 'decisions.db'}"}
    return {DECISION_LOG_ENV: targets[sink]}


def measure_decision_log(workload: Workload, root: Path, *, big_repeats: int) -> dict[str, dict[str, float]]:
    """Per setting (off, directory, sqlite): HTTP single-row p50 and 10,000-row rows/s, in-process CPU times."""
    results: dict[str, dict[str, float]] = {}
    big_rows = len(workload.pairs)
    single_pairs = [workload.pairs.iloc[[i]] for i in range(len(workload.router_single))]
    for sink in DECISION_LOG_SINKS:
        env = decision_log_env(sink, root)
        with served_model(ROUTER_URI, env=env) as url, requests.Session() as session:
            log.info("decision log %s: measuring %s", sink, url)
            for body in workload.router_single[:20]:
                _post(session, url, body)
            single = [_post(session, url, body) for body in workload.router_single]
            big = [_post(session, url, workload.router_big) for _ in range(big_repeats)]
        with patch.dict(os.environ, env):  # read by the router's load_context
            model = mlflow.pyfunc.load_model(ROUTER_URI)
        model.predict(workload.pairs)
        big_cpu, single_cpu = [], []
        for _ in range(big_repeats):
            started = time.process_time()
            model.predict(workload.pairs)
            big_cpu.append(time.process_time() - started)
        started = time.process_time()
        for pairs in single_pairs:
            model.predict(pairs)
        single_cpu.append((time.process_time() - started) / len(single_pairs))
        results[sink] = {
            "single p50 ms": percentile(single, 50) * 1000,
            f"{big_rows:,}-row rows/s": big_rows / median(big),
            f"in process {big_rows:,} rows CPU ms": median(big_cpu) * 1000,
            "in process single row CPU ms": median(single_cpu) * 1000,
        }
    return results


def decision_log_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """Each setting's figures and their ratio to logging off."""
    off = results["off"]
    rows = [
        [metric, *(results[sink][metric] for sink in DECISION_LOG_SINKS)]
        + [results[sink][metric] / off[metric] for sink in DECISION_LOG_SINKS[1:]]
        for metric in off
    ]
    header = ["metric", *DECISION_LOG_SINKS, *(f"{sink} / off" for sink in DECISION_LOG_SINKS[1:])]
    return markdown_table(header, rows)


def decision_log_targets(results: Mapping[str, Mapping[str, float]]) -> list[list[object]]:
    """Issue 14's cost targets: p50 at most 10% higher, 10,000-row throughput at most 10% lower (time +10%)."""
    off = results["off"]
    rows: list[list[object]] = []
    for sink in DECISION_LOG_SINKS[1:]:
        p50 = results[sink]["single p50 ms"] / off["single p50 ms"]
        big = next(metric for metric in off if metric.endswith("-row rows/s"))
        slowdown = off[big] / results[sink][big]
        rows += [
            [f"decision log on ({sink}): single-row p50 / off", f"<= {DECISION_LOG_BOUND}", p50,
             _status(p50 <= DECISION_LOG_BOUND)],
            [f"decision log on ({sink}): 10,000-row request time / off", f"<= {DECISION_LOG_BOUND}", slowdown,
             _status(slowdown <= DECISION_LOG_BOUND)],
        ]  # fmt: skip
    return rows


# --------------------------------------------------------------------------------------------------- soak
@dataclass(frozen=True)
class SoakResult:
    """Per-window latency and errors, and the server's memory over the soak."""

    windows: list[list[object]]
    errors: int
    requests: int
    rss_start_mb: float
    rss_end_mb: float
    rss_max_mb: float


def soak(url: str, bodies: Sequence[bytes], *, seconds: float, clients: int = SOAK_CLIENTS) -> SoakResult:
    """``clients`` threads posting single-row requests until ``seconds`` have passed; server RSS every second."""
    server = [pid for pid in process_tree(os.getpid()) if pid != os.getpid()]
    if not server:
        raise RuntimeError("no server process found among this benchmark's children")
    start = time.perf_counter()
    deadline = start + seconds
    records: list[tuple[float, float, bool]] = []  # (start offset, latency, ok)
    lock = threading.Lock()
    rss_samples: list[float] = [rss_mb(process_tree(server[0]))]

    def client(offset: int) -> None:
        local = []
        with requests.Session() as session:
            i = offset
            while (now := time.perf_counter()) < deadline:
                try:
                    latency, ok = _post(session, url, bodies[i % len(bodies)]), True
                except (requests.RequestException, RuntimeError):
                    latency, ok = time.perf_counter() - now, False
                local.append((now - start, latency, ok))
                i += 1
        with lock:
            records.extend(local)

    def monitor() -> None:
        while time.perf_counter() < deadline:
            time.sleep(1.0)
            rss_samples.append(rss_mb(process_tree(server[0])))

    threads = [threading.Thread(target=client, args=(k * 997,)) for k in range(clients)]
    threads.append(threading.Thread(target=monitor))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 180)  # a request times out after 120 s, so this is bounded too
    frame = pd.DataFrame(records, columns=["offset", "latency", "ok"])
    frame["window"] = (frame["offset"] // SOAK_WINDOW_S).astype(int)
    windows = []
    for window, part in frame.groupby("window"):
        ok = part.loc[part["ok"], "latency"] * 1000
        windows.append(
            [
                f"{window * SOAK_WINDOW_S:.0f}-{(window + 1) * SOAK_WINDOW_S:.0f} s",
                len(part),
                int((~part["ok"]).sum()),
                len(part) / SOAK_WINDOW_S,
                *(percentile(ok.tolist(), q) if len(ok) else math.nan for q in (50, 95, 99)),
            ]
        )
    return SoakResult(
        windows=windows,
        errors=int((~frame["ok"]).sum()),
        requests=len(frame),
        rss_start_mb=rss_samples[0],
        rss_end_mb=rss_samples[-1],
        rss_max_mb=max(rss_samples),
    )


# --------------------------------------------------------------------------------------------------- report
def http_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """One column per served configuration, then each one's ratio to the floor (the first configuration)."""
    names = list(results)
    floor, others = names[0], names[1:]
    metrics = list(dict.fromkeys(metric for stats in results.values() for metric in stats))
    rows = []
    for metric in metrics:
        # A metric the floor has no figure for (forced to B) is compared with the floor's single-row p50.
        base = results[floor].get(metric, results[floor][SINGLE_P50] if metric == FORCED_B_P50 else math.nan)
        cells = [results[name].get(metric, "") for name in names]
        ratios = [results[name][metric] / base if metric in results[name] else "" for name in others]
        rows.append([metric, *cells, *ratios])
    return markdown_table(["metric", *names, *(f"{name} / floor" for name in others)], rows)


def in_process_table(timings: Mapping[str, Mapping[str, float]], rates: Mapping[str, Rates], rows: int) -> str:
    """Each router's in-process figures (a fresh process each), and the policy B paths' rows/s beside them."""
    header = [
        f"in process ({rows:,}-row rows/s)",
        "single p50 ms",
        "single CPU p50 ms",
        "100-row p50 ms",
        "100-row CPU p50 ms",
        "single p50 ms, python model only",
        "100-row p50 ms, python model only",
        "rows/s (wall)",
        "rows/s (CPU)",
        "load s",
        "import ab_router.model ms",
    ]
    body: list[list[object]] = [
        [
            name,
            t[SINGLE_P50],
            t["single CPU p50 ms"],
            t["100-row p50 ms"],
            t["100-row CPU p50 ms"],
            t["single p50 ms, python model only"],
            t["100-row p50 ms, python model only"],
            t["rows/s (wall)"],
            t["rows/s (CPU)"],
            t["load s"],
            t.get("import ms", ""),
        ]
        for name, t in timings.items()
    ]
    body += [[name, "", "", "", "", "", "", r.wall, r.cpu, "", ""] for name, r in rates.items()]
    return markdown_table(header, body)


def _target(
    label: str, bound: str, before: float | None, measured: float, met: Callable[[float], bool]
) -> list[object]:
    return [label, bound, "" if before is None else before, measured, _status(met(measured))]


def targets_table(
    http: Mapping[str, Mapping[str, float]],
    timings: Mapping[str, Mapping[str, float]],
    rates: Mapping[str, Rates],
    soak_result: SoakResult | None,
) -> str:
    """Issue 15's router targets (and issue 9's), judged on the router; the router before the change beside it."""

    def both(value: Callable[[str], float]) -> tuple[float | None, float]:
        return (value(ROUTER_BEFORE) if ROUTER_BEFORE in http else None), value(ROUTER)

    booster = rates[BOOSTER].cpu
    # ABRouterModel.predict is the router's own code; pyfunc predict adds MLflow's input check (the floor's cost).
    in_process = [
        ("ABRouterModel.predict, single-row", "single p50 ms, python model only", IN_PROCESS_SINGLE_MS),
        ("ABRouterModel.predict, 100-row", "100-row p50 ms, python model only", IN_PROCESS_HUNDRED_MS),
        ("pyfunc predict, single-row", SINGLE_P50, IN_PROCESS_SINGLE_MS),
        ("pyfunc predict, single-row, CPU", "single CPU p50 ms", IN_PROCESS_SINGLE_MS),
        ("pyfunc predict, 100-row", "100-row p50 ms", IN_PROCESS_HUNDRED_MS),
        ("pyfunc predict, 100-row, CPU", "100-row CPU p50 ms", IN_PROCESS_HUNDRED_MS),
    ]
    rows = [
        _target(
            f"router in process, {call} p50 ms",
            f"<= {bound}",
            *both(lambda name, metric=metric: timings[name][metric]),
            lambda x, bound=bound: x <= bound,
        )
        for call, metric, bound in in_process
    ]
    rows += [
        _target(
            "served router single-row p50 / the floor's",
            f"<= {FLOOR_RATIO_BOUND}",
            *both(lambda name: http[name][SINGLE_P50] / http[FLOOR][SINGLE_P50]),
            lambda x: x <= FLOOR_RATIO_BOUND,
        ),
        _target(
            "served router single-row p50 / policy B's (issue 9)",
            f"<= {ROUTER_P50_BOUND}",
            *both(lambda name: http[name][SINGLE_P50] / http[POLICY_B][SINGLE_P50]),
            lambda x: x <= ROUTER_P50_BOUND,
        ),
        _target(
            "router in-process rows/s (CPU) / Booster.predict's (issue 9)",
            f">= {IN_PROCESS_BOUND}",
            *both(lambda name: timings[name]["rows/s (CPU)"] / booster),
            lambda x: x >= IN_PROCESS_BOUND,
        ),
    ]
    if soak_result is not None:
        growth = soak_result.rss_end_mb - soak_result.rss_start_mb
        rows += [
            _target("soak errors", "0", None, float(soak_result.errors), lambda x: x == 0),
            _target(
                "soak server RSS growth, MB", f"<= {RSS_GROWTH_BOUND_MB:.0f}", None, growth,
                lambda x: x <= RSS_GROWTH_BOUND_MB,
            ),
        ]  # fmt: skip
    return markdown_table(["target", "bound", "before", "measured", "status"], rows)


def _status(met: bool) -> str:
    return "met" if met else "MISSED"


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark; prints and returns the markdown report."""
    parser = argparse.ArgumentParser(prog="benchmarks.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default="", help="use this store's models (default: build them)")
    parser.add_argument("--zip", default=os.environ.get("ABTEST_ML100K_ZIP", ""), help="original ml-100k.zip")
    parser.add_argument(
        "--before-code", default="", help="a checkout whose ab_router is the 'before' router (e.g. a worktree)"
    )
    parser.add_argument("--single", type=int, default=300, help="sequential single-row requests per model")
    parser.add_argument("--per-client", type=int, default=50, help="requests per client in the concurrency runs")
    parser.add_argument("--big-rows", type=int, default=10_000)
    parser.add_argument("--big-repeats", type=int, default=5)
    parser.add_argument("--in-process-repeats", type=int, default=7)
    parser.add_argument("--soak-s", type=float, default=60.0, help="0 = no soak")
    parser.add_argument("--no-decision-log", action="store_true", help="skip the decision log's cost")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--code", choices=("head", "worktree"), default="head", help="which code to snapshot")
    args = parser.parse_args(argv)
    # Resolved here, before the snapshot child starts in another directory: relative to the caller's directory.
    before_code = Path(args.before_code).resolve() if args.before_code else None
    argv = list(sys.argv[1:] if argv is None else argv)
    if before_code is not None:
        argv = [str(before_code) if a == args.before_code else a for a in argv]
    if start_benchmark_process("benchmarks.serving", argv, code=args.code):
        return ""
    load_before = load_line()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        if args.tracking_uri:
            os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = args.tracking_uri
            mlflow.set_tracking_uri(args.tracking_uri)
            mlflow.set_registry_uri(args.tracking_uri)
        else:
            build_models(root, zip_path=args.zip)
        router_model = mlflow.pyfunc.load_model(ROUTER_URI)
        workload = build_workload(router_model, n_single=args.single, big_rows=args.big_rows, seed=args.seed)
        split = float(router_model.model_config["split"])
        del router_model
        router_dir, before_dir = router_directories(root, before_code=before_code)
        floor_dir = save_floor_model(root / "floor", split=split)
        pairs_file = root / "pairs.parquet"
        workload.pairs.to_parquet(pairs_file)
        routers = {ROUTER_BEFORE: before_dir, ROUTER: router_dir} if before_dir else {ROUTER: router_dir}
        code = {ROUTER_BEFORE: before_code, ROUTER: PROJECT_DIR}
        # The floor in process is MLflow's pyfunc wrapper alone (its model imports this project's ab_router).
        timings = {
            FLOOR: time_in_fresh_process(
                floor_dir, pairs_file, repeats=args.single, big_repeats=args.in_process_repeats, env=os.environ
            )
        }
        for name, directory in routers.items():
            log.info("in process: timing %s", name)
            timings[name] = time_in_fresh_process(
                directory, pairs_file, repeats=args.single, big_repeats=args.in_process_repeats
            )
            timings[name]["import ms"] = import_ms(code[name])
        rates = measure_in_process(workload, repeats=args.in_process_repeats)
        http = {
            served.name: measure_http(
                served, big_rows=args.big_rows, per_client=args.per_client, big_repeats=args.big_repeats
            )
            for served in configurations(
                workload, router_dir=router_dir, floor_dir=floor_dir, before_dir=before_dir
            )
        }
        logging_cost = (
            None if args.no_decision_log else measure_decision_log(workload, root, big_repeats=args.big_repeats)
        )
        soak_result = None
        if args.soak_s > 0:
            with served_model(str(router_dir)) as url:
                log.info("soak: %d clients for %.0f s", SOAK_CLIENTS, args.soak_s)
                soak_result = soak(url, workload.router_single, seconds=args.soak_s)
    before_line = f"; {ROUTER_BEFORE}: the same router bundling {before_code}/ab_router" if before_code else ""
    parts = [
        machine_line(),
        f"code: {code_description()}{before_line}; mlflow models serve -w 1 --env-manager local; 127.0.0.1; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} (servers inherit it); "
        "clients are threads of this process (they share the 2 cores with the server); "
        "PYTHONDONTWRITEBYTECODE="
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')} (1: every import compiles from source)",
        f"{load_before} (before); {load_line()} (after)",
        "",
        "HTTP (same pairs; policy B gets their assembled feature rows; served one after the other)",
        http_table(http),
        "",
        in_process_table(timings, rates, len(workload.pairs)),
    ]
    if soak_result is not None:
        parts += [
            "",
            f"Soak: {SOAK_CLIENTS} clients, {args.soak_s:.0f} s, single-row router requests: "
            f"{soak_result.requests:,} requests, {soak_result.errors} errors; "
            f"server RSS {soak_result.rss_start_mb:.0f} MB at start, {soak_result.rss_end_mb:.0f} MB at end "
            f"(max {soak_result.rss_max_mb:.0f})",
            markdown_table(
                ["window", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"], soak_result.windows
            ),
        ]
    if logging_cost is not None:
        parts += [
            "",
            "Decision log (the router served with ABTEST_DECISION_LOG off / a directory / SQLite, in turn)",
            decision_log_table(logging_cost),
        ]
    parts += ["", "Targets (issues 15 and 9)", targets_table(http, timings, rates, soak_result)]
    if logging_cost is not None:
        parts += [
            "",
            "Targets (issue 14)",
            markdown_table(["target", "bound", "measured", "status"], decision_log_targets(logging_cost)),
        ]
    text = "\n".join(parts)
    print(text)
    return text


if __name__ == "__main__":
    main()
