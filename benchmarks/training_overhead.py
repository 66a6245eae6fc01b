"""Training-overhead benchmark: policy B's training inside `train_b` vs a bare ``lgb.train`` on the same matrix.

For each size, one `prepare` run (``mlflow run -e prepare``, temporary SQLite store) supplies the data; then, per
repeat, in this order:

- ``train_b`` end to end: ``mlflow run -e train_b --env-manager local`` (process start, imports, data download,
  fit, metrics, plots, model logging);
- ``train_b`` in process: ``steps.train_b.main`` (the same minus process start and imports);
- ``abtest.policies.models.fit_lightgbm`` on the prepared train/val frames (the step's fit: Dataset construction,
  training
  with train+val evaluation every round and early stopping);
- the baselines a user would write: ``lgb.train`` with the same params on the same feature matrix, (a) for the
  same number of rounds the fit trained and without evaluation (the physical cost of the trees), and (b) with the
  validation set and early stopping, as a hand-rolled script does;
- process start + imports alone (``python -c "import steps.train_b"``).

Ratios are to baseline (a), measured in the same run.

    python -m benchmarks.training_overhead --sizes ml-100k,ml-1m --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import mlflow

from ab_router import schema
from abtest.policies.models import LightGBMParams, fit_lightgbm, labels_of
from abtest.tracking.lineage import load_prepared
from benchmarks.harness import (
    PROJECT_DIR,
    code_description,
    load_line,
    machine_line,
    markdown_table,
    median,
    run_measured,
    start_benchmark_process,
)
from benchmarks.pipeline import SIZES, DataSize, Store, data_params, mlflow_run, new_store, parse_sizes
from steps import train_b
from steps.cli import parameter_defaults

log = logging.getLogger("benchmarks.training_overhead")

STEP_E2E = "train_b step: mlflow run (end to end)"
STEP_IN_PROCESS = "train_b step: steps.train_b.main in process"
FIT = "abtest.policies.models.fit_lightgbm (train+val eval, early stopping)"
BARE_SAME_ROUNDS = "bare lgb.train, same rounds, no eval (baseline)"
BARE_EARLY_STOP = "bare lgb.train, val early stopping"
IMPORTS = "process start + imports (python -c 'import steps.train_b')"
ROWS: tuple[str, ...] = (STEP_E2E, STEP_IN_PROCESS, FIT, BARE_EARLY_STOP, BARE_SAME_ROUNDS, IMPORTS)


def policy_b_params(prepare_params: Mapping[str, str]) -> LightGBMParams:
    """train_b's MLproject defaults with the prepare run's seed, as the step resolves them."""
    return LightGBMParams.from_params({**parameter_defaults("train_b"), "seed": prepare_params["seed"]})


def timed(function: Callable[..., object], *args: object, **kwargs: object) -> tuple[Sample, object]:
    """Wall and CPU seconds of one call in this process, and its result."""
    started, cpu_started = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return Sample(time.perf_counter() - started, time.process_time() - cpu_started), result


@dataclass(frozen=True)
class Sample:
    """Wall and CPU seconds of one measurement."""

    wall_s: float
    cpu_s: float


def bare_train(train, val, *, params: LightGBMParams, rounds: int | None) -> lgb.Booster:
    """What a hand-rolled script does: ``lgb.train`` on the feature matrix with the same booster params.

    ``rounds`` given: exactly that many rounds, no evaluation. None: ``n_estimators`` with the validation set and
    early stopping on it.
    """
    categorical = list(schema.CATEGORICAL_FEATURES)
    train_set = lgb.Dataset(
        schema.to_feature_frame(train), label=labels_of(train), categorical_feature=categorical
    )
    if rounds is not None:
        return lgb.train(params.booster_params(), train_set, num_boost_round=rounds)
    val_set = lgb.Dataset(
        schema.to_feature_frame(val), label=labels_of(val), categorical_feature=categorical, reference=train_set
    )
    return lgb.train(
        params.booster_params(),
        train_set,
        num_boost_round=params.n_estimators,
        valid_sets=[val_set],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False)],
    )


def point_at(store: Store) -> None:
    """This process's MLflow (and its children's) at ``store``."""
    for name, value in store.env().items():
        os.environ[name] = value
    os.environ["MLFLOW_EXPERIMENT_ID"] = store.experiment_id
    mlflow.set_tracking_uri(store.uri)
    mlflow.set_registry_uri(store.uri)
    mlflow.set_experiment(experiment_id=store.experiment_id)


def measure_size(project: Path, store: Store, data: Mapping[str, str], *, repeats: int) -> SizeResult:
    """Every row's wall and CPU seconds, one sample per repeat, and the rounds the fit trained."""
    _, prepare_run = mlflow_run(project, store, "prepare", data)
    point_at(store)
    prepared = load_prepared(prepare_run)
    params = policy_b_params(prepared.params)
    train, val = prepared.train, prepared.val
    result = SizeResult(train_rows=len(train), samples={row: [] for row in ROWS}, rounds=[])
    for repeat in range(repeats):
        log.info("repeat %d/%d (%d train rows)", repeat + 1, repeats, len(train))
        step = mlflow_run(project, store, "train_b", {"prepare_run": prepare_run})[0]
        result.samples[STEP_E2E].append(Sample(step.wall_s, step.cpu_s))
        # The in-process step imports nothing new: the cost left is data download, fit, logging.
        result.samples[STEP_IN_PROCESS].append(timed(train_b.main, ["--prepare_run", prepare_run])[0])
        fit_sample, fit = timed(fit_lightgbm, train, val, params=params)
        rounds = fit.booster.current_iteration()
        result.samples[FIT].append(fit_sample)
        result.rounds.append(rounds)
        result.samples[BARE_EARLY_STOP].append(timed(bare_train, train, val, params=params, rounds=None)[0])
        result.samples[BARE_SAME_ROUNDS].append(timed(bare_train, train, val, params=params, rounds=rounds)[0])
        imports = run_measured([sys.executable, "-c", "import steps.train_b"], cwd=project)
        result.samples[IMPORTS].append(Sample(imports.wall_s, imports.cpu_s))
    return result


@dataclass(frozen=True)
class SizeResult:
    """The samples of one data size."""

    train_rows: int
    samples: dict[str, list[Sample]]
    rounds: list[int]

    def median(self, row: str, field: str) -> float:
        """Median wall_s or cpu_s of ``row``."""
        return median([getattr(sample, field) for sample in self.samples[row]])


def table(results: Mapping[str, SizeResult], sizes: Sequence[DataSize]) -> str:
    """Median wall and CPU seconds per row and size, with the ratio to the bare same-rounds baseline."""
    header = ["what"]
    for size in sizes:
        header += [f"{size.name} wall s", f"{size.name} CPU s", f"{size.name} ratio (CPU)"]
    body = []
    for row in ROWS:
        cells: list[object] = [row]
        for size in sizes:
            result = results[size.name]
            cpu = result.median(row, "cpu_s")
            cells += [result.median(row, "wall_s"), cpu, cpu / result.median(BARE_SAME_ROUNDS, "cpu_s")]
        body.append(cells)
    shapes = ", ".join(
        f"{s.name}: {results[s.name].train_rows:,} train rows, {median(results[s.name].rounds):.0f} rounds"
        for s in sizes
    )
    return f"{markdown_table(header, body)}\n\nfit (best iteration + patience): {shapes}"


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark; prints and returns the markdown report."""
    parser = argparse.ArgumentParser(prog="benchmarks.training_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=parse_sizes, default=parse_sizes("ml-100k,ml-1m"), help=f"of {list(SIZES)}"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--zip", default=os.environ.get("ABTEST_ML100K_ZIP", ""), help="original ml-100k.zip")
    parser.add_argument("--code", choices=("head", "worktree"), default="head", help="which code to snapshot")
    args = parser.parse_args(argv)
    if start_benchmark_process("benchmarks.training_overhead", argv, code=args.code):
        return ""
    load_before = load_line()
    results: dict[str, SizeResult] = {}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        workdir = Path(tmp)
        project = PROJECT_DIR  # this process runs from the snapshot: in-process and subprocess rows share code
        for size in args.sizes:
            data = data_params(size, workdir, zip_path=args.zip)
            results[size.name] = measure_size(project, new_store(workdir / size.name), data, repeats=args.repeats)
    text = "\n".join(
        [
            machine_line(),
            f"code: {code_description()}; LightGBM on 1 thread (train_b's setting); repeats: {args.repeats}",
            f"{load_before} (before); {load_line()} (after)",
            "",
            table(results, args.sizes),
        ]
    )
    print(text)
    return text


if __name__ == "__main__":
    main()
