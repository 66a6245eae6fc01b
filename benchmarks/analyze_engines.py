"""`analyze` on DuckDB and on local Spark at 1, 10 and 100 million decision rows: where Spark overtakes (issue 16).

    python -m benchmarks.analyze_engines [--decisions 1000000,10000000,100000000] [--engines duckdb,spark]
        [--file-format parquet] [--repeats 1] [--spark-master 'local[*]'] [--spark-conf k=v,...] [--workdir DIR]

For each size the benchmark writes one experiment's records with
:func:`benchmarks.experiment_records.write_experiment_records` (the spec of
:func:`benchmarks.analyze.records_spec`: 10 UTC days, 10 candidates scored per request, 5 shown, ~5.5% clicked;
Parquet by default, the format a log outgrowing one machine is kept in), then measures, in a fresh process per
engine and repeat, what ``analyze`` computes: open and validate the records, the SQL reduction and the
readout's statistics (:func:`abtest.experiment.readout.experiment.read_records` + ``analyse_records``), with the
engine as the only difference (``spark=None`` or a session of ``abtest.spark.spark_session``).

Reported per (size, engine): median wall, CPU of the process tree, peak RSS of its largest process (``wait4``'s
``ru_maxrss``: the JVM, for Spark) and the sampled peak of the whole tree (Spark: driver JVM + Python), decision
rows per second of wall, the child's own phases (session start, read + reduce, statistics), and whether its
per-(day, user) rows equal the other engine's (a SHA-256 of the frame). Last, the smallest size at which Spark's
wall time is below DuckDB's, if one is.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from benchmarks.harness import (
    git_head,
    load_line,
    machine_line,
    markdown_table,
    median,
    process_tree,
    rss_mb,
    timed_phase,
)

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("duckdb", "spark")
DEFAULT_SIZES = (1_000_000, 10_000_000, 100_000_000)
PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class EngineRun:
    """One measured child: the engine, the size, the process figures and the child's own phases."""

    engine: str
    decisions: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    tree_peak_mb: float
    phases: Mapping[str, float]
    user_days_sha256: str


# ------------------------------------------------------------------------------------------ child process
def run_child(engine: str, directory: Path, spec_json: str, workdir: Path, master: str, conf: str) -> dict:
    """In this process: the analysis of the records at ``directory`` on ``engine``; phases and a digest."""
    import pandas as pd

    from abtest.experiment.readout.experiment import read_records
    from abtest.spark import parse_spark_conf, spark_session
    from benchmarks.analyze import readout_statistics

    spec = json.loads(spec_json)
    start = datetime.fromisoformat(spec["start"])
    phases: dict[str, float] = {}

    timed = functools.partial(timed_phase, phases)

    spark = None
    if engine == "spark":
        spark = timed("session", lambda: spark_session(master, parse_spark_conf(conf), app_name="bench-analyze"))
    data = timed(
        "read_and_reduce",
        lambda: read_records(
            str(directory),
            router_name=spec["router_name"],
            router_version=spec["router_version"],
            salt=spec["salt"],
            start=start,
            end=start + timedelta(days=spec["days"]),
            events=(),
            workdir=workdir,
            spark=spark,
        ),
    )
    timed("statistics", lambda: readout_statistics(data))
    if spark is not None:
        spark.stop()
    digest = hashlib.sha256(pd.util.hash_pandas_object(data.user_days, index=False).to_numpy().tobytes())
    return {"phases": phases, "user_days": len(data.user_days), "sha256": digest.hexdigest()}


# ------------------------------------------------------------------------------------------------- parent
class ChildTimeoutError(RuntimeError):
    """The child ran past ``--child-timeout`` and was stopped: the table says so instead of a time."""


def measure(
    command: Sequence[str], result_file: Path, *, timeout_s: float | None = None
) -> tuple[float, float, float, float, dict]:
    """Run the child; wall, CPU, largest process's peak RSS, sampled tree peak (MB) and what it wrote."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(command), cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    timer = None
    if timeout_s is not None:
        # The whole process group (the child, its JVM, Spark's Python workers) goes when time is up.
        timer = threading.Timer(timeout_s, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
    tree_peak = [0.0]
    cpu_by_pid: dict[int, float] = {}  # the last CPU seconds seen of each process of the tree
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            with contextlib.suppress(OSError):  # a process of the tree may end between listing and reading
                pids = process_tree(proc.pid)
                tree_peak[0] = max(tree_peak[0], rss_mb(pids))
                for pid in pids:
                    if pid != proc.pid:
                        cpu_by_pid[pid] = max(cpu_by_pid.get(pid, 0.0), cpu_seconds(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    if timer is not None:
        timer.cancel()
        if timeout_s is not None and wall >= timeout_s:
            raise ChildTimeoutError(f"stopped after {timeout_s:.0f} s")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child failed: {' '.join(command)}\n{stderr.decode(errors='replace')[-3000:]}")
    written = json.loads(result_file.read_text())
    # wait4 counts the child's CPU; its JVM and the JVM's Python workers are not waited for by it, so their CPU
    # is the last value sampled (every 0.5 s: up to half a second of each process's end is missed).
    cpu = usage.ru_utime + usage.ru_stime + sum(cpu_by_pid.values())
    return wall, cpu, usage.ru_maxrss / 1024, tree_peak[0], written


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_records(directory: Path, decisions: int, file_format: str) -> tuple[dict, dict[str, int], float]:
    """The records of about ``decisions`` rows; the spec (JSON-able), rows per table and the seconds it took."""
    from benchmarks.analyze import records_spec
    from benchmarks.experiment_records import write_experiment_records

    spec = replace(records_spec(decisions), file_format=file_format)
    started = time.perf_counter()
    written = write_experiment_records(directory, spec)
    spec_json = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(spec).items()}
    return spec_json, written.rows, time.perf_counter() - started


def crossover(runs: Sequence[EngineRun]) -> str:
    """The smallest size at which Spark's median wall is below DuckDB's, as a sentence."""
    walls: dict[tuple[int, str], float] = {}
    for size in sorted({r.decisions for r in runs}):
        for engine in ENGINES:
            chosen = [r.wall_s for r in runs if r.decisions == size and r.engine == engine]
            if chosen:
                walls[(size, engine)] = median(chosen)
    sizes = sorted({size for size, _ in walls})
    for size in sizes:
        if (
            (size, "spark") in walls
            and (size, "duckdb") in walls
            and walls[(size, "spark")] < walls[(size, "duckdb")]
        ):
            ratio = walls[(size, "duckdb")] / walls[(size, "spark")]
            return f"Spark overtakes DuckDB at {size:,} decision rows ({ratio:.2f}x faster by wall time)."
    both = [s for s in sizes if (s, "spark") in walls and (s, "duckdb") in walls]
    if not both:
        return "No size was measured on both engines."
    largest = both[-1]
    ratio = walls[(largest, "spark")] / walls[(largest, "duckdb")]
    return (
        f"Spark does not overtake DuckDB on this machine up to {largest:,} decision rows "
        f"(at that size Spark takes {ratio:.2f}x DuckDB's wall time)."
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments; as the parent write the records and measure each engine; as a child run one analysis."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--file-format", default="parquet", choices=("parquet", "jsonl"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--spark-master", default="local[*]")
    parser.add_argument("--spark-conf", default="")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the written records")
    parser.add_argument("--child-timeout", type=float, default=None, help="stop a measurement after this many s")
    parser.add_argument(
        "--duckdb-memory",
        default="",
        help="DuckDB's memory cap for the children (ABTEST_DUCKDB_MEMORY_LIMIT; default: the reader's 1GB)",
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("ENGINE", "DIR", "SPEC_JSON", "RESULT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        engine, directory, spec_json, result = args.child
        with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
            out = run_child(engine, Path(directory), spec_json, Path(scratch), args.spark_master, args.spark_conf)
        Path(result).write_text(json.dumps(out))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.duckdb_memory:
        os.environ["ABTEST_DUCKDB_MEMORY_LIMIT"] = args.duckdb_memory  # inherited by every child
    from abtest.experiment.ingest.read import duckdb_memory_limit

    sizes = [int(s) for s in args.decisions.split(",") if s.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        parser.error(f"--engines: {unknown} not among {list(ENGINES)}")
    root = Path(tempfile.mkdtemp(prefix="bench-engines-", dir=args.workdir))
    runs: list[EngineRun] = []
    written_rows: list[list[object]] = []
    print(f"# analyze on DuckDB and Spark\n\n{machine_line()}; code {git_head()}; records as {args.file_format}")
    print(
        f"Spark master {args.spark_master}, extra conf {args.spark_conf or '(none)'}; DuckDB memory cap", end=" "
    )
    print(f"{duckdb_memory_limit()}\n")
    stopped: list[list[object]] = []
    try:
        for size in sizes:
            directory = root / f"records-{size}"
            print(f"{load_line()} - writing {size:,} decisions", flush=True)
            spec_json, rows, seconds = write_records(directory, size, args.file_format)
            written_rows.append([f"{size:,}", rows["decisions"], rows["impressions"], rows["outcomes"], seconds])
            for repeat in range(args.repeats):
                for engine in engines:
                    result = root / f"result-{size}-{engine}-{repeat}.json"
                    command = [
                        sys.executable,
                        "-m",
                        "benchmarks.analyze_engines",
                        "--spark-master",
                        args.spark_master,
                    ]
                    command += ["--spark-conf", args.spark_conf, "--workdir", str(root)]
                    command += ["--child", engine, str(directory), json.dumps(spec_json), str(result)]
                    print(f"{load_line()} - {engine} on {size:,} (repeat {repeat + 1})", flush=True)
                    try:
                        wall, cpu, peak, tree, out = measure(command, result, timeout_s=args.child_timeout)
                    except ChildTimeoutError as timeout:
                        print(f"  {timeout}", flush=True)
                        stopped.append([f"{rows['decisions']:,}", engine, str(timeout)])
                        continue
                    runs.append(
                        EngineRun(engine, rows["decisions"], wall, cpu, peak, tree, out["phases"], out["sha256"])
                    )
                    print(
                        f"  {wall:.1f} s wall, {cpu:.1f} s CPU, peak {peak:.0f} MB (tree {tree:.0f} MB)",
                        flush=True,
                    )
            if not args.keep:
                shutil.rmtree(directory, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("\n## Records written\n")
    print(markdown_table(["size", "decisions", "impressions", "outcomes", "write s"], written_rows))
    print("\n## Analysis (median of repeats)\n")
    print(markdown_table(RESULT_HEADER, result_rows(runs)))
    if stopped:
        print("\n## Stopped (past --child-timeout)\n")
        print(markdown_table(["decisions", "engine", "what happened"], stopped))
    print(f"\n{crossover(runs)}")
    print(f"\n{load_line()}")


RESULT_HEADER = (
    "decisions",
    "engine",
    "wall s",
    "CPU s",
    "peak RSS MB (largest process)",
    "peak RSS MB (process tree)",
    "rows/s",
    "session s",
    "read + reduce s",
    "statistics s",
    "same user-days as the other engine",
)


def result_rows(runs: Sequence[EngineRun]) -> list[list[object]]:
    """One row per (size, engine): medians over repeats, and whether the reductions agree."""
    rows = []
    for size in sorted({r.decisions for r in runs}):
        digests = {r.engine: r.user_days_sha256 for r in runs if r.decisions == size}
        for engine in ENGINES:
            chosen = [r for r in runs if r.decisions == size and r.engine == engine]
            if not chosen:
                continue
            wall = median([r.wall_s for r in chosen])
            others = {e: d for e, d in digests.items() if e != engine}
            same = "-" if not others else ("yes" if all(d == digests[engine] for d in others.values()) else "NO")

            def phase(name: str, chosen=chosen) -> float:
                return median([r.phases.get(f"{name}_wall_s", 0.0) for r in chosen])

            rows.append(
                [
                    f"{size:,}",
                    engine,
                    wall,
                    median([r.cpu_s for r in chosen]),
                    max(r.peak_rss_mb for r in chosen),
                    max(r.tree_peak_mb for r in chosen),
                    f"{size / wall:,.0f}",
                    phase("session"),
                    phase("read_and_reduce"),
                    phase("statistics"),
                    same,
                ]
            )
    return rows


if __name__ == "__main__":
    main()
