"""Serving benchmark: the served A/B router vs policy B served alone, in-process throughput, and a 60 s soak.

Both models are served by ``mlflow models serve --env-manager local -w 1`` on 127.0.0.1, one after the other
(never at the same time on 2 cores). Requests are built before timing (JSON bytes, ``dataframe_split``) from the
same (user, item) pairs of the prepare run's test split: the router gets ``user_id, item_id``; policy B gets those
pairs' feature rows, assembled by the router's own feature look-up (what a client without the router would send).

- HTTP, per model: single-row latency p50/p95/p99 (sequential, keep-alive), throughput with 1, 4 and 16 concurrent
  clients (threads, a bounded number of requests each), and rows/s of 10,000-row requests. Router overhead =
  router / policy B.
- In process, on the same 10,000 rows: router ``predict`` (as configured, and forced to B) vs policy B's pyfunc
  vs the raw ``lightgbm.Booster.predict`` on the assembled feature matrix (the physical limit of this model).
- Decision log (``ABTEST_DECISION_LOG``): the router served with logging off, to a directory and to SQLite, one
  after the other: single-row p50 and 10,000-row rows/s over HTTP, and the same rows' CPU time in process; the
  ratios to "off" are the logging's cost (issue 14: at most 10%).
- Soak: 16 clients for ``--soak-s`` seconds against the served router (stops by itself): errors, latency
  percentiles per 10 s window, server RSS (VmRSS summed over the server's process tree) at start and end.

By default it first builds the models in a temporary SQLite store through the real steps (prepare → train_a,
train_b → evaluate → register → router) on ML-100K (``--zip`` / $ABTEST_ML100K_ZIP, else a synthetic
ML-100K-sized zip); ``--tracking-uri`` uses an existing store's ``models:/`` aliases instead.

    python -m benchmarks.serving
    python -m benchmarks.serving --tracking-uri sqlite:///path/mlflow.db --soak-s 60
    OMP_NUM_THREADS=1 python -m benchmarks.serving     # LightGBM's OpenMP on one thread, here and in the servers
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch

import mlflow
import numpy as np
import pandas as pd
import requests

from ab_router.arms import TREATMENT, policy_arm
from ab_router.records import DECISION_LOG_ENV
from ab_router.schema import ITEM_ID, USER_ID, to_feature_frame
from abtest.experiment.router_client import request_body, resolve_router
from abtest.tracking.lineage import load_prepared
from benchmarks.harness import (
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
from benchmarks.served import served_model
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
ROUTER_P50_BOUND = 1.25  # router single-row p50 <= 1.25x policy B's
IN_PROCESS_BOUND = 0.5  # router in-process rows/s >= 50% of Booster.predict's
HEADERS = {"Content-Type": "application/json"}
FORCED_B_P50 = "single p50 ms, router forced to B"
DECISION_LOG_SINKS: tuple[str, ...] = ("off", "directory", "sqlite")
DECISION_LOG_BOUND = 1.10  # logging adds at most 10% to single-row p50 and to a 10,000-row request's time


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


def measure_http(
    url: str,
    single: Sequence[bytes],
    big: bytes,
    *,
    big_rows: int,
    per_client: int,
    big_repeats: int,
    forced_b: Sequence[bytes] = (),
) -> dict[str, float]:
    """Single-row percentiles, throughput per concurrency and 10,000-row rows/s of one served model.

    ``forced_b`` (router only): the single-row requests again with every row sent to policy B.
    """
    with requests.Session() as session:
        for body in single[:20]:  # warm-up: lazy imports, allocator growth
            _post(session, url, body)
        latencies = [_post(session, url, body) for body in single]
        forced = [_post(session, url, body) for body in forced_b]
        big_times = [_post(session, url, big) for _ in range(big_repeats)]
    stats = {f"single p{q} ms": percentile(latencies, q) * 1000 for q in (50, 95, 99)}
    if forced:
        stats[FORCED_B_P50] = percentile(forced, 50) * 1000
    for clients in CONCURRENCY:
        wall, concurrent = _clients(url, single, clients=clients, per_client=per_client)
        stats[f"{clients} clients req/s"] = len(concurrent) / wall
        stats[f"{clients} clients p99 ms"] = percentile(concurrent, 99) * 1000
    stats[f"{big_rows:,}-row request s"] = median(big_times)
    stats[f"{big_rows:,}-row rows/s"] = big_rows / median(big_times)
    return stats


# --------------------------------------------------------------------------------------------------- in process
def measure_in_process(
    router_model: mlflow.pyfunc.PyFuncModel, workload: Workload, *, repeats: int
) -> dict[str, float]:
    """Rows/s of each way to score the same rows in this process (median over ``repeats``)."""
    booster = mlflow.lightgbm.load_model(POLICY_B_URI)
    policy_b = mlflow.pyfunc.load_model(POLICY_B_URI)
    lookup = router_model.unwrap_python_model().features
    pairs, features = workload.pairs, workload.features
    candidates: dict[str, Callable[[], object]] = {
        "raw Booster.predict (feature matrix given)": lambda: booster.predict(features),
        "policy B pyfunc predict (feature frame given)": lambda: policy_b.predict(features),
        "feature look-up only (FeatureLookup.assemble)": lambda: lookup.assemble(pairs),
        "router predict, forced to B": lambda: router_model.predict(pairs, params={"force_policy": "B"}),
        "router predict (as configured: A and B)": lambda: router_model.predict(pairs),
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
        rates[name] = Rates(wall=len(pairs) / median(walls), cpu=len(pairs) / median(cpus))
    return rates


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
def http_table(router: Mapping[str, float], policy_b: Mapping[str, float]) -> str:
    """Router and policy B side by side with the ratio router / policy B."""
    rows = [
        [name, router[name], policy_b[name], router[name] / policy_b[name]] for name in router if name in policy_b
    ]
    if FORCED_B_P50 in router:
        base = policy_b["single p50 ms"]
        rows.insert(3, [FORCED_B_P50, router[FORCED_B_P50], base, router[FORCED_B_P50] / base])
    return markdown_table(["metric", "router", "policy B alone", "router / policy B"], rows)


def in_process_table(rates: Mapping[str, Rates], rows: int) -> str:
    """Rows/s of each in-process path and its share of raw Booster.predict (by wall and by CPU time)."""
    base = next(iter(rates.values()))
    body = [[name, r.wall, r.wall / base.wall, r.cpu, r.cpu / base.cpu] for name, r in rates.items()]
    header = [f"in process, {rows:,} rows", "rows/s (wall)", "share (wall)", "rows/s (CPU)", "share (CPU)"]
    return markdown_table(header, body)


def targets_table(
    router: Mapping[str, float],
    policy_b: Mapping[str, float],
    rates: Mapping[str, Rates],
    soak_result: SoakResult | None,
) -> str:
    """Issue 9's serving targets, with status."""
    p50_ratio = router["single p50 ms"] / policy_b["single p50 ms"]
    booster = rates["raw Booster.predict (feature matrix given)"]
    router_rates = rates["router predict (as configured: A and B)"]
    forced_b = rates["router predict, forced to B"]
    rows = [
        [
            "router single-row p50 / policy B's",
            f"<= {ROUTER_P50_BOUND}",
            p50_ratio,
            _status(p50_ratio <= ROUTER_P50_BOUND),
        ],
    ]
    if FORCED_B_P50 in router:
        forced_ratio = router[FORCED_B_P50] / policy_b["single p50 ms"]
        rows.append(
            [
                "router forced to B, single-row p50 / policy B's",
                f"<= {ROUTER_P50_BOUND}",
                forced_ratio,
                _status(forced_ratio <= ROUTER_P50_BOUND),
            ]
        )
    for name, measured in (("router", router_rates), ("router forced to B", forced_b)):
        for kind, share in (("CPU", measured.cpu / booster.cpu), ("wall", measured.wall / booster.wall)):
            label = f"{name} in-process rows/s / Booster.predict's ({kind} time)"
            rows.append([label, f">= {IN_PROCESS_BOUND}", share, _status(share >= IN_PROCESS_BOUND)])
    if soak_result is not None:
        growth = soak_result.rss_end_mb - soak_result.rss_start_mb
        rows += [
            ["soak errors", "0", float(soak_result.errors), _status(soak_result.errors == 0)],
            [
                "soak server RSS growth, MB",
                f"<= {RSS_GROWTH_BOUND_MB:.0f}",
                growth,
                _status(growth <= RSS_GROWTH_BOUND_MB),
            ],
        ]
    return markdown_table(["target", "bound", "measured", "status"], rows)


def _status(met: bool) -> str:
    return "met" if met else "MISSED"


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark; prints and returns the markdown report."""
    parser = argparse.ArgumentParser(prog="benchmarks.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default="", help="use this store's models (default: build them)")
    parser.add_argument("--zip", default=os.environ.get("ABTEST_ML100K_ZIP", ""), help="original ml-100k.zip")
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
    if start_benchmark_process("benchmarks.serving", argv, code=args.code):
        return ""
    load_before = load_line()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        if args.tracking_uri:
            os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = args.tracking_uri
            mlflow.set_tracking_uri(args.tracking_uri)
            mlflow.set_registry_uri(args.tracking_uri)
        else:
            build_models(Path(tmp), zip_path=args.zip)
        router_model = mlflow.pyfunc.load_model(ROUTER_URI)
        workload = build_workload(router_model, n_single=args.single, big_rows=args.big_rows, seed=args.seed)
        rates = measure_in_process(router_model, workload, repeats=args.in_process_repeats)
        del router_model
        http = {}
        for uri, single, big, forced_b in (
            (ROUTER_URI, workload.router_single, workload.router_big, workload.router_single_forced_b),
            (POLICY_B_URI, workload.policy_single, workload.policy_big, []),
        ):
            with served_model(uri) as url:
                log.info("measuring %s", uri)
                http[uri] = measure_http(
                    url,
                    single,
                    big,
                    big_rows=args.big_rows,
                    per_client=args.per_client,
                    big_repeats=args.big_repeats,
                    forced_b=forced_b,
                )
        logging_cost = (
            None
            if args.no_decision_log
            else measure_decision_log(workload, Path(tmp), big_repeats=args.big_repeats)
        )
        soak_result = None
        if args.soak_s > 0:
            with served_model(ROUTER_URI) as url:
                log.info("soak: %d clients for %.0f s", SOAK_CLIENTS, args.soak_s)
                soak_result = soak(url, workload.router_single, seconds=args.soak_s)
    parts = [
        machine_line(),
        f"code: {code_description()}; mlflow models serve -w 1 --env-manager local; 127.0.0.1; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} (servers inherit it); "
        f"clients are threads of this process (they share the 2 cores with the server)",
        f"{load_before} (before); {load_line()} (after)",
        "",
        "HTTP (same pairs; policy B gets their assembled feature rows)",
        http_table(http[ROUTER_URI], http[POLICY_B_URI]),
        "",
        in_process_table(rates, len(workload.pairs)),
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
    parts += ["", "Targets (issue 9)", targets_table(http[ROUTER_URI], http[POLICY_B_URI], rates, soak_result)]
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
