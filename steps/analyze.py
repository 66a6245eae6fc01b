"""`analyze`: read an experiment out of its records (the router's decisions, the application's impressions and
outcomes) into an MLflow run.

Inputs: ``records`` (a directory of JSON Lines in the layout of ``ab_router/records.py``, or a SQLAlchemy URL;
"" = the ``records/`` artifacts of ``simulate_run``, "" = the latest FINISHED simulate run); the router version
analysed (``router_run``, else ``router_uri``, default ``models:/movielens_ctr_router@router``), whose tags give
the experiment's identity (name, version, ``salt`` unless given), its split and its analysis plan (tag
``abtest.analysis_plan``; absent = ``AnalysisPlan()`` defaults, said in the readout); the window ``start`` /
``end`` (UTC ISO 8601, "" = all); ``prepare_run`` ("" = the version's), whose training interactions give CUPED's
pre-period covariate; ``primary_metric`` ("" = the plan's; another one is refused unless ``override_plan=true``);
``events`` (outcome names beyond ``click``, comma-separated); ``engine`` (``duckdb``: DuckDB over a directory, or
the database of a SQLAlchemy URL; ``spark``: the same reduction as Spark SQL on a session from ``spark_master`` /
``SPARK_REMOTE`` and ``spark_conf`` (abtest/spark.py), over a directory's JSON Lines or Parquet, a Parquet URI, or
``tables:<database>``), the readout identical either way. No seed: the analysis draws nothing at random.
Outputs (this run): ``readout/readout.html`` (decision, health badges, results table, figures, guardrails, plan,
per day), ``readout/readout.json``, ``readout/{results,daily,guardrails,health}.csv``; headline metrics
(``ctr_lift_abs``, ``ctr_prob_b_better``, ``srm_p_value``, ...); per-day metric histories ``daily_<column>`` with
step = day; tags ``abtest.decision`` (prefixed "Do not trust this result" when a health check failed),
``abtest.winner`` (A | B | none), ``abtest.healthy``, ``abtest.health_failures``, ``abtest.guardrails_held``,
``abtest.primary_metric``, ``abtest.plan_overridden``, ``abtest.router_version``, ``abtest.router_uri``,
``abtest.prepare_run``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from abtest.experiment.plan import METRICS
from abtest.experiment.readout.evidence import log_daily_histories, readout_tags
from abtest.experiment.readout.experiment import effective_plan, readout_of_records
from abtest.experiment.readout.page import write_readout
from abtest.experiment.router_client import RouterHandle, resolve_router
from abtest.experiment.traffic import pre_period_activity
from abtest.spark import TABLES_PREFIX, parse_spark_conf
from abtest.tracking import tags
from abtest.tracking.lineage import load_prepared, records_failure, resolve_upstream_run, step_run
from abtest.tracking.params import log_resolved_params
from steps.cli import configure_logging, parse_params

log = logging.getLogger(__name__)

READOUT_DIR = "readout"
RECORDS_ARTIFACTS = "records"  # where simulate logs the records it wrote
FLAGS = {"true": True, "false": False}
ENGINES = ("duckdb", "spark")


def parse_time(name: str, text: str) -> datetime | None:
    """A window bound: UTC ISO 8601 ("" = open); a time without offset is read as UTC, another offset converted."""
    if text == "":
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f'parameter {name} must be an ISO 8601 time (e.g. 2026-11-02T00:00:00+00:00) or "", got {text!r}'
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def override_plan(params: argparse.Namespace) -> bool:
    """Whether another primary metric than the planned one is allowed."""
    try:
        return FLAGS[params.override_plan]
    except KeyError:
        raise ValueError(
            f"parameter override_plan must be one of {list(FLAGS)}, got {params.override_plan!r}"
        ) from None


def extra_events(params: argparse.Namespace) -> tuple[str, ...]:
    """The outcome event names declared beyond ``click``."""
    return tuple(name.strip() for name in params.events.split(",") if name.strip())


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """What needs no store: the metric name, the flags, the window and a records directory's existence.

    ``pipeline`` (main's other steps' parameters) is not needed: analyze reads its upstream runs when it runs.
    """
    if params.primary_metric not in ("", *METRICS):
        raise ValueError(
            f'parameter primary_metric must be "" (the plan\'s) or one of {list(METRICS)}, got '
            f"{params.primary_metric!r}"
        )
    override_plan(params)
    start, end = parse_time("start", params.start), parse_time("end", params.end)
    if start is not None and end is not None and end <= start:
        raise ValueError(f"parameters start / end: the window must end after it starts, got [{start}, {end})")
    if params.engine not in ENGINES:
        raise ValueError(f"parameter engine must be one of {list(ENGINES)}, got {params.engine!r}")
    parse_spark_conf(params.spark_conf)
    spark_location = params.records.startswith(TABLES_PREFIX) or (
        "://" in params.records and not params.records.startswith("file://")
    )
    if params.engine == "duckdb" and params.records.startswith(TABLES_PREFIX):
        raise ValueError(
            f"parameter records {params.records!r}: tables:<database> names tables in a Spark catalog; "
            "it needs engine=spark"
        )
    if params.records and not spark_location and not Path(params.records.removeprefix("file://")).is_dir():
        raise ValueError(
            f"parameter records must be a records directory, a SQLAlchemy URL, tables:<database> or a Parquet "
            f'URI (engine=spark), or "" (simulate_run\'s records), got {params.records!r}: no such directory'
        )


def records_location(params: argparse.Namespace, directory: Path) -> tuple[str, str]:
    """Where the records are, and the simulate run they came from ("" when given as ``records``)."""
    if params.records:
        return params.records, ""
    simulate_run = resolve_upstream_run(
        "simulate", params.simulate_run, {}, how_to_make="mlflow run . -e simulate"
    )
    names = {a.path for a in MlflowClient().list_artifacts(simulate_run)}
    if RECORDS_ARTIFACTS not in names:
        raise FileNotFoundError(
            f"simulate run {simulate_run} has no {RECORDS_ARTIFACTS}/ artifacts (a simulate run of older code?); "
            "pass -P records=<directory or SQLAlchemy URL>"
        )
    local = mlflow.artifacts.download_artifacts(
        run_id=simulate_run, artifact_path=RECORDS_ARTIFACTS, dst_path=str(directory)
    )
    return local, simulate_run


def engine_session(params: argparse.Namespace) -> Any:
    """engine=spark's session (abtest.spark), else None; pyspark is imported only for that engine."""
    if params.engine != "spark":
        return None
    from abtest.spark import spark_session

    return spark_session(params.spark_master, parse_spark_conf(params.spark_conf), app_name="abtest-analyze")


def router_identity(handle: RouterHandle) -> tuple[str, str]:
    """The registered name and version of a resolved router (``models:/<name>/<version>``)."""
    name, _, version = handle.model_uri.removeprefix("models:/").rpartition("/")
    return name, version


def pre_period(prepare_run: str) -> pd.Series:
    """CUPED's covariate: each user's positives in the prepare run's train + val splits (empty without a run)."""
    if not prepare_run:
        log.warning("no prepare run: the readout is computed without CUPED's pre-period covariate")
        return pd.Series(dtype=float)
    prepared = load_prepared(prepare_run)
    return pre_period_activity(pd.concat([prepared.train, prepared.val], ignore_index=True))


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Analyse the experiment's records and log the readout; returns the run id."""
    params = parse_params("analyze", argv, description=__doc__)
    configure_logging()
    check_params(params)
    with step_run("analyze") as run, tempfile.TemporaryDirectory() as tmp:
        handle = resolve_router(params.router_uri, router_run=params.router_run)
        router_name, router_version = router_identity(handle)
        plan, plan_note, overridden = effective_plan(
            handle.tags.get(tags.ANALYSIS_PLAN),
            primary_metric=params.primary_metric,
            override_plan=override_plan(params),
            where=f"router {handle.model_uri}",
        )
        location, simulate_run = records_location(params, Path(tmp))
        salt = params.salt or handle.tags.get(tags.SALT, "")
        prepare_run = params.prepare_run or handle.prepare_run
        if prepare_run:
            prepare_run = resolve_upstream_run("prepare", prepare_run, {}, how_to_make="mlflow run . -e prepare")
        log_resolved_params(
            {
                **vars(params),
                "simulate_run": simulate_run,
                "salt": salt,
                "prepare_run": prepare_run,
                "primary_metric": plan.primary_metric,
            }
        )
        mlflow.set_tags(
            {
                tags.ROUTER_VERSION: router_version,
                tags.ROUTER_URI: handle.model_uri,
                tags.PREPARE_RUN: prepare_run,
                tags.ANALYSIS_PLAN: plan.to_json(),
            }
        )
        spark = engine_session(params)
        try:
            readout = readout_of_records(
                location,
                router_name=router_name,
                router_version=router_version,
                salt=salt,
                start=parse_time("start", params.start),
                end=parse_time("end", params.end),
                events=extra_events(params),
                plan=plan,
                split=handle.split if handle.split is not None else 0.5,
                pre_period=pre_period(prepare_run),
                workdir=Path(tmp),
                plan_note=plan_note,
                plan_overridden=overridden,
                spark=spark,
            )
        finally:
            if spark is not None:
                spark.stop()
        directory = Path(tmp) / READOUT_DIR
        write_readout(readout, directory)
        mlflow.log_artifacts(str(directory), READOUT_DIR)
        mlflow.log_metrics(readout.headline())
        log_daily_histories(readout)
        mlflow.set_tags(readout_tags(readout))
    print(f"analyze (router {handle.model_uri}): {readout.decision}")
    return run.info.run_id


if __name__ == "__main__":
    main()
