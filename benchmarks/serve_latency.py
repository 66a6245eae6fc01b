"""Latency of the served A/B router: single-row p50/p99 and rows/s for one 10,000-row request.

Starts `mlflow models serve --env-manager local` on 127.0.0.1 itself, measures over HTTP (one client, sequential
requests, keep-alive) and stops the server, within a bounded time. By default it serves
``models:/movielens_ctr_router@router`` of the current tracking store (run the pipeline first); ``--build`` makes
one first in a temporary store from a synthetic ML-100K-sized zip through the real steps (prepare → train_a,
train_b → register → router).

    python -m benchmarks.serve_latency --build
    python -m benchmarks.serve_latency --model-uri models:/movielens_ctr_router@router --single 500
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import requests

from benchmarks.harness import machine_line, markdown_table, use_fresh_store
from steps.serving import request_body, served_model

log = logging.getLogger("benchmarks.serve_latency")
ROUTER_URI = "models:/movielens_ctr_router@router"


def build_router(root: Path) -> None:
    """A full synthetic pipeline in a temporary SQLite store under ``root``; sets the env for the server too."""
    from steps import prepare, register, router, train_a, train_b
    from steps.synthetic import write_synthetic_zip

    use_fresh_store(root, "serve-latency")
    data = write_synthetic_zip(
        root / "ml-100k.zip", layout="ml-100k", n_users=943, n_items=1682, n_ratings=100_000, seed=0
    )
    prepared = prepare.main(["--source", "local", "--data_path", str(data), "--split", "random"])
    run_a = train_a.main(["--prepare_run", prepared])
    run_b = train_b.main(["--prepare_run", prepared])
    register.main(["--train_a_run", run_a, "--train_b_run", run_b])
    router.main([])


def measure(url: str, *, single: int, big_rows: int, big_repeats: int, seed: int) -> list[list[object]]:
    """Rows of the result table: single-row latency percentiles and the big request's throughput."""
    rng = np.random.default_rng(seed)
    users, items = np.arange(1, 944), np.arange(1, 1683)
    rows: list[list[object]] = []
    with requests.Session() as session:

        def post(frame: pd.DataFrame) -> float:
            start = time.perf_counter()
            response = session.post(f"{url}/invocations", json=request_body(frame), timeout=120)
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            return elapsed

        def pairs(n: int) -> pd.DataFrame:
            return pd.DataFrame({"user_id": rng.choice(users, n), "item_id": rng.choice(items, n)})

        for _ in range(20):  # warm-up: first requests pay for lazy imports and allocator growth
            post(pairs(1))
        # The HTTP floor: what a request costs before any parsing or model work.
        pings = []
        for _ in range(single):
            start = time.perf_counter()
            session.get(f"{url}/ping", timeout=30).raise_for_status()
            pings.append((time.perf_counter() - start) * 1000)
        rows.append(["GET /ping", single, float(np.median(pings)), float(np.percentile(pings, 99)), float("nan")])
        latencies = np.array([post(pairs(1)) for _ in range(single)]) * 1000
        rows.append(
            [
                "1 row",
                single,
                float(np.percentile(latencies, 50)),
                float(np.percentile(latencies, 99)),
                1000 / float(np.mean(latencies)),
            ]
        )
        for n in (100, big_rows):
            times = [post(pairs(n)) for _ in range(big_repeats)]
            rows.append(
                [
                    f"{n:,} rows",
                    big_repeats,
                    statistics.median(times) * 1000,
                    max(times) * 1000,
                    n / statistics.median(times),
                ]
            )
    return rows


def in_process_rows(model_uri: str, *, single: int, seed: int) -> list[object]:
    """Single-row predict on the router loaded in this process: the model's share of the served latency."""
    model = mlflow.pyfunc.load_model(model_uri)
    rng = np.random.default_rng(seed)
    frames = [
        pd.DataFrame({"user_id": rng.integers(1, 944, 1), "item_id": rng.integers(1, 1683, 1)})
        for _ in range(single)
    ]
    for frame in frames[:20]:
        model.predict(frame)
    latencies = []
    for frame in frames:
        start = time.perf_counter()
        model.predict(frame)
        latencies.append((time.perf_counter() - start) * 1000)
    return [
        "1 row, in-process pyfunc",
        single,
        float(np.median(latencies)),
        float(np.percentile(latencies, 99)),
        1000 / float(np.mean(latencies)),
    ]


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark; returns (and prints) the markdown table."""
    parser = argparse.ArgumentParser(prog="benchmarks.serve_latency", description=__doc__)
    parser.add_argument("--model-uri", default=ROUTER_URI)
    parser.add_argument("--build", action="store_true", help="first build a router from synthetic data")
    parser.add_argument("--single", type=int, default=300, help="sequential single-row requests")
    parser.add_argument("--big-rows", type=int, default=10_000)
    parser.add_argument("--big-repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        if args.build:
            build_router(Path(tmp))
        with served_model(args.model_uri) as url:
            rows = measure(
                url, single=args.single, big_rows=args.big_rows, big_repeats=args.big_repeats, seed=args.seed
            )
        rows.append(in_process_rows(args.model_uri, single=args.single, seed=args.seed))
    table = markdown_table(["request", "n requests", "p50 ms", "p99 / max ms", "rows/s"], rows)
    served = f"router: {args.model_uri} (mlflow models serve, 1 worker, --env-manager local)"
    text = f"{machine_line()}\n{served}\n\n{table}"
    print(text)
    return text


if __name__ == "__main__":
    main()
