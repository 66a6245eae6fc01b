"""`score` benchmark: rows/s of batch scoring on N pairs (default 10 million), engine=local and engine=spark, next
to the served router's rows/s on the same pairs.

    OMP_NUM_THREADS=1 python -m benchmarks.score [--pairs 10000000] [--repeats 3] [--engines local,spark,served]
        [--tracking-uri sqlite:///...] [--chunk-rows 100000] [--served-batch-rows 20000] [--workdir /tmp]

The pairs are drawn from the router's prepare run's test split (known users and items) and written once as one
Parquet file (row groups of 1M rows) with a ``request_id`` per row, as an offline replay has them. Then:

- ``local`` / ``spark``: ``python -m steps.score -P input=<pairs> -P output=<new folder> -P engine=...`` in a
  fresh process per repeat (the step as a user runs it, minus `mlflow run`'s own start-up): its own
  ``rows_per_s`` metric (reading, scoring and writing; for local not the router's load, for spark not the
  session's start) and the whole process's wall time (imports, JVM, router load, run bookkeeping included);
- ``served``: ``mlflow models serve --env-manager local -w 1`` on 127.0.0.1 (``benchmarks.served``), the pairs
  posted in ``--served-batch-rows`` requests one after the other by the project's own client
  (``abtest.experiment.router_client.endpoint_scorer``, ``dataframe_split`` JSON), answers parsed into frames:
  rows / the requests' time, and with the server's start-up (to the first ``/ping``) for the end-to-end figure.

Peak memory is the sum of VmRSS over the measured process tree (the step and its JVM and Python workers; the
server and its worker), sampled every 0.2 s. CPU is user + system seconds of the tree: the step's own from
``wait4``, every other process's (Spark's JVM and workers; the server's) as last sampled from /proc; served adds
this process's client time (JSON encoding and decoding). Medians over repeats; the load average is printed
before and after (2 shared cores: compare ratios within one run). Without ``--tracking-uri`` the router is
built first in a temporary store by the real steps (``benchmarks.serving.build_models``: synthetic
ML-100K-sized data).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ab_router.records import DECISION_LOG_ENV
from benchmarks.harness import (
    PROJECT_DIR,
    code_description,
    load_line,
    machine_line,
    markdown_table,
    median,
    process_tree,
    rss_mb,
)

log = logging.getLogger("benchmarks.score")

ENGINES: tuple[str, ...] = ("local", "spark", "served")
ROW_GROUP_ROWS = 1_000_000
SAMPLE_EVERY_S = 0.2
HEADER = [
    "engine",
    "pairs",
    "rows/s (scoring)",
    "rows/s (end to end)",
    "wall s",
    "CPU s",
    "peak RSS MB",
    "scoring rows/s / served",
]


@dataclass(frozen=True)
class Measured:
    """One repeat of one engine."""

    rows: int
    scoring_s: float  # the scoring itself (the step's rows / rows_per_s; served: the requests)
    wall_s: float  # the whole process (served: the requests plus the server's start-up)
    cpu_s: float
    peak_rss_mb: float


def write_pairs(path: Path, n_pairs: int, *, users: np.ndarray, items: np.ndarray, seed: int = 0) -> Path:
    """``n_pairs`` (user_id, item_id, request_id) rows from ``users`` / ``items``, a row group at a time."""
    rng = np.random.default_rng(seed)
    schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("request_id", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n_pairs, ROW_GROUP_ROWS):
            size = min(ROW_GROUP_ROWS, n_pairs - start)
            request_ids = np.char.add("replay-", np.arange(start, start + size).astype(str)).astype(object)
            writer.write_table(
                pa.table(
                    {
                        "user_id": rng.choice(users, size).astype(np.int64),
                        "item_id": rng.choice(items, size).astype(np.int64),
                        "request_id": pa.array(request_ids, pa.string()),
                    },
                    schema=schema,
                )
            )
    return path


class TreeSampler:
    """The peak of the summed VmRSS of a process tree, and its CPU seconds, sampled on a thread until stopped.

    CPU is each process's own user + system time as last seen (a process that exits between two samples loses
    at most one interval), so processes nobody waits for (Spark's JVM and Python workers) are counted too.
    """

    def __init__(self, root_pid: int, *, exclude: int | None = None) -> None:
        self.root_pid, self.exclude, self.peak_mb = root_pid, exclude, 0.0
        self.cpu_by_pid: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        """One look at the tree now (the thread calls it every SAMPLE_EVERY_S; call it before the tree exits)."""
        pids = [pid for pid in process_tree(self.root_pid) if pid != self.exclude]
        self.peak_mb = max(self.peak_mb, rss_mb(pids))
        for pid in pids:
            seconds = own_cpu_s(pid)
            if seconds is not None:
                self.cpu_by_pid[pid] = seconds

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def own_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` itself (/proc/<pid>/stat), None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def run_step(
    engine: str, pairs: Path, output: Path, *, chunk_rows: int, env: Mapping[str, str], experiment_id: str
) -> Measured:
    """``python -m steps.score`` on ``pairs`` in a fresh process; its metrics are read back from its run."""
    import mlflow

    command = [
        sys.executable, "-m", "steps.score", "--input", str(pairs), "--output", str(output),
        "--engine", engine, "--chunk_rows", str(chunk_rows),
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=dict(env), cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    with TreeSampler(process.pid) as sampler:
        stderr = process.stderr.read() if process.stderr else b""
        sampler.sample()  # the last look before the step is reaped
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr.decode(errors='replace')[-3000:]}")
    (run,) = mlflow.search_runs([experiment_id], max_results=1, order_by=["start_time DESC"], output_format="list")
    rows, rows_per_s = int(run.data.metrics["rows"]), run.data.metrics["rows_per_s"]
    shutil.rmtree(output)
    # The step's own CPU from wait4 (exact); its JVM and Python workers as sampled.
    others = sum(seconds for pid, seconds in sampler.cpu_by_pid.items() if pid != process.pid)
    return Measured(rows, rows / rows_per_s, wall, usage.ru_utime + usage.ru_stime + others, sampler.peak_mb)


def run_served(model_uri: str, pairs: Path, *, batch_rows: int, max_rows: int | None = None) -> Measured:
    """The pairs through a served router, ``batch_rows`` per request (see the module docstring)."""
    from abtest.experiment.router_client import endpoint_scorer
    from benchmarks.served import served_model

    started = time.perf_counter()
    cpu_before = time.process_time()
    with TreeSampler(os.getpid(), exclude=os.getpid()) as sampler, served_model(model_uri) as url:
        startup = time.perf_counter() - started
        scorer = endpoint_scorer(url, model_uri=model_uri)
        rows, requests_started = 0, time.perf_counter()
        for batch in pq.ParquetFile(pairs).iter_batches(batch_size=batch_rows):
            if max_rows is not None and rows >= max_rows:
                break
            rows += len(scorer(batch.to_pandas(), None))
        scoring = time.perf_counter() - requests_started
        sampler.sample()  # the last look before the server stops
    client_cpu = time.process_time() - cpu_before
    return Measured(
        rows, scoring, startup + scoring, sum(sampler.cpu_by_pid.values()) + client_cpu, sampler.peak_mb
    )


def table_rows(measured: Mapping[str, Sequence[Measured]]) -> list[list[object]]:
    """Per engine: medians of rows/s (scoring, end to end), wall, CPU; the peak RSS; scoring rows/s / served's."""
    scoring = {engine: median([m.rows / m.scoring_s for m in runs]) for engine, runs in measured.items() if runs}
    served = scoring.get("served", float("nan"))
    rows = []
    for engine, runs in measured.items():
        rows.append(
            [
                engine,
                runs[0].rows,
                scoring[engine],
                median([m.rows / m.wall_s for m in runs]),
                median([m.wall_s for m in runs]),
                median([m.cpu_s for m in runs]),
                max(m.peak_rss_mb for m in runs),
                scoring[engine] / served if served > 0 else float("nan"),
            ]
        )
    return rows


def _router_ids(model_uri: str) -> tuple[np.ndarray, np.ndarray]:
    from abtest.experiment.router_client import resolve_router
    from abtest.tracking.lineage import load_prepared

    test = load_prepared(resolve_router(model_uri, router_run="").prepare_run).test
    return test["user_id"].unique(), test["item_id"].unique()


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark; prints and returns the report."""
    parser = argparse.ArgumentParser(prog="benchmarks.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {list(ENGINES)}")
    parser.add_argument("--tracking-uri", default="", help="use this store's router (default: build one)")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="engine=local's chunk_rows")
    parser.add_argument("--served-batch-rows", type=int, default=20_000, help="rows per HTTP request")
    parser.add_argument("--served-pairs", type=int, default=0, help="served: score only this many (0 = all)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the pairs and outputs go")
    args = parser.parse_args(argv)
    engines = [engine for engine in args.engines.split(",") if engine]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        parser.error(f"--engines: unknown {unknown}; choose from {list(ENGINES)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import mlflow

    from benchmarks.serving import ROUTER_URI, build_models

    # Nothing measured here records decisions (the served router inherits this environment).
    os.environ.pop(DECISION_LOG_ENV, None)
    load_before = load_line()
    root = Path(tempfile.mkdtemp(prefix="bench-score-", dir=args.workdir))
    try:
        if args.tracking_uri:
            mlflow.set_tracking_uri(args.tracking_uri)
            mlflow.set_registry_uri(args.tracking_uri)
        else:
            build_models(root / "store", zip_path="")
        tracking_uri = mlflow.get_tracking_uri()
        experiment_id = mlflow.MlflowClient().create_experiment(
            f"bench-score-{uuid.uuid4().hex[:8]}", artifact_location=(root / "artifacts").as_uri()
        )
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith("MLFLOW_EXPERIMENT") and k != "MLFLOW_RUN_ID"
            },
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_REGISTRY_URI": mlflow.get_registry_uri(),
            "MLFLOW_EXPERIMENT_ID": experiment_id,
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
        users, items = _router_ids(ROUTER_URI)
        started = time.perf_counter()
        pairs = write_pairs(root / "pairs.parquet", args.pairs, users=users, items=items)
        log.info("wrote %d pairs in %.1f s (%.0f MB)", args.pairs, time.perf_counter() - started,
                 pairs.stat().st_size / 1e6)  # fmt: skip
        measured: dict[str, list[Measured]] = {engine: [] for engine in engines}
        for repeat in range(args.repeats):
            for engine in engines:
                if engine == "served":
                    result = run_served(
                        ROUTER_URI, pairs, batch_rows=args.served_batch_rows, max_rows=args.served_pairs or None
                    )
                else:
                    output = root / f"out-{engine}-{repeat}"
                    result = run_step(
                        engine, pairs, output, chunk_rows=args.chunk_rows, env=env, experiment_id=experiment_id
                    )
                measured[engine].append(result)
                log.info("%s repeat %d: %.0f rows/s scoring, %.1f s wall, %.0f MB", engine, repeat,
                         result.rows / result.scoring_s, result.wall_s, result.peak_rss_mb)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = "\n".join(
        [
            machine_line(),
            f"code: {code_description()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
            f"chunk_rows {args.chunk_rows}; served: -w 1, {args.served_batch_rows} rows per request",
            f"{load_before} (before); {load_line()} (after)",
            "",
            f"score on {args.pairs:,} pairs (median of {args.repeats}); scoring = reading, scoring, writing "
            "(served: the requests); end to end = the whole process (served: with the server's start-up)",
            markdown_table(HEADER, table_rows(measured)),
        ]
    )
    print(report)
    return report


if __name__ == "__main__":
    main()
