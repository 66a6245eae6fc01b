"""Pipeline benchmark: wall time and peak memory of every step and of `main` (cold and cached), by data size.

Every measurement is ``mlflow run <project> -e <entry> --env-manager local`` (main's manager: ``--env-manager``)
as a subprocess, in a temporary SQLite store of its own (never ./mlruns), on a frozen copy of the project
(``--code head``: the last commit), so other people's edits cannot change the code half-way. Peak memory is the
``ru_maxrss`` of the ``mlflow run`` process tree (``os.wait4``), i.e. the largest single process (the step), not
the sum.

For each size and repeat, in fresh stores:
- the steps one by one, each given its upstream run ids (prepare → train_a, train_b → evaluate → register →
  router → simulate);
- ``main`` cold (empty store), then the identical ``main`` again (cached: every step reused).

Sizes: ``ml-100k`` (the original zip via ``--zip`` / $ABTEST_ML100K_ZIP, else ``source=pypi``), ``ml-1m``
(synthetic, ML-1M's sizes: 1,000,209 ratings, 6,040 users, 3,706 items, from ``abtest.data.synthetic``) and
``ml-1m-x10`` (10x that; slow: choose it explicitly). The scaling exponent is the slope of log(time) against
log(ratings).

    python -m benchmarks.pipeline --sizes ml-100k,ml-1m --repeats 3
    python -m benchmarks.pipeline --sizes ml-100k,ml-1m,ml-1m-x10 --repeats 1 --skip-main
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from abtest.data.synthetic import REAL_SIZES, write_synthetic_zip
from benchmarks.harness import (
    Measurement,
    git_head,
    load_line,
    machine_line,
    markdown_table,
    median,
    run_measured,
    scaling_exponent,
    snapshot_project,
    start_benchmark_process,
)

log = logging.getLogger("benchmarks.pipeline")

STEPS: tuple[str, ...] = ("prepare", "train_a", "train_b", "evaluate", "register", "router", "simulate")
# Upstream run ids each step is given: parameter name -> the step whose run id it takes.
UPSTREAM: dict[str, dict[str, str]] = {
    "train_a": {"prepare_run": "prepare"},
    "train_b": {"prepare_run": "prepare"},
    "evaluate": {"train_a_run": "train_a", "train_b_run": "train_b", "prepare_run": "prepare"},
    "register": {"train_a_run": "train_a", "train_b_run": "train_b", "evaluate_run": "evaluate"},
    "simulate": {"router_run": "router", "prepare_run": "prepare"},
}
MAIN_COLD, MAIN_CACHED = "main (cold)", "main (cached)"
# Targets of issue 9, in seconds: (size, row) -> bound.
TARGETS: dict[tuple[str, str], float] = {
    ("ml-100k", MAIN_COLD): 60.0,
    ("ml-100k", MAIN_CACHED): 15.0,
    ("ml-1m", MAIN_COLD): 300.0,
}


@dataclass(frozen=True)
class DataSize:
    """One data size of the benchmark: the layout (prepare's ``dataset``), ratings and synthetic scale."""

    name: str
    dataset: str
    ratings: int
    synthetic_scale: float | None  # None = the real dataset


SIZES: dict[str, DataSize] = {
    "ml-100k": DataSize("ml-100k", "ml-100k", REAL_SIZES["ml-100k"][2], None),
    "ml-1m": DataSize("ml-1m", "ml-1m", REAL_SIZES["ml-1m"][2], 1.0),
    "ml-1m-x10": DataSize("ml-1m-x10", "ml-1m", REAL_SIZES["ml-1m"][2] * 10, 10.0),
}


@dataclass(frozen=True)
class Store:
    """A SQLite tracking + registry store with one experiment, used only by this benchmark's subprocesses."""

    root: Path
    experiment_id: str

    @property
    def uri(self) -> str:
        """The store's URI (tracking and registry)."""
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def client(self) -> MlflowClient:
        """A client bound to this store."""
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def env(self) -> dict[str, str]:
        """Environment of an `mlflow run` subprocess writing to this store."""
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_REGISTRY_URI": self.uri}


def new_store(root: Path) -> Store:
    """A new store under ``root`` with an experiment whose artifacts live there too (never ./mlruns)."""
    root.mkdir(parents=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
    return Store(root, experiment_id)


def data_params(size: DataSize, workdir: Path, *, zip_path: str) -> dict[str, str]:
    """prepare's data parameters for ``size``; writes the synthetic zip first when the size needs one."""
    if size.synthetic_scale is None:
        if zip_path:
            return {"dataset": size.dataset, "source": "local", "data_path": zip_path}
        return {"dataset": size.dataset, "source": "pypi"}
    n_users, n_items, n_ratings = (max(1, round(n * size.synthetic_scale)) for n in REAL_SIZES[size.dataset])
    path = workdir / f"{size.name}.zip"
    if not path.exists():
        started = time.perf_counter()
        write_synthetic_zip(
            path, layout=size.dataset, n_users=n_users, n_items=n_items, n_ratings=n_ratings, seed=0
        )
        log.info("synthetic %s: %d ratings in %.1f s", size.name, n_ratings, time.perf_counter() - started)
    return {"dataset": size.dataset, "source": "local", "data_path": str(path)}


def mlflow_run(
    project: Path, store: Store, entry: str, params: Mapping[str, str], *, env_manager: str = "local"
) -> tuple[Measurement, str]:
    """``mlflow run -e entry --env-manager <env_manager>`` measured; returns the measurement and the run's id."""
    command = [sys.executable, "-m", "mlflow", "run", str(project), "-e", entry, "--env-manager", env_manager]
    command += ["--experiment-id", store.experiment_id]
    for name, value in params.items():
        command += ["-P", f"{name}={value}"]
    measured = run_measured(command, env=store.env(), cwd=store.root)
    runs = store.client.search_runs(
        [store.experiment_id],
        f"tags.`mlflow.project.entryPoint` = '{entry}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    log.info(
        "%s: %.1f s wall, %.1f s CPU, peak %.0f MB", entry, measured.wall_s, measured.cpu_s, measured.peak_rss_mb
    )
    return measured, runs[0].info.run_id


def measure_steps(
    project: Path, store: Store, data: Mapping[str, str], steps: Sequence[str]
) -> dict[str, Measurement]:
    """Each step on its own, given its upstream run ids."""
    run_ids: dict[str, str] = {}
    measured: dict[str, Measurement] = {}
    for step in steps:
        params = dict(data) if step == "prepare" else {}
        params |= {name: run_ids[up] for name, up in UPSTREAM.get(step, {}).items() if up in run_ids}
        measured[step], run_ids[step] = mlflow_run(project, store, step, params)
    return measured


def measure_main(
    project: Path, store: Store, data: Mapping[str, str], until: str, *, env_manager: str = "local"
) -> dict[str, Measurement]:
    """``main`` in an empty store, then the same launch again, which must reuse every step.

    main's own step table of the cold run (each step's wall time as main saw it: train_a and train_b overlap) is
    logged, so the table shows where main's time went.
    """
    params = {**data, "until": until}
    cold, cold_id = mlflow_run(project, store, "main", params, env_manager=env_manager)
    durations = {
        key.removeprefix("duration_s."): round(value, 1)
        for key, value in store.client.get_run(cold_id).data.metrics.items()
        if key.startswith("duration_s.")
    }
    log.info("main (cold), each step's wall s as main saw it: %s", durations)
    cached, run_id = mlflow_run(project, store, "main", params, env_manager=env_manager)
    metrics = store.client.get_run(run_id).data.metrics
    if metrics.get("steps_ran", 0) != 0:
        log.warning("cached main ran %d step(s) instead of reusing them", metrics["steps_ran"])
    return {MAIN_COLD: cold, MAIN_CACHED: cached}


@dataclass
class Results:
    """Measurements by size name, then row label (a step or a main variant), one per repeat."""

    by_size: dict[str, dict[str, list[Measurement]]]

    def add(self, size: str, measured: Mapping[str, Measurement]) -> None:
        """Append one repeat's measurements of ``size``."""
        for label, value in measured.items():
            self.by_size.setdefault(size, {}).setdefault(label, []).append(value)

    def median_of(self, size: str, label: str, field: str) -> float:
        """Median of a Measurement field (wall_s, cpu_s, peak_rss_mb) over repeats; NaN if not measured."""
        values = self.by_size.get(size, {}).get(label, [])
        return median([getattr(m, field) for m in values]) if values else math.nan

    def median_wall(self, size: str, label: str) -> float:
        """Median wall time (NaN if not measured)."""
        return self.median_of(size, label, "wall_s")


def tables(results: Results, sizes: Sequence[DataSize]) -> str:
    """Time table (wall and CPU, scaling exponents), memory table, main's ratios and the targets, as markdown."""
    labels = [
        label
        for label in (*STEPS, MAIN_COLD, MAIN_CACHED)
        if any(label in results.by_size.get(s.name, {}) for s in sizes)
    ]
    time_rows, memory_rows = [], []
    for label in labels:
        cells: list[object] = [label]
        exponents = []
        for field in ("wall_s", "cpu_s"):
            values = [results.median_of(s.name, label, field) for s in sizes]
            measured = [(s.ratings, v) for s, v in zip(sizes, values, strict=True) if not math.isnan(v)]
            exponents.append(scaling_exponent([r for r, _ in measured], [v for _, v in measured]))
        for s in sizes:
            cells += [results.median_of(s.name, label, "wall_s"), results.median_of(s.name, label, "cpu_s")]
        time_rows.append([*cells, *exponents])
        memory_rows.append([label, *(results.median_of(s.name, label, "peak_rss_mb") for s in sizes)])
    # Ratios against the baseline measured in the same run: main's overhead over launching the steps by hand.
    ratio_rows = []
    for s in sizes:
        ran = [step for step in STEPS if step in results.by_size.get(s.name, {})]
        row: list[object] = [s.name]
        for field in ("wall_s", "cpu_s"):
            step_sum = sum(results.median_of(s.name, step, field) for step in ran) if ran else math.nan
            cold = results.median_of(s.name, MAIN_COLD, field)
            cached = results.median_of(s.name, MAIN_CACHED, field)
            row += [step_sum, cold, cold / step_sum, cached, cached / cold]
        ratio_rows.append(row)
    target_rows = []
    for (size, label), bound in TARGETS.items():
        wall, cpu = results.median_wall(size, label), results.median_of(size, label, "cpu_s")
        target_rows.append(
            [f"{label}, {size}", f"<= {bound:.0f} s", wall, _verdict(wall, bound), cpu, _verdict(cpu, bound)]
        )
    time_header = ["step"]
    for s in sizes:
        time_header += [f"{s.name} wall s", f"{s.name} CPU s"]
    return "\n\n".join(
        [
            "Time, s (median over repeats); exponent = slope of log(time) vs log(ratings) "
            f"({', '.join(f'{s.name}: {s.ratings:,}' for s in sizes)} ratings)",
            markdown_table([*time_header, "exponent wall", "exponent CPU"], time_rows),
            "Peak RSS of the step's process tree, MB (largest single process)",
            markdown_table(["step", *(s.name for s in sizes)], memory_rows),
            "main vs the steps launched one by one (the same work by hand), and cached vs cold",
            markdown_table(
                [
                    "size",
                    *(
                        f"{name} ({kind})"
                        for kind in ("wall", "CPU")
                        for name in (
                            "sum of steps s",
                            "main cold s",
                            "cold / sum",
                            "main cached s",
                            "cached / cold",
                        )
                    ),
                ],
                ratio_rows,
            ),
            "Targets (issue 9); CPU time = user + system seconds of the whole process tree, which a loaded "
            "machine stretches far less than wall time",
            markdown_table(["what", "target", "wall s", "status", "CPU s", "status by CPU"], target_rows),
        ]
    )


def _verdict(seconds: float, bound: float) -> str:
    if math.isnan(seconds):
        return "not measured"
    return "met" if seconds <= bound else "MISSED"


def parse_sizes(text: str) -> list[DataSize]:
    """Comma-separated size names, validated."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SIZES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"sizes must be a comma list of {list(SIZES)}, got {text!r}")
    return [SIZES[n] for n in names]


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark; prints and returns the markdown report."""
    parser = argparse.ArgumentParser(prog="benchmarks.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=parse_sizes, default=parse_sizes("ml-100k,ml-1m"), help=f"of {list(SIZES)}"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--zip", default=os.environ.get("ABTEST_ML100K_ZIP", ""), help="original ml-100k.zip")
    parser.add_argument("--until", choices=STEPS, default=STEPS[-1], help="last step measured (and main's until)")
    parser.add_argument("--skip-main", action="store_true", help="measure the steps only")
    parser.add_argument("--skip-steps", action="store_true", help="measure main only")
    parser.add_argument("--code", choices=("head", "worktree"), default="head", help="which code to snapshot")
    parser.add_argument(
        "--env-manager",
        choices=("local", "virtualenv", "uv"),
        default="local",
        help="main's environment manager (the steps' one-by-one runs stay local); build the environment first",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep stores and data here (default: temp)")
    args = parser.parse_args(argv)
    start_benchmark_process("benchmarks.pipeline", argv, code=None)
    steps = list(STEPS[: STEPS.index(args.until) + 1])
    load_before = load_line()
    measured_code = f"{args.code} of {git_head()}"  # now: the checkout may move on while the benchmark runs
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        workdir = args.workdir or Path(tmp)
        project = snapshot_project(workdir / "project", code=args.code)
        results = Results({})
        for size in args.sizes:
            data = data_params(size, workdir, zip_path=args.zip)
            for repeat in range(args.repeats):
                log.info("%s, repeat %d/%d", size.name, repeat + 1, args.repeats)
                tag = f"{size.name}-{repeat}-{time.monotonic_ns()}"
                if not args.skip_steps:
                    results.add(
                        size.name, measure_steps(project, new_store(workdir / f"steps-{tag}"), data, steps)
                    )
                if not args.skip_main:
                    results.add(
                        size.name,
                        measure_main(
                            project,
                            new_store(workdir / f"main-{tag}"),
                            data,
                            steps[-1],
                            env_manager=args.env_manager,
                        ),
                    )
    header = [
        machine_line(),
        f"code: {measured_code}; mlflow run --env-manager {args.env_manager} (main); SQLite; "
        f"repeats: {args.repeats}",
        f"{load_before} (before); {load_line()} (after)",
    ]
    text = "\n".join(header) + "\n\n" + tables(results, args.sizes)
    print(text)
    return text


if __name__ == "__main__":
    main()
