"""evaluate before vs after: the step end to end (wall, CPU, peak RSS, every metric compared) and its phases.

    python -m benchmarks.evaluate --sizes ml-100k,ml-1m --repeats 3 --zip ml-100k.zip
    python -m benchmarks.evaluate --sizes ml-100k --repeats 1 --before ec6154f --skip-phases

For each size it builds one prepare / train_a / train_b lineage in a temporary SQLite store (the code measured
"after"), then runs ``mlflow run -e evaluate --env-manager local`` on those training runs with the code at
``--before`` (a ``git archive`` of that commit) and with the last commit, alternately, ``--repeats`` times each, so
both see the same load. Every metric of each after run is compared with the before run's (``time.*`` excepted):
the statistics must not move. The phase table times evaluate's parts in process, one fresh interpreter per code
version: loading and scoring the models, cross-validation (wall, and CPU of the process and its fold workers),
the bootstrap, DeLong, segments, building the figures, rendering them to PNG once, and the HTML report. The
after step runs the folds while it scores and compares the test split, so its wall time is less than the sum of
its phases. Run on demand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("benchmarks.evaluate")

PHASES: tuple[str, ...] = ("load", "cv", "bootstrap", "delong", "segments", "figures", "png", "report")


def _phase_seconds(tracking_uri: str, train_a: str, train_b: str, cv_jobs: int) -> dict[str, list[float]]:
    """Phase -> [wall s, CPU s] with the abtest code on sys.path (either version's public functions)."""
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    import mlflow

    from ab_router.policy import positive_scores
    from ab_router.schema import LABEL, to_feature_frame
    from abtest.evaluation import analysis, crossval
    from abtest.evaluation.bootstrap import compare_policies
    from abtest.evaluation.decision import PRIMARY_METRIC, decide
    from abtest.evaluation.delong import delong_test
    from abtest.evaluation.inputs import resolve_policy
    from abtest.evaluation.metrics import EvalRows, all_metrics, policy_statistics
    from abtest.evaluation.report import ReportInputs, render_html
    from abtest.evaluation.segments import compare_segments, define_segments
    from abtest.reporting import figure_png
    from abtest.tracking.lineage import load_prepared

    seconds: dict[str, list[float]] = {}

    def timed(name, work):
        wall, cpu = time.perf_counter(), time.process_time()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        value = work()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        seconds[name] = [time.perf_counter() - wall, time.process_time() - cpu + child_cpu]
        return value

    config = analysis.EvaluationConfig(alpha=0.05, n_bootstrap=1000, k=10, seed=42)
    sources = {arm: resolve_policy(arm, run_id=run, model_uri="") for arm, run in (("A", train_a), ("B", train_b))}

    def load():
        prepared = load_prepared(sources["A"].prepare_run)
        frame = to_feature_frame(prepared.test)
        return prepared, {
            p: positive_scores(mlflow.pyfunc.load_model(s.model_uri), frame) for p, s in sources.items()
        }

    prepared, scores = timed("load", load)
    test = prepared.test
    cross_validation = timed(
        "cv",
        lambda: crossval.run_cross_validation(
            prepared.train,
            prepared.val,
            prepared.users,
            prepared.items,
            sources,
            cv_folds=5,
            seed=42,
            k=10,
            cv_jobs=cv_jobs,
            scheme=crossval.cv_scheme_for_split(prepared.params.get("split", "")),
        ),
    )
    rows = EvalRows.from_frame(test)

    def bootstrap():
        stats = [policy_statistics(rows, scores[p], k=10) for p in ("A", "B")]
        return compare_policies(stats[0], stats[1], rows.n_users, all_metrics(10), config.bootstrap)

    table = timed("bootstrap", bootstrap)
    delong = timed("delong", lambda: delong_test(rows.label, scores["A"], scores["B"], alpha=0.05))
    segments = timed(
        "segments",
        lambda: compare_segments(
            rows,
            scores["A"],
            scores["B"],
            define_segments(test, prepared.train, prepared.users, prepared.items),
            config=config.bootstrap,
            k=10,
        ),
    )
    primary = next(row for row in table if row.metric == PRIMARY_METRIC)
    result = analysis.EvaluationResult(
        config=config,
        table=table,
        delong=delong,
        decision=decide(primary, delong, alpha=0.05),
        segments=segments,
        cross_validation=cross_validation,
        n_rows=rows.n_rows,
        n_users=rows.n_users,
        n_items=rows.n_items,
    )
    figures = timed("figures", lambda: analysis.make_figures(result, test[LABEL].to_numpy(), scores))
    timed("png", lambda: [figure_png(figure) for figure in figures.values()])
    report = ReportInputs(
        decision=result.decision,
        setup={},
        comparison=result.comparison,
        delong=delong,
        segments=segments,
        figures={},
        cross_validation=cross_validation,
        n_bootstrap=config.n_bootstrap,
        alpha=config.alpha,
    )
    timed("report", lambda: render_html(report))
    seconds["peak_rss_mb"] = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024] * 2
    return seconds


def export_commit(revision: str, dest: Path) -> Path:
    """The project at ``revision`` (``git archive``), so the before code cannot move while the benchmark runs."""
    from benchmarks.harness import PROJECT_DIR

    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as archive:
        subprocess.run(["git", "archive", revision], cwd=PROJECT_DIR, stdout=archive, check=True)
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(dest, filter="data")
    return dest


def metric_differences(client, before_run: str, after_run: str) -> list[str]:
    """Names of the metrics (``time.*`` excepted) whose values differ between two evaluate runs."""
    before, after = client.get_run(before_run).data.metrics, client.get_run(after_run).data.metrics
    names = sorted((set(before) | set(after)) - {n for n in set(before) | set(after) if n.startswith("time.")})
    return [n for n in names if before.get(n) != after.get(n)]


def phases_in(project: Path, store_uri: str, train_a: str, train_b: str, cv_jobs: int) -> dict[str, list[float]]:
    """:func:`_phase_seconds` in a fresh interpreter importing ``project``'s abtest."""
    env = {**os.environ, "PYTHONPATH": str(project), "MLFLOW_TRACKING_URI": store_uri}
    command = [sys.executable, __file__, "--phases-only", store_uri, train_a, train_b, str(cv_jobs)]
    out = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"phases in {project} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark; prints and returns the markdown report."""
    # Imported here: --phases-only runs this file with the measured code (maybe an old commit) on the path.
    from benchmarks.harness import (
        git_head,
        load_line,
        machine_line,
        markdown_table,
        median,
        snapshot_project,
        start_benchmark_process,
    )
    from benchmarks.pipeline import data_params, mlflow_run, new_store, parse_sizes

    parser = argparse.ArgumentParser(prog="benchmarks.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("ml-100k,ml-1m"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--before", default="ec6154f", help="commit measured as before")
    parser.add_argument("--zip", default=os.environ.get("ABTEST_ML100K_ZIP", ""), help="original ml-100k.zip")
    parser.add_argument("--cv-jobs", type=int, default=2, help="fold processes in the phase table")
    parser.add_argument("--skip-phases", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="keep stores and data here (default: temp)")
    args = parser.parse_args(argv)
    start_benchmark_process("benchmarks.evaluate", argv, code=None)
    load_before = load_line()
    after_code = f"head of {git_head()}"
    rows_step, rows_phase, notes = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        workdir = args.workdir or Path(tmp)
        projects = {
            "before": export_commit(args.before, workdir / "before"),
            "after": snapshot_project(workdir / "after", code="head"),
        }
        for size in args.sizes:
            store = new_store(workdir / f"store-{size.name}-{time.monotonic_ns()}")
            _, prepare = mlflow_run(
                projects["after"], store, "prepare", data_params(size, workdir, zip_path=args.zip)
            )
            _, train_a = mlflow_run(projects["after"], store, "train_a", {"prepare_run": prepare})
            _, train_b = mlflow_run(projects["after"], store, "train_b", {"prepare_run": prepare})
            lineage = {"train_a_run": train_a, "train_b_run": train_b}
            measured: dict[str, list] = {"before": [], "after": []}
            runs: dict[str, list[str]] = {"before": [], "after": []}
            for repeat in range(args.repeats):
                for version in ("before", "after") if repeat % 2 == 0 else ("after", "before"):
                    measurement, run_id = mlflow_run(projects[version], store, "evaluate", lineage)
                    measured[version].append(measurement)
                    runs[version].append(run_id)
            differing = [
                metric_differences(store.client, b, a) for b, a in zip(runs["before"], runs["after"], strict=True)
            ]
            n_metrics = len(
                [m for m in store.client.get_run(runs["after"][0]).data.metrics if not m.startswith("time.")]
            )
            notes.append(
                f"{size.name}: {n_metrics} metrics compared per pair, differing: "
                + (", ".join(sorted({m for d in differing for m in d})) or "none (bit-identical)")
            )
            for label, pick in (("wall s", "wall_s"), ("CPU s", "cpu_s"), ("peak RSS MB", "peak_rss_mb")):
                before = median([getattr(m, pick) for m in measured["before"]])
                after = median([getattr(m, pick) for m in measured["after"]])
                rows_step.append([size.name, label, before, after, after / before])
            if not args.skip_phases:
                store_uri = store.uri
                seconds = {v: phases_in(projects[v], store_uri, train_a, train_b, args.cv_jobs) for v in projects}
                for phase in (*PHASES, "peak_rss_mb"):
                    before, after = seconds["before"][phase], seconds["after"][phase]
                    rows_phase.append(
                        [size.name, phase, before[0], after[0], before[1], after[1], after[1] / before[1]]
                    )
            log.info("%s done", size.name)
    text = "\n".join(
        [
            machine_line(),
            f"before: {args.before}; after: {after_code}; mlflow run -e evaluate --env-manager local, SQLite; "
            f"repeats: {args.repeats} each, alternating",
            f"{load_before} (start); {load_line()} (end)",
            "",
            "evaluate end to end (median over repeats; CPU = user + system of the step's process tree)",
            markdown_table(["size", "what", "before", "after", "after / before"], rows_step),
            "",
            *notes,
        ]
    )
    if rows_phase:
        text += (
            "\n\nevaluate's phases in process (one run each; cv: fold workers' CPU included)\n"
            + markdown_table(
                [
                    "size",
                    "phase",
                    "before wall s",
                    "after wall s",
                    "before CPU s",
                    "after CPU s",
                    "CPU after / before",
                ],
                rows_phase,
            )
        )
    print(text)
    return text


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--phases-only":
        logging.basicConfig(level=logging.WARNING)
        uri, train_a_run, train_b_run, jobs = sys.argv[2:6]
        print(json.dumps(_phase_seconds(uri, train_a_run, train_b_run, int(jobs))))
    else:
        main()
