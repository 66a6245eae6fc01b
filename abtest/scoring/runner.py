"""Score a checked pairs table through a router on one engine into an output folder: :func:`score_pairs`.

Whatever the engine, scoring records no decisions: ``ABTEST_DECISION_LOG`` is removed from this process's
environment while the router loads and scores (and set to "" for Spark's Python workers, see
:mod:`abtest.scoring.spark`), then restored. The router reads that variable when it loads; an offline replay
or backfill run where a live router's environment is set must not append its rows to that experiment's log,
where `analyze` would count them as traffic.

The written rows are counted back from the output (rows per arm), and their total must equal the input's rows:
the router answers one row per pair.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pyarrow.dataset as ds

from ab_router.arms import EXPERIMENT_ARMS
from ab_router.records import DECISION_LOG_ENV
from abtest.scoring.inputs import PairsInput
from abtest.scoring.local import arm_counts, score_local
from abtest.scoring.output import OutputError, staged_output

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("local", "spark")


@dataclass(frozen=True)
class ScoreResult:
    """What a scoring wrote and how fast: rows in total and per arm, the seconds it took, where it went."""

    engine: str
    rows: int
    arm_rows: dict[str, int]
    seconds: float  # reading, scoring and writing (for spark: creating the UDF and the job), not the router load
    destination: Path
    load_seconds: float = 0.0  # engine=local: loading the router in this process
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        """Rows scored and written per second of :attr:`seconds`."""
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def metrics(self) -> dict[str, float]:
        """The run's metrics: ``rows``, ``rows_per_s`` and ``rows_<arm>`` for every arm."""
        return {
            "rows": float(self.rows),
            "rows_per_s": self.rows_per_s,
            **{f"rows_{arm}": float(self.arm_rows.get(arm, 0)) for arm in EXPERIMENT_ARMS},
        }


@contextmanager
def decision_log_off() -> Iterator[None]:
    """``ABTEST_DECISION_LOG`` unset meanwhile (restored after), said in the log when it was set."""
    before = os.environ.pop(DECISION_LOG_ENV, None)
    if before:
        log.warning(
            "%s=%s is unset while scoring: an offline scoring records no decisions (it must not pollute a live "
            "experiment's log)",
            DECISION_LOG_ENV,
            before,
        )
    else:
        log.info("scoring records no decisions (%s unset for the router and its workers)", DECISION_LOG_ENV)
    try:
        yield
    finally:
        if before is not None:
            os.environ[DECISION_LOG_ENV] = before


def written_arm_rows(directory: Path) -> dict[str, int]:
    """Rows per arm of the Parquet parts under ``directory`` (read back: one string column)."""
    table = ds.dataset(str(directory), format="parquet").to_table(columns=["policy"])
    return {arm: 0 for arm in EXPERIMENT_ARMS} | arm_counts(table)


def score_pairs(
    model_uri: str,
    pairs: PairsInput,
    destination: Path,
    *,
    engine: str = "local",
    chunk_rows: int = 100_000,
    spark: Any = None,
    spark_master: str = "local[*]",
    spark_conf: Mapping[str, str] | None = None,
) -> ScoreResult:
    """Score ``pairs`` through the router at ``model_uri`` into the new folder ``destination``.

    ``engine="local"`` loads the router here and scores ``chunk_rows`` pairs per ``predict``; ``engine="spark"``
    scores with ``spark_udf`` on ``spark`` (None: a session from ``abtest.spark.spark_session(spark_master,
    spark_conf)``).
    """
    if engine not in ENGINES:
        raise ValueError(f"parameter engine must be one of {list(ENGINES)}, got {engine!r}")
    load_seconds = 0.0
    with decision_log_off(), staged_output(destination) as staging:
        if engine == "local":
            started = time.perf_counter()
            model = mlflow.pyfunc.load_model(model_uri)
            load_seconds = time.perf_counter() - started
            started = time.perf_counter()
            arm_rows = score_local(model, pairs, staging, chunk_rows=chunk_rows)
            seconds = time.perf_counter() - started
        else:
            from abtest.scoring.spark import score_spark

            if spark is None:
                from abtest.spark import spark_session

                spark = spark_session(spark_master, spark_conf, app_name="abtest-score")
            started = time.perf_counter()
            score_spark(spark, model_uri, pairs, staging)
            seconds = time.perf_counter() - started
            arm_rows = written_arm_rows(staging)
        written = sum(arm_rows.values())
        if written != pairs.rows:
            raise OutputError(
                f"scoring {pairs.location} wrote {written} rows for {pairs.rows} pairs (rule: the router answers "
                "one row per pair); nothing is kept"
            )
    result = ScoreResult(engine, written, arm_rows, seconds, Path(destination), load_seconds=load_seconds)
    log.info(
        "scored %d pairs (%s) with engine=%s in %.1f s: %.0f rows/s",
        result.rows,
        ", ".join(f"{arm} {n}" for arm, n in arm_rows.items()),
        engine,
        seconds,
        result.rows_per_s,
    )
    return result
