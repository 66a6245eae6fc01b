"""Time one saved router's in-process ``predict`` in a process of its own: ``python benchmarks/router_timing.py``.

The serving benchmark compares routers bundled with different ``ab_router`` code (before / after a change). One
process can import only one ``ab_router`` (MLflow puts a model's bundled code on ``sys.path``, but a package
already imported stays), so each router is timed by this script in a fresh interpreter. It imports nothing from
the project: the router's own bundled code is what runs.

    python benchmarks/router_timing.py ROUTER_DIR PAIRS.parquet --repeats 300

prints one JSON object: p50 ms of single-row and 100-row ``predict`` (through the pyfunc, as a caller in process
sees it, by wall and CPU time, and the python model's ``predict`` alone), 10,000-row rows/s by wall and CPU
time, and load seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence

import mlflow
import pandas as pd


def _p50_ms(call: Callable[[], object], *, repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``call`` (CPU time: what a loaded shared machine distorts least)."""
    call()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def _rates(call: Callable[[], object], rows: int, *, repeats: int) -> tuple[float, float]:
    call()
    walls, cpus = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
    return rows / statistics.median(walls), rows / statistics.median(cpus)


def time_router(router_dir: str, pairs: pd.DataFrame, *, repeats: int, big_repeats: int) -> dict[str, float]:
    """In-process timings of the router saved at ``router_dir`` on ``pairs`` (the first rows are the singles)."""
    started = time.perf_counter()
    model = mlflow.pyfunc.load_model(router_dir)
    load_s = time.perf_counter() - started
    python_model = model.unwrap_python_model()
    singles = [pairs.iloc[[k]].reset_index(drop=True) for k in range(min(repeats, len(pairs)))]
    hundred = pairs.iloc[:100].reset_index(drop=True)
    position = iter(range(10**9))

    def single() -> object:
        return model.predict(singles[next(position) % len(singles)])

    def single_python() -> object:
        return python_model.predict(None, singles[next(position) % len(singles)])

    wall, cpu = _rates(lambda: model.predict(pairs), len(pairs), repeats=big_repeats)
    single_wall, single_cpu = _p50_ms(single, repeats=repeats)
    hundred_wall, hundred_cpu = _p50_ms(lambda: model.predict(hundred), repeats=repeats)
    python_wall, _ = _p50_ms(single_python, repeats=repeats)
    python_hundred, _ = _p50_ms(lambda: python_model.predict(None, hundred), repeats=repeats)
    return {
        "load s": load_s,
        "single p50 ms": single_wall,
        "single CPU p50 ms": single_cpu,
        "100-row p50 ms": hundred_wall,
        "100-row CPU p50 ms": hundred_cpu,
        "single p50 ms, python model only": python_wall,
        "100-row p50 ms, python model only": python_hundred,
        "rows/s (wall)": wall,
        "rows/s (CPU)": cpu,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Parse the arguments, time the router, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("router_dir")
    parser.add_argument("pairs", help="parquet file of user_id, item_id (int64)")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--big-repeats", type=int, default=7)
    args = parser.parse_args(argv)
    result = time_router(
        args.router_dir, pd.read_parquet(args.pairs), repeats=args.repeats, big_repeats=args.big_repeats
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
