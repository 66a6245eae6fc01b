"""`analyze`'s reading, reduction and analysis on 10 million decision rows: wall, CPU, peak RSS, rows/s (issue 14).

    python -m benchmarks.analyze --decisions 10000000 [--repeats 1] [--workdir /tmp] [--keep]

Writes an experiment's records with :func:`benchmarks.experiment_records.write_experiment_records` (10 UTC
days, 10 candidates scored per request, 5 shown, ~5.5% clicked: 10M decisions come with 5M impressions and ~275k
clicks, 4.7 GB of JSON Lines), then measures each stage in a fresh process (``harness.run_measured``: wall, CPU
of the process tree, peak RSS):

- ``scan``: the floor of any JSON reading: DuckDB's typed ``read_json`` counting every file (lenient: it casts
  ``"12"`` to 12 and rounds ``1.5``), the baseline the other stages are compared with in the same run;
- ``read``: :func:`abtest.experiment.ingest.read.open_records`: every field strictly typed, loaded into DuckDB;
- ``reduce``: ``read`` + :func:`abtest.experiment.ingest.reduce.reduce_experiment` (user-days, arms, health);
- ``analyze``: what the ``analyze`` step computes: ``read_records`` + the readout's ``analyse_records``;
- ``cached``: ``read`` with ``cache_dir`` twice (cold: validate and write Parquet; warm: read the Parquet, what a
  re-analysis of closed files costs), then the reduction.

The child process writes its own phase timings (``time.perf_counter`` and ``time.process_time``) to a JSON file,
so the table also splits the ``analyze`` stage into load, reduction and statistics.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from benchmarks.experiment_records import write_experiment_records
from benchmarks.harness import (
    Measurement,
    git_head,
    load_line,
    machine_line,
    markdown_table,
    median,
    run_measured,
    timed_phase,
)

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("scan", "read", "reduce", "analyze", "cached")
DECISIONS_PER_USER = 100  # 10 days x 0.5 active x 2 requests x 10 candidates
TARGET_WALL_S = 60.0
TARGET_PEAK_MB = 2048.0
CORES = 2


def records_spec(decisions: int, *, seed: int = 0):
    """The spec that writes about ``decisions`` decision rows (a planted 10% lift, no defects)."""
    from benchmarks.experiment_records import RecordsSpec

    return RecordsSpec(
        n_users=max(decisions // DECISIONS_PER_USER, 10),
        days=10,
        active_share=0.5,
        requests_per_active_day=2.0,
        candidates=10,
        slate=5,
        ctr_a=0.05,
        ctr_b=0.055,
        n_items=2000,
        seed=seed,
    )


# ------------------------------------------------------------------------------------------ child process
def run_stage(stage: str, directory: Path, spec_json: str, workdir: Path) -> dict[str, float]:
    """One stage in this process; returns its phases' wall and CPU seconds (and the rows it saw)."""
    from abtest.experiment.ingest.read import open_records
    from abtest.experiment.ingest.reduce import Experiment, reduce_experiment

    spec = json.loads(spec_json)
    phases: dict[str, float] = {}

    timed = functools.partial(timed_phase, phases)

    if stage == "scan":
        import duckdb

        from ab_router.records import RECORD_TYPES
        from abtest.experiment.ingest.read import _DUCKDB_TYPES

        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        rows = 0
        for table, record_type in RECORD_TYPES.items():
            columns = {f.name: _DUCKDB_TYPES[f.kind] for f in record_type.fields}
            files = [str(p) for p in sorted((directory / table).glob("*.jsonl"))]
            rows += timed(
                f"scan_{table}",
                lambda files=files, columns=columns: con.execute(
                    f"SELECT count(*) FROM read_json({files}, columns={columns}, format='newline_delimited')"
                ).fetchone()[0],
            )
        phases["rows"] = rows
        return phases
    from datetime import datetime

    start = datetime.fromisoformat(spec["start"])
    experiment = Experiment(
        start=start,
        end=start + timedelta(days=spec["days"]),
        router_version=spec["router_version"],
        salt=spec["salt"],
        router_name=spec["router_name"],
    )
    if stage == "analyze":
        from abtest.experiment.readout.experiment import read_records

        data = timed(
            "read_and_reduce",
            lambda: read_records(
                str(directory),
                router_name=experiment.router_name,
                router_version=experiment.router_version,
                salt=experiment.salt,
                start=experiment.start,
                end=experiment.end,
                events=(),
                workdir=workdir,
            ),
        )
        timed("statistics", lambda: readout_statistics(data))
        phases["user_days"] = len(data.user_days)
        return phases
    if stage == "cached":
        cache = workdir / "cache"
        timed("read_cold_writing_cache", lambda: open_records(directory, workdir=workdir, cache_dir=cache).close())
        store = timed("read_warm_from_cache", lambda: open_records(directory, workdir=workdir, cache_dir=cache))
        timed("reduce", lambda: reduce_experiment(store, experiment))
        store.close()
        return phases
    store = timed("read", lambda: open_records(directory, workdir=workdir))
    if stage == "reduce":
        data = timed("reduce", lambda: reduce_experiment(store, experiment))
        phases["user_days"] = len(data.user_days)
    store.close()
    return phases


def readout_statistics(data):
    """What ``analyze`` computes from a reduction (default plan, split 0.5, no CUPED covariate): the readout."""
    import pandas as pd

    from abtest.experiment.plan import AnalysisPlan
    from abtest.experiment.readout.experiment import analyse_records, inputs_from_data, records_config

    plan = AnalysisPlan()
    inputs = inputs_from_data(data)
    config = records_config(
        plan,
        split=0.5,
        users=int(inputs.user_days["user_id"].nunique()),
        days_observed=int(inputs.user_days["day"].nunique()),
    )
    return analyse_records(inputs, plan, config, pd.Series(dtype=float))


def own_peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), MB.

    ``wait4``'s ``ru_maxrss`` of a child starts from the parent's resident size at fork, so a parent that just
    wrote 10M records would lend the child its own peak; the child's VmHWM after exec is its own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------------------------- tables
def stage_rows(
    measured: Mapping[str, Sequence[Measurement]], *, decisions: int, baseline: str = "scan"
) -> list[list[object]]:
    """Per stage: median wall, CPU, peak RSS, decision rows/s by wall, and wall / the baseline stage's wall."""
    base = median([m.wall_s for m in measured[baseline]]) if baseline in measured else float("nan")
    rows = []
    for stage, runs in measured.items():
        wall = median([m.wall_s for m in runs])
        rows.append(
            [
                stage,
                wall,
                median([m.cpu_s for m in runs]),
                max(m.peak_rss_mb for m in runs),
                decisions / wall if wall > 0 else float("nan"),
                wall / base if base > 0 else float("nan"),
            ]
        )
    return rows


def phase_rows(phases: Mapping[str, float]) -> list[list[object]]:
    """The child's own phases (``<name>_wall_s`` / ``<name>_cpu_s``), in the order it ran them."""
    names = [key.removesuffix("_wall_s") for key in phases if key.endswith("_wall_s")]
    return [[name, phases[f"{name}_wall_s"], phases.get(f"{name}_cpu_s", float("nan"))] for name in names]


def target_rows(analyze: Sequence[Measurement], *, cores: int = CORES) -> list[list[object]]:
    """The issue's targets for the full analysis: wall time (and CPU / cores, what an idle box would take), RSS."""
    wall = median([m.wall_s for m in analyze])
    cpu_per_core = median([m.cpu_s for m in analyze]) / cores
    peak = max(m.peak_rss_mb for m in analyze)

    def status(value: float, bound: float) -> str:
        return "met" if value <= bound else "MISSED"

    return [
        ["analyze wall s", f"<= {TARGET_WALL_S:g}", wall, status(wall, TARGET_WALL_S)],
        [
            f"analyze CPU s / {cores} cores",
            f"<= {TARGET_WALL_S:g}",
            cpu_per_core,
            status(cpu_per_core, TARGET_WALL_S),
        ],
        ["analyze peak RSS MB", f"<= {TARGET_PEAK_MB:g}", peak, status(peak, TARGET_PEAK_MB)],
    ]


# ------------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments; as the parent, write the records and measure every stage; as a child, run one stage."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {list(STAGES)}")
    parser.add_argument("--workdir", type=Path, default=None, help="where the records and DuckDB files go")
    parser.add_argument("--records", type=Path, default=None, help="reuse records written by an earlier run")
    parser.add_argument("--keep", action="store_true", help="keep the written records")
    parser.add_argument("--child-stage", help=argparse.SUPPRESS)
    parser.add_argument("--child-generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-spec", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.child_generate:
        written = write_experiment_records(args.records, records_spec(args.child_generate))
        args.child_out.write_text(json.dumps({"rows": written.rows, "peak_rss_mb": own_peak_rss_mb()}))
        return
    if args.child_stage:
        workdir = Path(tempfile.mkdtemp(prefix="bench-analyze-", dir=args.workdir))
        try:
            phases = run_stage(args.child_stage, args.records, args.child_spec, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        args.child_out.write_text(json.dumps({**phases, "peak_rss_mb": own_peak_rss_mb()}))
        return
    stages = [stage for stage in args.stages.split(",") if stage]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown {unknown}; choose from {list(STAGES)}")
    print(machine_line())
    print(f"code: {git_head()} (working tree)")
    print(load_line() + " (before)")
    spec = records_spec(args.decisions)
    root = Path(tempfile.mkdtemp(prefix="bench-analyze-", dir=args.workdir))
    try:
        directory = args.records
        written_rows: dict[str, int] = {}
        generate = (float("nan"), float("nan"), float("nan"))
        if directory is None:
            # In a child too: the parent must stay small (see own_peak_rss_mb).
            directory, out = root / "records", root / "written.json"
            command = [sys.executable, "-m", "benchmarks.analyze", "--child-generate", str(args.decisions),
                       "--records", str(directory), "--child-out", str(out)]  # fmt: skip
            generated = run_measured(command)
            generate = (generated.wall_s, generated.cpu_s, json.loads(out.read_text())["peak_rss_mb"])
            written_rows = json.loads(out.read_text())["rows"]
            log.info("wrote %s in %.1f s", written_rows, generate[0])
        size_gb = sum(p.stat().st_size for p in directory.rglob("*.jsonl")) / 1e9
        spec_json = json.dumps(
            {
                "start": spec.start.isoformat(),
                "days": spec.days,
                "router_version": spec.router_version,
                "salt": spec.salt,
                "router_name": spec.router_name,
            }
        )
        measured: dict[str, list[Measurement]] = {}
        phases: dict[str, dict[str, float]] = {}
        for stage in stages:
            for repeat in range(args.repeats):
                out = root / f"{stage}-{repeat}.json"
                command = [
                    sys.executable, "-m", "benchmarks.analyze", "--child-stage", stage, "--records",
                    str(directory), "--child-spec", spec_json, "--child-out", str(out),
                ]  # fmt: skip
                if args.workdir:
                    command += ["--workdir", str(args.workdir)]
                measurement = run_measured(command)
                phases[stage] = json.loads(out.read_text())
                measurement = replace(measurement, peak_rss_mb=phases[stage]["peak_rss_mb"])
                measured.setdefault(stage, []).append(measurement)
                log.info("%s: %.1f s wall, %.1f s CPU, %.0f MB", stage, measurement.wall_s, measurement.cpu_s,
                         measurement.peak_rss_mb)  # fmt: skip
        print(load_line() + " (after)")
        rows = written_rows or {"decisions": args.decisions}
        print(
            f"\nrecords: {rows}, {size_gb:.2f} GB of JSON Lines; written in {generate[0]:.1f} s wall, "
            f"{generate[1]:.1f} s CPU, peak RSS {generate[2]:.0f} MB (generator, its own process)\n"
        )
        print(f"Stages, each in a fresh process (median of {args.repeats}); rows/s = decision rows / wall s")
        header = ["stage", "wall s", "CPU s", "peak RSS MB", "decision rows/s", "wall / scan"]
        print(markdown_table(header, stage_rows(measured, decisions=rows["decisions"])))
        for stage in ("reduce", "analyze", "cached"):
            if stage in phases:
                print(f"\nPhases of `{stage}` (in the child, last repeat)")
                print(markdown_table(["phase", "wall s", "CPU s"], phase_rows(phases[stage])))
        if "analyze" in measured:
            print("\nTargets (issue 14)")
            print(markdown_table(["what", "target", "measured", "status"], target_rows(measured["analyze"])))
    finally:
        if args.keep:
            print(f"records kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
